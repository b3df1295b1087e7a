"""Classification: top-k classes from a score vector, the same for every runtime; in the
camera loop, per frame and smoothed over the last frames, with a clip summary."""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.tasks.base import FrameResult, LoopTask, Summary

if TYPE_CHECKING:
    from edgekit.preprocess import Transform


@dataclass(frozen=True)
class Class:
    """One class and its score (a probability when the model ends in softmax)."""

    id: int
    score: float
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or str(self.id)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "class_id": self.id, "score": round(self.score, 4)}


def top_k(scores: np.ndarray, k: int = 5, labels: Sequence[str] = ()) -> list[Class]:
    """The k best classes, best first; ties keep the lower id."""
    flat = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-flat, kind="stable")[:max(1, k)]
    return [Class(int(i), float(flat[i]), labels[i] if i < len(labels) else "") for i in order]


@dataclass(frozen=True)
class ClassesResult(FrameResult):
    """A frame's top-k classes, and the top-k of the scores averaged over the last frames
    when the loop smooths (``smoothed``; empty otherwise). What is shown is the smoothed
    top-k when there is one."""

    top: list[Class]
    smoothed: list[Class]

    @property
    def shown(self) -> list[Class]:
        return self.smoothed or self.top

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"classes": [c.to_dict() for c in self.top],
                               "top1": self.top[0].to_dict()}
        if self.smoothed:
            out["smoothed"] = [c.to_dict() for c in self.smoothed]
            out["smoothed_top1"] = self.smoothed[0].to_dict()
        return out

    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        from edgekit.tasks.draw import annotate_classes

        return annotate_classes(image, self.shown, lines)

    def label_counts(self) -> dict[str, int]:
        return {self.shown[0].name: 1}

    def answer(self) -> int:
        return self.top[0].id


class ClassificationTask(LoopTask):
    """Top-k per frame; with ``smooth`` > 1, the mean of the last ``smooth`` frames' scores
    too (what steadies a classifier that flickers between frames)."""

    name = "classification"

    def __init__(self, labels: Sequence[str], top: int = 5, smooth: int = 1) -> None:
        self.labels, self.top, self.smooth = list(labels), top, smooth
        self._recent: deque[np.ndarray] = deque(maxlen=max(1, smooth))
        self._shown: Counter[str] = Counter()
        self._changes = 0
        self._last: str | None = None

    def postprocess(self, outputs: list[np.ndarray], transform: Transform) -> ClassesResult:
        scores = np.asarray(outputs[0], np.float64).reshape(-1)
        smoothed: list[Class] = []
        if self.smooth > 1:
            self._recent.append(scores)
            smoothed = top_k(np.mean(self._recent, axis=0), self.top, self.labels)
        result = ClassesResult(top_k(scores, self.top, self.labels), smoothed)
        best = result.shown[0].name
        self._shown[best] += 1
        if self._last is not None and best != self._last:
            self._changes += 1
        self._last = best
        return result

    def describe(self) -> str:
        smoothing = f", smoothed over the last {self.smooth} frames" if self.smooth > 1 else ""
        return f"task: classification, top-{self.top}{smoothing}"

    def summary(self, fps: float) -> Summary:
        if not self._shown:
            return Summary()
        frames = sum(self._shown.values())
        which = "smoothed top-1" if self.smooth > 1 else "top-1"
        per_class = ", ".join(
            f"{name} {n / fps:.1f} s ({100 * n / frames:.0f}%)" if fps > 0 else
            f"{name} {n} frames ({100 * n / frames:.0f}%)"
            for name, n in self._shown.most_common())
        return Summary(
            [f"{which} per class: {per_class}", f"{which} changed {self._changes} times"],
            {"top1_frames": dict(self._shown.most_common()), "top1_changes": self._changes,
             "top1_seconds": ({k: round(v / fps, 3) for k, v in self._shown.items()}
                              if fps > 0 else None)})
