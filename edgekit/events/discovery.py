"""Home Assistant MQTT discovery (``--events mqtt://...?discovery=homeassistant``): the camera
appears in Home Assistant as a device with a sensor per class, the number of that class's
objects (a detector's open tracks; a classifier's label: 1 while shown, else 0). The config
topics are retained under ``homeassistant/``, so Home Assistant finds them whenever it starts,
and each sensor follows the destination's availability topic (``offline`` as the last will).

When the classes change (another bundle), the retained configs of the classes no longer present
are removed at connection, as Home Assistant documents it: an empty retained payload on the
config topic (and on the state topic that config named), so their entities go away."""
from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence

PREFIX = "homeassistant"
_SLUG = re.compile(r"[^a-zA-Z0-9_-]+")


def slug(text: str) -> str:
    """A topic level and unique id from a label or host name: ``Front door`` -> ``front_door``."""
    return _SLUG.sub("_", text.strip()).strip("_").lower() or "unnamed"


def state_topic(base: str, label: str) -> str:
    return f"{base}/state/{slug(label)}"


def _node(device: str) -> str:
    return f"edgekit_{slug(device)}"


def config_topic(device: str, label: str) -> str:
    return f"{PREFIX}/sensor/{_node(device)}/{slug(label)}/config"


def device_configs(device: str) -> str:
    """The topic filter of every class's config this device has published, retained or not."""
    return f"{PREFIX}/sensor/{_node(device)}/+/config"


def removals(topic: str, payload: bytes, current: Collection[str]) -> list[str]:
    """The retained topics to empty for a config heard on ``device_configs``: none when it is
    one of ``current`` (or already empty); else the config topic and the state topic it names."""
    if topic in current or not payload:
        return []
    try:
        state = json.loads(payload).get("state_topic")
    except (ValueError, AttributeError):
        state = None
    ours = isinstance(state, str) and state and not set(state) & set("+#")
    return [topic, state] if ours else [topic]


def configs(base: str, device: str, bundle: str, labels: Sequence[str],
            availability: str) -> list[tuple[str, str]]:
    """(topic, JSON) of each class's sensor config, to publish retained."""
    node = _node(device)
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
        out.append((config_topic(device, label), json.dumps(config)))
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
