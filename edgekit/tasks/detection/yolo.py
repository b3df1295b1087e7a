"""Raw YOLO-style outputs (``yolo``): rows of box, objectness and class scores, suppressed here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import InvalidModel, UsageError
from edgekit.helpers.schema import setting
from edgekit.tasks.detection.boxes import Detection
from edgekit.tasks.detection.grid import suppress_boxes
from edgekit.tasks.detection.params import (
    class_filter,
    classes_setting,
    iou_setting,
    make_params,
    max_detections_setting,
    pick_outputs,
    score_setting,
)


@dataclass(frozen=True)
class YoloParams:
    """Parameters for raw YOLO-style outputs: [1, N, C] or [1, C, N] with cx, cy, w, h first.

    ``C`` is 4 + classes (YOLOv8 and later) or, with ``objectness`` true, 5 +
    classes (YOLOv5: cx, cy, w, h, objectness, classes). ``layout`` is ``"NC"``
    (a row per box, [1, N, C]: YOLOv5), ``"CN"`` ([1, C, N]: YOLOv8) or ``"auto"``:
    the channel axis is the one of size ``C`` when ``num_classes`` is given (or
    the labels are), else the smaller of the two. ``coordinates`` is ``"pixels"`` (model-input
    pixels), ``"normalized"`` ([0, 1] of the input size) or ``"auto"`` (normalised
    when no coordinate exceeds 2). ``apply_sigmoid`` is for heads that emit
    logits.
    """

    score_threshold: float = score_setting(0.25)
    iou_threshold: float = iou_setting(0.45)
    max_detections: int = max_detections_setting()
    classes: tuple[str, ...] = classes_setting()
    num_classes: int | None = setting(None, low=1, help="classes per box (default: the labels', "
                                      "else told from the shape)")
    layout: str = setting("auto", choices=("auto", "NC", "CN"),
                          help="NC: a row per box (YOLOv5); CN: a column per box (YOLOv8)")
    objectness: bool = setting(False, help="an objectness column before the classes (YOLOv5)")
    coordinates: str = setting("auto", choices=("auto", "pixels", "normalized"),
                               help="boxes in input pixels or in 0..1 of the input")
    apply_sigmoid: bool = setting(False, help="the head emits logits")
    class_agnostic_nms: bool = setting(False, help="one NMS over every class, not one per class")


def _yolo_rows(raw: np.ndarray, channels: int | None, layout: str = "auto") -> np.ndarray:
    """The output as (N, C) rows, one per candidate box."""
    if raw.ndim != 3 or raw.shape[0] != 1:
        raise InvalidModel(f"yolo expects one output [1, N, C] or [1, C, N], got {raw.shape}")
    a, b = raw.shape[1:]
    if layout != "auto":
        rows = raw[0] if layout == "NC" else raw[0].T
        if channels is not None and rows.shape[1] != channels:
            raise UsageError(
                f"yolo layout {layout} reads {rows.shape[1]} channels from the output "
                f"{raw.shape}, but num_classes and objectness give {channels}: check them")
        return rows
    if channels is not None and channels in (a, b):
        transpose = a == channels and b != channels
    elif channels is not None:
        raise InvalidModel(
            f"yolo output {raw.shape} has no axis of {channels} channels; check "
            "\"num_classes\" and \"objectness\" in the manifest's decoder"
        )
    else:
        transpose = a < b
    return raw[0].T if transpose else raw[0]


def decode_yolo(
    outputs: Sequence[np.ndarray],
    input_size: tuple[int, int],
    labels: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> list[Detection]:
    """Detections in model-input pixels from a raw YOLO output, after NMS."""
    p: YoloParams = make_params(YoloParams, params, "yolo")
    (raw,) = pick_outputs(outputs, "yolo", 1)
    num_classes = p.num_classes if p.num_classes is not None else (len(labels) or None)
    first_class = 5 if p.objectness else 4
    rows = _yolo_rows(raw, None if num_classes is None else first_class + num_classes,
                      p.layout)
    if rows.shape[1] <= first_class:
        raise InvalidModel(f"yolo output has {rows.shape[1]} channels: too few for any class")
    if p.apply_sigmoid:
        rows = np.concatenate([rows[:, :4], 1 / (1 + np.exp(-rows[:, 4:]))], axis=1)
    cls = rows[:, first_class:]
    allowed = class_filter(p.classes, labels)
    if allowed is not None:
        cls = np.where(np.isin(np.arange(cls.shape[1]), list(allowed)), cls, -np.inf)
    class_ids = cls.argmax(axis=1)
    scores = cls.max(axis=1) * (rows[:, 4] if p.objectness else 1.0)
    keep = np.flatnonzero(scores >= p.score_threshold)
    xywh = rows[keep, :4].astype(np.float64)
    normalized = p.coordinates == "normalized" or (
        p.coordinates == "auto" and (xywh.size == 0 or float(np.abs(xywh).max()) <= 2.0)
    )
    if normalized:
        xywh = xywh * np.array([input_size[0], input_size[1]] * 2)
    half = xywh[:, 2:] / 2
    boxes = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
    return suppress_boxes(boxes, class_ids[keep], scores[keep], labels, p)


