"""Detection quality (average precision per class and its mean, mAP) and segmentation
quality (mean IoU of two class maps), numpy only.

AP is the all-point interpolated area under the precision-recall curve
(PASCAL VOC 2010 onwards; COCO samples the same envelope at 101 recalls).
Within a class, predictions from every image are ranked by score; each one
matches the not-yet-matched ground-truth box of its class in its image with
the highest IoU, if that IoU is at least the threshold (COCO's rule), and is
a false positive otherwise. The mean is over the classes that have ground
truth; predictions of classes without ground truth are ignored.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from edgekit.errors import InvalidData
from edgekit.tasks.detection import Detection, box_iou


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """The area under the precision envelope of a PR curve (points in rank order)."""
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _matches(
    predictions: Sequence[Sequence[Detection]],
    ground_truths: Sequence[Sequence[Detection]],
    class_id: int,
    iou_threshold: float,
) -> tuple[np.ndarray, int]:
    """True/false positive flags of one class's predictions in rank order, and its truth count."""
    ranked = [
        (d.score, image, d.box)
        for image, found in enumerate(predictions)
        for d in found
        if d.class_id == class_id
    ]
    ranked.sort(key=lambda item: -item[0])  # stable: equal scores keep image order
    truth = [np.array([t.box for t in gt if t.class_id == class_id]).reshape(-1, 4)
             for gt in ground_truths]
    taken = [np.zeros(len(t), bool) for t in truth]
    hits = np.zeros(len(ranked), bool)
    for rank, (_, image, box) in enumerate(ranked):
        if not len(truth[image]):
            continue
        iou = box_iou(np.array(box), truth[image])[0]
        iou[taken[image]] = -1.0
        best = int(np.argmax(iou))
        if iou[best] >= iou_threshold:
            taken[image][best] = True
            hits[rank] = True
    return hits, sum(len(t) for t in truth)


def class_average_precisions(
    predictions: Sequence[Sequence[Detection]],
    ground_truths: Sequence[Sequence[Detection]],
    iou_threshold: float = 0.5,
) -> dict[int, float]:
    """AP per class id, for every class with ground truth.

    ``predictions[i]`` and ``ground_truths[i]`` are the detections and the true
    objects (as :class:`Detection`, score ignored) of image ``i``.
    """
    if len(predictions) != len(ground_truths):
        raise InvalidData(
            f"got predictions for {len(predictions)} images but ground truth for "
            f"{len(ground_truths)}; pass one list per image to both"
        )
    counts: dict[int, int] = defaultdict(int)
    for gt in ground_truths:
        for t in gt:
            counts[t.class_id] += 1
    result = {}
    for class_id in sorted(counts):
        hits, total = _matches(predictions, ground_truths, class_id, iou_threshold)
        tp = np.cumsum(hits)
        recall = tp / total
        precision = tp / np.arange(1, len(hits) + 1)
        result[class_id] = average_precision(recall, precision)
    return result


def mean_average_precision(
    predictions: Sequence[Sequence[Detection]],
    ground_truths: Sequence[Sequence[Detection]],
    iou_threshold: float = 0.5,
) -> float:
    """mAP: the mean of :func:`class_average_precisions` over classes with ground truth."""
    per_class = class_average_precisions(predictions, ground_truths, iou_threshold)
    if not per_class:
        raise InvalidData("mAP needs at least one ground-truth object; the ground truth is empty")
    return float(np.mean(list(per_class.values())))


def mean_iou(reference: np.ndarray, produced: np.ndarray, ignore: int = -1) -> float:
    """Mean intersection over union of two class maps (any shape, the same), over the classes
    present in either; positions where either is ``ignore`` (a missing answer) are left out.
    1.0 when both hold nothing."""
    ref = np.asarray(reference).reshape(-1)
    got = np.asarray(produced).reshape(-1)
    kept = (ref != ignore) & (got != ignore)
    ref, got = ref[kept], got[kept]
    classes = np.union1d(np.unique(ref), np.unique(got))
    if not len(classes):
        return 1.0
    ious = [np.sum((ref == c) & (got == c)) / np.sum((ref == c) | (got == c)) for c in classes]
    return float(np.mean(ious))
