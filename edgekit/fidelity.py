"""How faithful an artifact is to the Keras model it came from.

The bundle keeps a validation set with the Keras model's own outputs on it
(``validation.npz``), so fidelity can be measured anywhere, on any backend,
without TensorFlow: top-1 agreement with Keras, the largest and mean absolute
output difference, and accuracy when labels are known.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.backends.base import Backend
from edgekit.errors import InvalidData
from edgekit.manifest import VALIDATION_NAME, Fidelity


@dataclass
class Validation:
    """Validation samples, their labels if known, and the Keras outputs on them."""

    x: np.ndarray
    y: np.ndarray | None
    reference: list[np.ndarray]  # one (N, ...) array per Keras output

    def save(self, folder: Path) -> Path:
        path = Path(folder) / VALIDATION_NAME
        arrays = {"x": self.x, **{f"reference_{i}": r for i, r in enumerate(self.reference)}}
        if self.y is not None:
            arrays["y"] = self.y
        np.savez_compressed(path, **arrays)
        return path


def load_validation(folder: str | Path) -> Validation | None:
    """The bundle's validation set, or None when the bundle has none."""
    path = Path(folder) / VALIDATION_NAME
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            count = sum(1 for k in data.keys() if k.startswith("reference_"))
            return Validation(data["x"], data["y"] if "y" in data else None,
                              [data[f"reference_{i}"] for i in range(count)])
    except (ValueError, OSError, KeyError) as exc:
        raise InvalidData(f"{path}: damaged validation set ({exc}); convert again") from None


def align_outputs(reference: list[np.ndarray], produced: list[np.ndarray]) -> list[int]:
    """For each reference output, the index of the produced output that matches it.

    Converters may reorder a multi-output model's outputs. Outputs are paired by
    shape; among outputs of equal shape, by the smallest difference.
    """
    if len(reference) != len(produced):
        raise InvalidData(f"the artifact has {len(produced)} outputs, Keras {len(reference)}")
    free = list(range(len(produced)))
    order = []
    for ref in reference:
        same = [i for i in free if produced[i].size == ref.size]
        if not same:
            raise InvalidData(f"no artifact output matches the Keras output of shape {ref.shape}")
        best = min(same, key=lambda i: float(np.abs(produced[i].reshape(ref.shape) - ref).mean()))
        order.append(best)
        free.remove(best)
    return order


def predict(backend: Backend, x: np.ndarray, order: list[int] | None = None) -> list[np.ndarray]:
    """Run every sample through the backend (batch 1); outputs stacked, in Keras order."""
    per_output: list[list[np.ndarray]] = []
    for sample in x:
        outputs = backend.infer(sample[None])
        if order is not None:
            outputs = [outputs[i] for i in order]
        if not per_output:
            per_output = [[] for _ in outputs]
        for store, out in zip(per_output, outputs):
            store.append(out[0] if out.shape[:1] == (1,) else out)
    return [np.stack(store) for store in per_output]


def compare(reference: list[np.ndarray], produced: list[np.ndarray], y: np.ndarray | None,
            task: str, runtime: str) -> Fidelity:
    """Fidelity of ``produced`` against the Keras ``reference`` (both in Keras output order)."""
    diffs = [np.abs(p.reshape(r.shape).astype(np.float64) - r) for r, p in zip(reference, produced)]
    fidelity = Fidelity(
        runtime=runtime,
        samples=int(len(reference[0])),
        max_abs_diff=float(max(d.max() for d in diffs)),
        mean_abs_diff=float(np.mean([d.mean() for d in diffs])),
    )
    if task == "classification":
        ref_top = reference[0].reshape(len(reference[0]), -1).argmax(axis=1)
        top = produced[0].reshape(len(produced[0]), -1).argmax(axis=1)
        fidelity.top1_agreement = float((ref_top == top).mean())
        if y is not None:
            fidelity.accuracy = float((top == y).mean())
    return fidelity


def keras_accuracy(validation: Validation, task: str) -> float | None:
    if task != "classification" or validation.y is None:
        return None
    top = validation.reference[0].reshape(len(validation.x), -1).argmax(axis=1)
    return float((top == validation.y).mean())


def measure(backend: Backend, validation: Validation, task: str,
            order: list[int] | None = None) -> tuple[Fidelity, list[int]]:
    """Run the validation set on ``backend``; return its fidelity and the output order used."""
    if order is None:
        first = backend.infer(validation.x[:1])
        order = align_outputs([r[:1] for r in validation.reference], first)
    produced = predict(backend, validation.x, order)
    return compare(validation.reference, produced, validation.y, task,
                   backend.describe()), order
