"""The task contract: what the camera loop asks of a task, and nothing more.

The loop (``edgekit.loop``) runs capture -> preprocess -> infer -> postprocess -> sink for
any model. What the numbers mean is the task's: ``LoopTask.postprocess`` turns one frame's
outputs into a ``FrameResult``, which knows how it is drawn on the frame and what it says in
JSON (a line of ``--save F.jsonl``, ``/stats.json``'s latest frame, the live view). A task may keep
state across frames (a classifier's smoothing) and add up the clip at the end (``summary``).

The tasks: ``detection`` (boxes), ``classification`` (top-k, smoothed), ``segmentation``
(a class mask) and ``generic`` (any other output: shapes and summaries). ``make_task``
builds the one a model needs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgekit.preprocess import Transform

TASKS = ("classification", "detection", "segmentation", "generic")


class FrameResult(ABC):
    """One frame's result, as a task made it."""

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """The frame's result as JSON-ready fields (a JSON line of --save, /stats.json's latest)."""

    @abstractmethod
    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        """A copy of ``image`` with the result drawn on it and ``lines`` in a panel."""

    def label_counts(self) -> dict[str, int]:
        """Per class, how many times this frame shows it (for /metrics); none by default."""
        return {}

    def answer(self) -> Any:
        """What two backends' results for a frame are compared by (``edgekit compare``): a
        classifier's top-1 class id, a segmenter's mask; None when the task has none."""
        return None


@dataclass
class Summary:
    """What a clip added up to, for the run's report: lines to print and the same as JSON."""

    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class LoopTask(ABC):
    """What the loop needs of a task. One instance per run: it may keep state."""

    name: str = "generic"

    @abstractmethod
    def postprocess(self, outputs: list[np.ndarray], transform: Transform) -> FrameResult:
        """One frame's outputs (in the Keras model's order) -> its result, in frame pixels
        (``transform`` says how the frame became the model's input)."""

    def describe(self) -> str:
        """One line on how results are made, for the run's report (the decoder, top-k...)."""
        return f"task: {self.name}"

    def summary(self, fps: float) -> Summary:
        """What the frames seen so far add up to (``fps``: the source's frame rate, to turn
        frames into seconds). Nothing by default."""
        return Summary()

