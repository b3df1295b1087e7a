"""Home Assistant MQTT discovery (``--events mqtt://...?discovery=homeassistant``): the camera
appears in Home Assistant as a device with a sensor per class, the number of that class's
objects (a detector's open tracks; a classifier's label: 1 while shown, else 0). The config
topics are retained under ``homeassistant/``, so Home Assistant finds them whenever it starts,
and each sensor follows the destination's availability topic (``offline`` as the last will)."""
from __future__ import annotations

import json
import re
from collections.abc import Sequence

PREFIX = "homeassistant"
_SLUG = re.compile(r"[^a-zA-Z0-9_-]+")


def slug(text: str) -> str:
    """A topic level and unique id from a label or host name: ``Front door`` -> ``front_door``."""
    return _SLUG.sub("_", text.strip()).strip("_").lower() or "unnamed"


def state_topic(base: str, label: str) -> str:
    return f"{base}/state/{slug(label)}"


def configs(base: str, device: str, bundle: str, labels: Sequence[str],
            availability: str) -> list[tuple[str, str]]:
    """(topic, JSON) of each class's sensor config, to publish retained."""
    node = f"edgekit_{slug(device)}"
    about = {"identifiers": [node], "name": f"edgekit {device}", "manufacturer": "edgekit",
             "model": bundle}
    out = []
    for label in labels:
        config = {"name": label, "unique_id": f"{node}_{slug(label)}",
                  "object_id": f"{node}_{slug(label)}", "state_topic": state_topic(base, label),
                  "unit_of_measurement": "objects", "state_class": "measurement",
                  "icon": "mdi:cctv", "availability_topic": availability,
                  "payload_available": "online", "payload_not_available": "offline",
                  "device": about}
        out.append((f"{PREFIX}/sensor/{node}/{slug(label)}/config", json.dumps(config)))
    return out


class Counts:
    """Objects per class as the delivered events say (``new`` +1, ``end`` -1)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.by_label = {label: 0 for label in labels}

    def after(self, kind: str, label: str) -> int | None:
        """The class's count once this event is delivered (None: it does not change it);
        set into ``by_label`` when the broker has taken it."""
        if kind not in ("new", "end"):
            return None
        return max(0, self.by_label.get(label, 0) + (1 if kind == "new" else -1))
