"""Boxes and non-maximum suppression: the ``Detection`` record, IoU, NMS (per class or
not), records from parallel arrays, and boxes mapped back to the frame."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.preprocess import Transform

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detected object: its label, class id, score in [0, 1] and box in pixels."""

    label: str
    class_id: int
    score: float
    box: Box




def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_detections: int | None = None
) -> np.ndarray:
    """Greedy non-maximum suppression; the indices of the boxes kept, best score first.

    A box is dropped when its IoU with a better-scoring kept box is above
    ``iou_threshold``. Ties in score keep the earlier box.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind="stable")
    keep: list[int] = []
    while order.size and (max_detections is None or len(keep) < max_detections):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[box_iou(boxes[best], boxes[rest])[0] <= iou_threshold]
    return np.array(keep, np.int64)


def class_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_detections: int | None = None,
) -> np.ndarray:
    """NMS within each class (boxes of different classes never suppress each other).

    Returns the indices kept, best score first, at most ``max_detections``.
    """
    class_ids = np.asarray(class_ids).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    kept = [
        members[nms(np.asarray(boxes).reshape(-1, 4)[members], scores[members], iou_threshold)]
        for members in (np.flatnonzero(class_ids == c) for c in np.unique(class_ids))
    ]
    if not kept:
        return np.zeros(0, np.int64)
    merged = np.concatenate(kept)
    merged = merged[np.argsort(-scores[merged], kind="stable")]
    return merged if max_detections is None else merged[:max_detections]


def detections(
    boxes: np.ndarray,
    class_ids: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str] = (),
) -> list[Detection]:
    """Records from parallel arrays; a class id without a label is named by its number."""
    out = []
    for box, class_id, score in zip(np.asarray(boxes).reshape(-1, 4), class_ids, scores):
        cid = int(class_id)
        label = labels[cid] if 0 <= cid < len(labels) else str(cid)
        out.append(Detection(label, cid, float(score), tuple(float(v) for v in box)))
    return out






def to_frame(found: Sequence[Detection], transform: Transform) -> list[Detection]:
    """Detections in model-input pixels to frame pixels; boxes left empty are dropped."""
    if not found:
        return []
    boxes = transform.boxes_to_frame(np.array([d.box for d in found]))
    return [
        Detection(d.label, d.class_id, d.score, tuple(float(v) for v in box))
        for d, box in zip(found, boxes)
        if box[2] > box[0] and box[3] > box[1]
    ]


