"""How faithful an artifact is to the Keras model it came from.

The bundle keeps a validation set with the Keras model's own outputs on it
(``validation.npz``), so fidelity can be measured anywhere, on any backend,
without TensorFlow. Every output gets the largest and mean absolute difference
and the cosine similarity; outputs that are class scores get top-1 agreement
(``top1`` and ``agreeing`` are the one definition of it, used by convert,
verify, bench and deploy's smoke test); a segmenter's class scores get it per pixel, and the
mean IoU of its masks against Keras's; a detector gets mAP against the Keras model's own
detections; accuracy when labels (or masks) are known.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.backends.base import Backend
from edgekit.bundle.manifest import VALIDATION_NAME, Fidelity, Manifest, OutputFidelity
from edgekit.data.datasets import ARRAY_ERRORS, BOX_KEYS, array_problem, check_array_file
from edgekit.errors import InvalidData


@dataclass
class Validation:
    """Validation samples, their labels or boxes if known, and the Keras outputs on them."""

    x: np.ndarray
    y: np.ndarray | None
    reference: list[np.ndarray]  # one (N, ...) array per Keras output
    boxes: dict[str, np.ndarray] | None = None  # detection truth: boxes, classes, counts
    masks: np.ndarray | None = None  # segmentation truth: (N, H, W) class ids

    def save(self, folder: Path) -> Path:
        path = Path(folder) / VALIDATION_NAME
        arrays = {"x": self.x, **{f"reference_{i}": r for i, r in enumerate(self.reference)},
                  **(self.boxes or {}), **({} if self.masks is None else {"masks": self.masks})}
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
    class_outputs: tuple[int, ...] = ()  # Keras outputs that are class scores (top-1 applies)
    output_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name in ("classification", "segmentation") and not self.class_outputs:
            self.class_outputs = (0,)

    def output_name(self, index: int) -> str:
        return self.output_names[index] if index < len(self.output_names) else f"output {index}"


def task_of(manifest: Manifest) -> Task:
    """How a bundle's outputs are scored, as its manifest records it."""
    from edgekit.tasks.detection import with_bundle_files

    outputs = manifest.outputs
    decoder = with_bundle_files(manifest.decoder, manifest.folder) if manifest.decoder else None
    return Task(manifest.task, decoder, tuple(manifest.labels),
                (manifest.input.width, manifest.input.height),
                tuple(i for i, o in enumerate(outputs) if o.get("class_scores")),
                tuple(o.get("name") or f"output {i}" for i, o in enumerate(outputs)))


def looks_like_class_scores(output: np.ndarray) -> bool:
    """A softmax over the last axis: values in 0..1 that sum to 1 at every position."""
    if output.ndim < 2 or output.shape[-1] < 2 or not np.all(np.isfinite(output)):
        return False
    sums = output.reshape(-1, output.shape[-1]).astype(np.float64).sum(axis=1)
    return bool(output.min() >= 0 and output.max() <= 1 and np.all(np.abs(sums - 1) < 1e-3))


def top1(output: np.ndarray) -> np.ndarray:
    """Each sample's top-1 class over the last axis, at every position: (N, positions).

    A position whose scores are not all finite gets -1, so it never agrees.
    """
    scores = np.asarray(output)
    scores = scores.reshape(len(scores), -1, scores.shape[-1] if scores.ndim > 2 else
                            int(np.prod(scores.shape[1:])))
    best = scores.argmax(axis=-1)
    return np.where(np.isfinite(scores).all(axis=-1), best, -1)


def _answers(values: Sequence[object] | np.ndarray, missing: int) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    return np.asarray([missing if v is None else v for v in values])


def agreeing(reference: Sequence[object] | np.ndarray,
             produced: Sequence[object] | np.ndarray) -> int:
    """How many answers equal the reference's: THE definition of agreement with Keras (and of
    accuracy, with labels as the reference). Answers are class indices from ``top1``, pairwise;
    a missing answer (None, or -1 for scores that were not finite) never agrees."""
    ref, got = _answers(reference, -2), _answers(produced, -3)
    return int(((ref == got) & (ref >= 0)).sum())


