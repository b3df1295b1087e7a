"""Track ids for a detector's boxes: the same object keeps its id from frame to frame.

The tracker is Tryolabs' norfair (a Kalman filter per track, IoU matching within a class),
chosen by measuring on the demo clip against its true paths (``scripts/track_metrics.py``:
MOTA and IDF1 with motmetrics): on a 30 s clip its IDF1 was 0.80 against 0.45 for trackers'
SORT and 0.30 for its ByteTrack (both class-agnostic: they keep one id across a digit that
turns into another), at a MOTA of 0.70 against 0.78. ``TrackingTask``
wraps a detector's task, so the ids are in every result the loop hands on: drawn, in
the JSON lines, in ``/stats.json``'s latest frame, and in the events.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgekit.errors import UsageError
from edgekit.tasks.base import FrameResult, LoopTask, Summary
from edgekit.tasks.detection import Detection

LOST_SECONDS = 1.0  # a track not seen for this long is over (its ``end`` event)
CONFIRM_FRAMES = 3  # frames in a row before a track gets an id
MAX_DISTANCE = 0.9  # 1 - IoU: a detection continues a track it overlaps by IoU 0.1 or more


@dataclass(frozen=True)
class Tracked:
    """A detection and the id of the track it belongs to."""

    track_id: int
    detection: Detection


def lost_frames(fps: float | None) -> int:
    """How many frames a track may go unseen before it ends: ``LOST_SECONDS`` of frames."""
    return max(2, round((fps or 15.0) * LOST_SECONDS))


class Tracker:
    """One run's tracker: ``update`` takes a frame's detections, in order, and says which
    track each belongs to (a detection not yet confirmed has none). A track follows one
    class: a digit that turns into another is another object."""

    def __init__(self, fps: float | None = None, confirm_frames: int = CONFIRM_FRAMES) -> None:
        try:
            import norfair
        except ImportError:
            raise UsageError("tracking needs the norfair package: "
                             "pip install 'edgekit[events]'") from None
        self._norfair = norfair
        self.lost = lost_frames(fps)
        self._tracker = norfair.Tracker(distance_function="iou", distance_threshold=MAX_DISTANCE,
                                        hit_counter_max=self.lost,
                                        initialization_delay=confirm_frames - 1)
        self._frame = 0

    def update(self, detections: Sequence[Detection]) -> list[Tracked]:
        """The frame's detections with their track ids (confirmed tracks seen in this frame)."""
        self._frame += 1
        found = [self._norfair.Detection(np.array([d.box[:2], d.box[2:]], float),
                                         scores=np.array([d.score, d.score]), label=d.class_id,
                                         data=(self._frame, i))
                 for i, d in enumerate(detections)]
        out = []
        for tracked in self._tracker.update(found):
            last = tracked.last_detection
            if tracked.id is not None and last is not None and last.data[0] == self._frame:
                out.append(Tracked(int(tracked.id), detections[last.data[1]]))
        return sorted(out, key=lambda t: t.track_id)


@dataclass(frozen=True)
class TrackedResult(FrameResult):
    """A detector's frame result with the confirmed tracks among its detections."""

    inner: Any  # the task's own result (DetectionsResult)
    tracks: list[Tracked] = field(default_factory=list)

    @property
    def detections(self) -> list[Detection]:
        return self.inner.detections

    @property
    def candidates(self) -> list[Detection]:
        return self.inner.candidates

    def record(self) -> dict:
        ids = {id(t.detection): t.track_id for t in self.tracks}
        record = self.inner.record()
        for entry, d in zip(record.get("detections", ()), self.inner.detections):
            entry["track"] = ids.get(id(d))
        return record

    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        from edgekit.tasks.draw import annotate

        ids = {id(t.detection): t.track_id for t in self.tracks}
        shown = [replace(d, label=f"{d.label or d.class_id} #{ids[id(d)]}") if id(d) in ids
                 else d for d in self.inner.detections]
        return annotate(image, shown, lines)

    def label_counts(self) -> dict:
        return self.inner.label_counts()

    def answer(self) -> Any:
        return self.inner.answer()


class TrackingTask(LoopTask):
    """A detector's task whose results carry track ids (``TrackedResult``)."""

    def __init__(self, inner: LoopTask, fps: float | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.tracker = Tracker(fps)

    def postprocess(self, outputs: list, transform: Any) -> TrackedResult:
        result = self.inner.postprocess(outputs, transform)
        return TrackedResult(result, self.tracker.update(result.detections))

    def describe(self) -> str:
        return f"{self.inner.describe()}; tracked (norfair, an id after {CONFIRM_FRAMES} frames, " \
               f"ended after {self.tracker.lost} unseen)"

    def summary(self, fps: float) -> Summary:
        return self.inner.summary(fps)
