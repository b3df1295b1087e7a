"""What ``edgekit run``'s events and clips options ask for, checked: one dataclass the CLI fills
in and the loop reads (``EventsOptions``), with the parsing of sizes and zones it needs."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import UsageError
from edgekit.events.outbox import QUEUE
from edgekit.events.rules import Rules
from edgekit.events.zones import Zone, parse_zone
from edgekit.helpers.records import keyword_only

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, flag: str = "max_disk") -> int:
    """``500M``, ``2G``, ``1.5GB``, ``800000``: bytes (binary units)."""
    match = _SIZE.match(str(text))
    if not match:
        raise UsageError(f"{flag} {text!r}: give a size such as 500M or 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@keyword_only
@dataclass(frozen=True)
class ClipOptions:
    folder: str
    pre_s: float = 5.0
    post_s: float = 5.0
    max_disk: int = 1 << 30


@keyword_only
@dataclass(frozen=True)
class EventsOptions:
    """``--events`` destinations, the ``--events-filter`` keys, and ``--clips``."""

    destinations: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    min_score: float = 0.0
    min_frames: int = 1
    update_s: float = 5.0
    zones: tuple[Zone, ...] = ()
    queue: int = QUEUE
    track: bool = False  # track ids in the results even without events
    clips: ClipOptions | None = None
    filters_given: tuple[str, ...] = field(default=())  # flags given that need --events

    def wanted(self) -> bool:
        return bool(self.destinations or self.track or self.clips)

    def rules(self, end_frames: int) -> Rules:
        return Rules(frozenset(self.classes) if self.classes else None, self.min_score,
                     self.min_frames, self.update_s, end_frames, self.zones)

    def check_task(self, task: str) -> None:
        """Tracks follow a detector's objects; a classifier's events follow its top-1 label
        (over the whole frame: no zones)."""
        if task == "classification":
            if self.zones:
                raise UsageError("events_zone: a classifier's events are about the whole "
                                 "frame; zones go with a detector", param="events_zone")
            if not (self.destinations or self.clips):
                raise UsageError("track follows a detector's objects; a classifier's "
                                 "top-1 makes events with `events` URL", param="track")
        elif task != "detection":
            raise UsageError(f"track, `events` and `clips` follow a detector's objects or a "
                             f"classifier's top-1, and this is a {task} model", param="track")

    def check(self) -> None:
        """Filters without anywhere for events to go are a mistake: said in one line."""
        if self.filters_given and not (self.destinations or self.clips):
            raise UsageError(f"{', '.join(self.filters_given)}: filters for events; give "
                             "`events` URL (or `clips` DIR) too")


def zones_from(texts: tuple[str, ...]) -> tuple[Zone, ...]:
    zones = tuple(parse_zone(t) for t in texts)
    names = [z.name for z in zones]
    if len(set(names)) != len(names):
        raise UsageError("events_zone: two zones have the same name", param="events_zone")
    return zones


def options_from(given: dict[str, Any], filter_flags: dict[str, str]) -> EventsOptions:
    """The options from ``edgekit run``'s values by parameter name (``events``, ``track``,
    ``events_classes`` ... ``max_disk``; a deploy target's ``[service]`` table gives the same
    names), checked. ``filter_flags``: the filters' parameter names and how they are called."""
    clips = None
    if given.get("clips") is not None:
        default = ClipOptions(folder=str(given["clips"]))
        clips = ClipOptions(
            folder=default.folder,
            pre_s=default.pre_s if given.get("pre") is None else given["pre"],
            post_s=default.post_s if given.get("post") is None else given["post"],
            max_disk=default.max_disk if given.get("max_disk") is None
            else parse_size(given["max_disk"]))
    elif any(given.get(k) is not None for k in ("pre", "post", "max_disk")):
        raise UsageError("`pre`, `post` and `max_disk` go with `clips` DIR")
    classes: tuple[str, ...] = ()
    if given.get("events_classes") is not None:
        classes = tuple(c.strip() for c in given["events_classes"].split(",") if c.strip())
        if not classes:
            raise UsageError("events_classes takes class names or ids, comma-separated",
                             param="events_classes")
    options = EventsOptions(
        destinations=tuple(given.get("events") or ()), classes=classes,
        min_score=given.get("events_min_score") or 0.0,
        min_frames=given.get("events_min_frames") or 1,
        update_s=5.0 if given.get("events_update") is None else given["events_update"],
        zones=zones_from(tuple(given.get("events_zone") or ())),
        queue=given.get("events_queue") or QUEUE, track=bool(given.get("track")), clips=clips,
        filters_given=tuple(flag for key, flag in filter_flags.items() if given.get(key)))
    options.check()
    return options