def agreement(reference: Sequence[object] | np.ndarray,
              produced: Sequence[object] | np.ndarray) -> float:
    """The share of answers that agree (``agreeing`` over the count); NaN for none."""
    count = int(np.size(_answers(reference, -2)))
    return agreeing(reference, produced) / count if count else float("nan")


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
    if not path.exists() and not path.is_symlink():
        return None
    try:
        check_array_file(path, ".npz")
        with np.load(path, allow_pickle=False) as data:
            count = sum(1 for k in data.keys() if k.startswith("reference_"))
            boxes = {k: data[k] for k in BOX_KEYS} if all(k in data for k in BOX_KEYS) else None
            return Validation(data["x"], data["y"] if "y" in data else None,
                              [data[f"reference_{i}"] for i in range(count)], boxes,
                              data["masks"] if "masks" in data else None)
    except InvalidData as exc:
        raise InvalidData(f"the bundle's validation set is not usable: {exc}; convert the "
                          "model again") from None
    except ARRAY_ERRORS as exc:
        raise InvalidData(f"{path}: damaged validation set: {array_problem(exc)}; convert the "
                          "model again") from None


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


def predict(backend: Backend, x: np.ndarray, order: list[int] | None = None,
            timings: list[int] | None = None) -> list[np.ndarray]:
    """Run every sample through the backend (batch 1); outputs stacked, in Keras order.

    ``timings``, when given, receives each inference's duration in nanoseconds.
    """
    per_output: list[list[np.ndarray]] = []
    for sample in x:
        start = time.perf_counter_ns()
        outputs = backend.infer(sample[None])
        if timings is not None:
            timings.append(time.perf_counter_ns() - start)
        if order is not None:
            outputs = [outputs[i] for i in order]
        if not per_output:
            per_output = [[] for _ in outputs]
        for store, out in zip(per_output, outputs):
            store.append(out[0] if out.shape[:1] == (1,) else out)
    return [np.stack(store) for store in per_output]


def _cosine(reference: np.ndarray, produced: np.ndarray) -> float:
    """Mean over samples of the cosine similarity (two zero outputs count as 1)."""
    a = reference.reshape(len(reference), -1)
    b = produced.reshape(len(produced), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(both_zero, 1.0, 0.0))
    return float(cos.mean())


def compare_output(index: int, reference: np.ndarray, produced: np.ndarray,
                   task: Task) -> OutputFidelity:
    """One output: differences and cosine on the samples where it is finite; top-1 if scores."""
    produced = produced.reshape(reference.shape).astype(np.float64)
    reference = reference.astype(np.float64)
    finite = np.isfinite(produced.reshape(len(produced), -1)).all(axis=1)
    if finite.any():
        diff = np.abs(produced[finite] - reference[finite])
        max_diff, mean_diff = float(diff.max()), float(diff.mean())
        cosine = _cosine(reference[finite], produced[finite]) * float(finite.mean())
    else:
        max_diff = mean_diff = None
        cosine = 0.0
    result = OutputFidelity(index, task.output_name(index), max_diff, mean_diff, cosine,
                            nonfinite=int((~finite).sum()))
    if index in task.class_outputs:
        result.top1_agreement = agreement(top1(reference), top1(produced))
    return result


def compare(reference: list[np.ndarray], produced: list[np.ndarray], validation: Validation,
            task: Task, runtime: str) -> Fidelity:
    """Fidelity of ``produced`` against the Keras ``reference`` (both in Keras output order)."""
    outputs = [compare_output(i, r, p, task)
               for i, (r, p) in enumerate(zip(reference, produced))]
    nonfinite = ~np.ones(len(reference[0]), bool)
    for r, p in zip(reference, produced):
        nonfinite |= ~np.isfinite(p.reshape(len(r), -1)).all(axis=1)
    scored = [o for o in outputs if o.top1_agreement is not None]
    worst = (min(scored, key=lambda o: o.top1_agreement) if scored
             else min(outputs, key=lambda o: o.cosine))
    fidelity = Fidelity(
        runtime=runtime,
        samples=int(len(reference[0])),
        max_abs_diff=_worst_of([o.max_abs_diff for o in outputs], max),
        mean_abs_diff=_worst_of([o.mean_abs_diff for o in outputs], np.mean),
        cosine=min(o.cosine for o in outputs),
        worst=worst.name if len(outputs) > 1 else "",
        nonfinite=int(nonfinite.sum()),
        outputs=outputs,
    )
    if task.name == "detection" and task.decoder:
        fidelity.top1_agreement, fidelity.accuracy = detection_scores(
            reference, produced, validation.boxes, task)
        fidelity.worst = ""
    elif task.name == "segmentation" and scored:
        fidelity.top1_agreement = worst.top1_agreement  # per pixel
        fidelity.miou_agreement, fidelity.accuracy, fidelity.miou = segmentation_scores(
            reference, produced, validation.masks, task)
    elif scored:
        fidelity.top1_agreement = worst.top1_agreement
        fidelity.accuracy = label_accuracy(validation.y, produced, task)
    return fidelity


