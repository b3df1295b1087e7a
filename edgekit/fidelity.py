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
from edgekit.datasets import BOX_KEYS
from edgekit.errors import InvalidData
from edgekit.manifest import VALIDATION_NAME, Fidelity


@dataclass
class Validation:
    """Validation samples, their labels or boxes if known, and the Keras outputs on them."""

    x: np.ndarray
    y: np.ndarray | None
    reference: list[np.ndarray]  # one (N, ...) array per Keras output
    boxes: dict[str, np.ndarray] | None = None  # detection truth: boxes, classes, counts

    def save(self, folder: Path) -> Path:
        path = Path(folder) / VALIDATION_NAME
        arrays = {"x": self.x, **{f"reference_{i}": r for i, r in enumerate(self.reference)},
                  **(self.boxes or {})}
        if self.y is not None:
            arrays["y"] = self.y
        np.savez_compressed(path, **arrays)
        return path


@dataclass
class Task:
    """What the outputs mean, for scoring: the task, and for detection its decoder."""

    name: str = "generic"
    decoder: dict | None = None
    labels: tuple[str, ...] = ()
    input_size: tuple[int, int] = (0, 0)  # (width, height) of the model input


def _detections(outputs: list[np.ndarray], task: Task, threshold: float) -> list[list]:
    """Decode every sample of stacked outputs (N, ...) with the task's decoder."""
    from edgekit.tasks.detection import decode

    params = {**(task.decoder or {}), "score_threshold": threshold}
    return [decode([o[i:i + 1] for o in outputs], params, task.input_size, task.labels)
            for i in range(len(outputs[0]))]


def _truth_boxes(boxes: dict[str, np.ndarray], labels: tuple[str, ...]) -> list[list]:
    from edgekit.tasks.detection import Detection

    out = []
    for b, c, n in zip(boxes["boxes"], boxes["classes"], boxes["counts"]):
        out.append([Detection(labels[int(k)] if int(k) < len(labels) else "", int(k), 1.0,
                              tuple(float(v) for v in box)) for box, k in zip(b[:n], c[:n])])
    return out


def detection_scores(reference: list[np.ndarray], produced: list[np.ndarray],
                     boxes: dict[str, np.ndarray] | None, task: Task) -> tuple[float, float | None]:
    """(agreement, accuracy) for a detector, both mAP@0.5 on the validation set.

    Agreement scores the artifact's detections against the Keras model's own
    (those at or above the decoder's threshold); accuracy against the true boxes.
    """
    from edgekit.tasks.metrics import mean_average_precision

    shown = float((task.decoder or {}).get("score_threshold", 0.3))
    ranked = _detections(produced, task, 0.01)  # the PR curve needs the low scores too
    keras = _detections(reference, task, shown)
    agreement = mean_average_precision(ranked, keras, 0.5)
    accuracy = None
    if boxes is not None:
        accuracy = mean_average_precision(ranked, _truth_boxes(boxes, task.labels), 0.5)
    return agreement, accuracy


def load_validation(folder: str | Path) -> Validation | None:
    """The bundle's validation set, or None when the bundle has none."""
    path = Path(folder) / VALIDATION_NAME
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            count = sum(1 for k in data.keys() if k.startswith("reference_"))
            boxes = {k: data[k] for k in BOX_KEYS} if all(k in data for k in BOX_KEYS) else None
            return Validation(data["x"], data["y"] if "y" in data else None,
                              [data[f"reference_{i}"] for i in range(count)], boxes)
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


def compare(reference: list[np.ndarray], produced: list[np.ndarray], validation: Validation,
            task: Task, runtime: str) -> Fidelity:
    """Fidelity of ``produced`` against the Keras ``reference`` (both in Keras output order)."""
    y = validation.y
    diffs = [np.abs(p.reshape(r.shape).astype(np.float64) - r) for r, p in zip(reference, produced)]
    fidelity = Fidelity(
        runtime=runtime,
        samples=int(len(reference[0])),
        max_abs_diff=float(max(d.max() for d in diffs)),
        mean_abs_diff=float(np.mean([d.mean() for d in diffs])),
    )
    if task.name == "classification":
        ref_top = reference[0].reshape(len(reference[0]), -1).argmax(axis=1)
        top = produced[0].reshape(len(produced[0]), -1).argmax(axis=1)
        fidelity.top1_agreement = float((ref_top == top).mean())
        if y is not None:
            fidelity.accuracy = float((top == y).mean())
    elif task.name == "detection" and task.decoder:
        fidelity.top1_agreement, fidelity.accuracy = detection_scores(
            reference, produced, validation.boxes, task)
    return fidelity


def keras_accuracy(validation: Validation, task: Task) -> float | None:
    """The Keras model's own accuracy (top-1, or mAP@0.5 for a detector) on the set."""
    if task.name == "classification" and validation.y is not None:
        top = validation.reference[0].reshape(len(validation.x), -1).argmax(axis=1)
        return float((top == validation.y).mean())
    if task.name == "detection" and task.decoder and validation.boxes is not None:
        from edgekit.tasks.metrics import mean_average_precision

        return mean_average_precision(_detections(validation.reference, task, 0.01),
                                      _truth_boxes(validation.boxes, task.labels), 0.5)
    return None


def measure(backend: Backend, validation: Validation, task: Task,
            order: list[int] | None = None) -> tuple[Fidelity, list[int]]:
    """Run the validation set on ``backend``; return its fidelity and the output order used."""
    if order is None:
        first = backend.infer(validation.x[:1])
        order = align_outputs([r[:1] for r in validation.reference], first)
    produced = predict(backend, validation.x, order)
    return compare(validation.reference, produced, validation, task,
                   backend.describe()), order
