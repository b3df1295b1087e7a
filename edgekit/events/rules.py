"""Events from tracks: ``new`` when a track is confirmed (and passes the filters for
``min_frames`` frames), ``update`` at most every ``update_s`` seconds while it lasts, ``end``
when it has been unseen for ``end_frames`` frames (or the source ended)."""
from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.events.tracking import Tracked
from edgekit.events.zones import Zone, zone_of

EVENT_TYPES = ("new", "update", "end")
_RUN = itertools.count(1)


@dataclass
class Event:
    """One event as it leaves the device. ``image`` (the frame) becomes the snapshot JPEG
    when a destination asks for it (``snapshot``), off the loop's thread."""

    type: str
    track_id: int
    label: str
    class_id: int
    score: float
    box: tuple[float, ...]
    frame: int
    time: float  # when the frame was captured, seconds since the epoch
    device: str
    bundle: str
    zone: str | None = None
    clip: str | None = None  # the clip's file name (in --clips), once one is written for it
    id: str = ""
    captured_ns: int = 0  # perf_counter_ns at capture: frame -> delivered latency
    image: Any = field(default=None, repr=False)
    _jpeg: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "track": self.track_id, "label": self.label,
                "class_id": self.class_id, "score": round(self.score, 4),
                "box": [round(v, 1) for v in self.box], "zone": self.zone,
                "frame": self.frame, "time": round(self.time, 3), "device": self.device,
                "bundle": self.bundle, "clip": self.clip,
                "snapshot": (self.image is not None or bool(self._jpeg))
                and self.type == "new"}

    def snapshot(self) -> bytes | None:
        """The frame as JPEG, the object's box drawn (encoded once, on first use)."""
        if self._jpeg is None and self.image is not None:
            import cv2

            image = self.image.copy()
            x1, y1, x2, y2 = (int(round(v)) for v in self.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            self._jpeg = data.tobytes() if ok else b""
        return self._jpeg or None


@dataclass(frozen=True)
class Rules:
    """What makes an event: the filters and the rate of updates."""

    classes: frozenset[str] | None = None  # labels (or class ids as text); None: every class
    min_score: float = 0.0
    min_frames: int = 1  # frames a track must pass the filters before its ``new``
    update_s: float = 5.0  # at most one ``update`` per track per this many seconds
    end_frames: int = 15  # frames unseen before ``end``
    zones: tuple[Zone, ...] = ()

    def passes(self, tracked: Tracked) -> bool:
        d = tracked.detection
        if self.classes is not None and d.label not in self.classes \
                and str(d.class_id) not in self.classes:
            return False
        return d.score >= self.min_score


if TYPE_CHECKING:  # only in annotations: the device's Python may be 3.9 (no ``str | None``)
    # what a track's event says, from the last frame it passed the filters in: label, class id,
    # score, box, frame, time, zone, captured_ns (a tuple: made for every track in every frame)
    _Seen = tuple[str, int, float, tuple[float, ...], int, float, str | None, int]


@dataclass
class _Track:
    seen: int = 0
    last_frame: int = 0
    announced: bool = False
    last_sent: float = 0.0
    last: _Seen | None = None


class EventMaker:
    """Turns each frame's tracks into events, in frame order (one instance per run)."""

    def __init__(self, rules: Rules, device: str, bundle: str) -> None:
        self.rules, self.device, self.bundle = rules, device, bundle
        self._tracks: dict[int, _Track] = {}
        self._run = f"{int(time.time())}-{next(_RUN)}"
        self._count = itertools.count(1)

    def frame(self, index: int, captured_ns: int, image: np.ndarray | None,
              tracks: Sequence[Tracked]) -> list[Event]:
        """The events this frame makes. ``captured_ns``: the frame's perf_counter_ns."""
        now = time.monotonic()
        wall = time.time() - (time.perf_counter_ns() - captured_ns) / 1e9
        events = []
        for tracked in tracks:
            if not self.rules.passes(tracked):
                continue
            d = tracked.detection
            zone = zone_of(d.box, self.rules.zones)
            if self.rules.zones and zone is None:
                continue
            state = self._tracks.setdefault(tracked.track_id, _Track())
            state.seen += 1
            state.last_frame = index
            state.last = (d.label or str(d.class_id), d.class_id, d.score, tuple(d.box), index,
                          wall, zone, captured_ns)
            if not state.announced and state.seen >= self.rules.min_frames:
                state.announced, state.last_sent = True, now
                events.append(self._event("new", tracked.track_id, state.last, image))
            elif state.announced and now - state.last_sent >= self.rules.update_s:
                state.last_sent = now
                events.append(self._event("update", tracked.track_id, state.last))
        ended = []
        for track_id, state in list(self._tracks.items()):
            if index - state.last_frame >= self.rules.end_frames:
                ended += self._ended(track_id, state)
        return ended + events  # an object's end before another's new in the same frame

    def finish(self) -> list[Event]:
        """The source ended: every track still open ends."""
        events = []
        for track_id, state in list(self._tracks.items()):
            events += self._ended(track_id, state)
        return events

    def _ended(self, track_id: int, state: _Track) -> list[Event]:
        del self._tracks[track_id]
        if not state.announced or state.last is None:
            return []
        return [self._event("end", track_id, state.last)]

    def _event(self, kind: str, track_id: int, seen: _Seen, image: Any = None) -> Event:
        """An event of ``kind`` from what the track was last seen as; only a ``new`` one has
        its frame (for the snapshot): the others do not hold a frame while queued."""
        label, class_id, score, box, frame, wall, zone, captured_ns = seen
        return Event(kind, track_id, label, class_id, score, box, frame, wall, self.device,
                     self.bundle, zone, id=f"{self._run}-{next(self._count)}",
                     captured_ns=captured_ns, image=image)