def class_maps(output: np.ndarray) -> np.ndarray:
    """A segmenter's stacked class scores (N, H, W, C) -> its masks (N, H, W) (-1 where a
    pixel's scores are not finite)."""
    return top1(output).reshape(output.shape[:-1])


def fit_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """True masks (N, h, w) at the output's resolution ``size`` (H, W), nearest neighbour."""
    import cv2

    if masks.shape[1:] == size:
        return masks
    return np.stack([cv2.resize(m.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)
                     for m in masks]).astype(masks.dtype)


def segmentation_scores(reference: list[np.ndarray], produced: list[np.ndarray],
                        masks: np.ndarray | None, task: Task
                        ) -> tuple[float, float | None, float | None]:
    """(mIoU agreement with Keras's masks, pixel accuracy, mIoU) for a segmenter's first
    class-score output; the last two against the true masks when there are some."""
    from edgekit.tasks.metrics import mean_iou

    index = task.class_outputs[0]
    keras, got = class_maps(reference[index]), class_maps(produced[index])
    agreement_iou = mean_iou(keras, got)
    if masks is None:
        return agreement_iou, None, None
    truth = fit_masks(masks, got.shape[1:])
    return agreement_iou, agreement(truth.reshape(-1), got.reshape(-1)), mean_iou(truth, got)


def _worst_of(values: list[float | None], pick) -> float | None:
    known = [v for v in values if v is not None]
    return float(pick(known)) if known else None


def label_accuracy(labels: np.ndarray | None, outputs: list[np.ndarray],
                   task: Task) -> float | None:
    """Top-1 accuracy of the first class-score output against per-sample labels."""
    if labels is None or not task.class_outputs or task.name == "detection":
        return None
    answers = top1(outputs[task.class_outputs[0]])
    if answers.shape[1] != 1:  # one label per sample, but a class answer per position
        return None
    return agreement(labels, answers[:, 0])


def keras_accuracy(validation: Validation, task: Task) -> float | None:
    """The Keras model's own accuracy (top-1, pixel accuracy for a segmenter, mAP@0.5 for a
    detector) on the set."""
    if task.name == "segmentation":
        if validation.masks is None or not task.class_outputs:
            return None
        got = class_maps(validation.reference[task.class_outputs[0]])
        return agreement(fit_masks(validation.masks, got.shape[1:]).reshape(-1), got.reshape(-1))
    if task.class_outputs and task.name != "detection":
        return label_accuracy(validation.y, validation.reference, task)
    if task.name == "detection" and task.decoder and validation.boxes is not None:
        from edgekit.tasks.metrics import mean_average_precision

        return mean_average_precision(_detections(validation.reference, task, 0.01),
                                      _truth_boxes(validation.boxes, task.labels), 0.5)
    return None


def measure(backend: Backend, validation: Validation, task: Task,
            order: list[int] | None = None,
            timings: list[int] | None = None) -> tuple[Fidelity, list[int]]:
    """Run the validation set on ``backend``; return its fidelity and the output order used."""
    if order is None:
        first = backend.infer(validation.x[:1])
        order = align_outputs([r[:1] for r in validation.reference], first)
    produced = predict(backend, validation.x, order, timings)
    return compare(validation.reference, produced, validation, task,
                   backend.describe()), order
