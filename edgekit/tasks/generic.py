"""Any other model (regression, embeddings, ...): each output's shape and a short summary per
frame; the loop times it like any task, and ``--save FILE.npz`` keeps the arrays."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.tasks.base import FrameResult, LoopTask

if TYPE_CHECKING:
    from edgekit.preprocess import Transform

SHOWN_VALUES = 4  # an output this small is shown whole; a larger one by its summary


def output_summary(a: np.ndarray) -> dict[str, Any]:
    """An output's shape, and its values (a small one) or min, max, mean and argmax."""
    a = np.asarray(a)
    out: dict[str, Any] = {"shape": list(a.shape)}
    flat = a.reshape(-1).astype(np.float64)
    if flat.size <= SHOWN_VALUES:
        out["values"] = [round(float(v), 6) for v in flat]
    elif flat.size:
        out.update(min=round(float(flat.min()), 6), max=round(float(flat.max()), 6),
                   mean=round(float(flat.mean()), 6), argmax=int(flat.argmax()))
    return out


@dataclass(frozen=True)
class OutputsResult(FrameResult):
    """A frame's raw outputs (in the Keras model's order)."""

    outputs: tuple[np.ndarray, ...]

    def record(self) -> dict[str, Any]:
        return {"outputs": [output_summary(a) for a in self.outputs]}

    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        from edgekit.tasks.draw import annotate

        shown = [_line(i, s) for i, s in enumerate(self.record()["outputs"])]
        return annotate(image, [], [*lines, *shown])


def _line(index: int, s: dict[str, Any]) -> str:
    shape = "x".join(map(str, s["shape"])) or "scalar"
    if "values" in s:
        return f"out{index} {shape}: " + " ".join(f"{v:.4g}" for v in s["values"])
    if "mean" in s:
        return f"out{index} {shape}: mean {s['mean']:.4g} min {s['min']:.4g} max {s['max']:.4g}"
    return f"out{index} {shape}"


class GenericTask(LoopTask):
    """Each output as it is."""

    name = "generic"

    def postprocess(self, outputs: list[np.ndarray], transform: Transform) -> OutputsResult:
        return OutputsResult(tuple(outputs))

    def describe(self) -> str:
        return "task: generic (each output's shape and summary)"
