"""Events from a classifier: its (smoothed) top-1 label seen as one object over the whole
frame. A stretch of frames showing the same label is one "track": ``new`` once it has lasted
``min_frames`` frames, ``update`` at the bounded rate while it lasts, ``end`` when
another label has held for ``min_frames`` frames (a one-frame flicker neither ends a
label nor starts one). The rules, filters and destinations are the detector's (``rules``)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.events.tracking import Tracked
from edgekit.tasks.base import FrameResult, LoopTask, Summary
from edgekit.tasks.detection import Detection


class LabelTracker:
    """One run's label stretches: ``update`` takes the frame's top-1 and says which stretch
    (track id) it belongs to; a label seen again within ``end_frames`` frames keeps its id."""

    def __init__(self, end_frames: int) -> None:
        self.end_frames = max(1, end_frames)
        self._frame = 0
        self._next_id = 1
        self._open: dict[int, tuple[int, int]] = {}  # class id -> (track id, last frame)

    def update(self, class_id: int, label: str, score: float,
               size: tuple[int, int]) -> list[Tracked]:
        self._frame += 1
        self._open = {c: (t, last) for c, (t, last) in self._open.items()
                      if self._frame - last <= self.end_frames}
        track_id = self._open[class_id][0] if class_id in self._open else self._new_id()
        self._open[class_id] = (track_id, self._frame)
        width, height = size
        box = (0.0, 0.0, float(width), float(height))
        return [Tracked(track_id, Detection(label, class_id, score, box))]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1


@dataclass(frozen=True)
class LabelResult(FrameResult):
    """A classifier's frame result with its top-1 as a track (what the events sink reads)."""

    inner: Any  # the classifier's own result (ClassesResult)
    tracks: list[Tracked] = field(default_factory=list)

    def record(self) -> dict:
        return self.inner.record()

    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        return self.inner.draw(image, lines)

    def label_counts(self) -> dict:
        return self.inner.label_counts()

    def answer(self) -> Any:
        return self.inner.answer()


class LabelTrackingTask(LoopTask):
    """A classifier's task whose results carry its shown (smoothed) top-1 as a track."""

    def __init__(self, inner: LoopTask, min_frames: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.tracker = LabelTracker(min_frames)

    def postprocess(self, outputs: list, transform: Any) -> LabelResult:
        result = self.inner.postprocess(outputs, transform)
        best = result.shown[0]
        return LabelResult(result, self.tracker.update(best.id, best.name, best.score,
                                                       transform.frame_size))

    def describe(self) -> str:
        return f"{self.inner.describe()}; events when the top-1 changes"

    def summary(self, fps: float) -> Summary:
        return self.inner.summary(fps)
