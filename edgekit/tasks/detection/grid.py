"""edgekit's own grid head (``edgekit-grid``): objectness, box and classes per cell."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edgekit.errors import InvalidModel
from edgekit.helpers.schema import setting
from edgekit.tasks.detection.boxes import Detection, class_nms, detections, nms
from edgekit.tasks.detection.params import (
    class_filter,
    classes_setting,
    iou_setting,
    make_params,
    max_detections_setting,
    output_order_setting,
    score_setting,
)

GRID_ROLES = ("objectness", "box", "classes")


@dataclass(frozen=True)
class GridParams:
    """Parameters of edgekit's own grid head (models/digit_detector).

    The model emits three tensors, every value a sigmoid in [0, 1]: objectness
    [1, rows, cols, 1], box [1, rows, cols, 4] (tx, ty, tw, th) and classes
    [1, rows, cols, classes]; or the three concatenated in that order into one
    [1, rows, cols, 5 + classes]. The three are told apart by their last
    dimension (runtimes may list outputs in another order than Keras does);
    ``output_order`` names them explicitly, needed only with 1 or 4 classes.

    A box's centre is ``(col + offset_low + (offset_high - offset_low) * tx) *
    input_width / cols`` (likewise y with ty and rows), its size ``tw *
    size_scale * input_width`` by ``th * size_scale * input_height``. A cell's
    score is its objectness times its best class score.
    """

    output_roles: ClassVar[tuple[str, ...]] = GRID_ROLES  # what output_order may name

    score_threshold: float = score_setting(0.3)
    iou_threshold: float = iou_setting(0.45)
    max_detections: int = max_detections_setting()
    classes: tuple[str, ...] = classes_setting()
    size_scale: float = setting(0.5, low=0, help="a box's size: tw (th) times this times the "
                                "input's width (height)")
    offset_low: float = setting(-0.5, help="a box centre's lowest offset in its cell, in cells")
    offset_high: float = setting(1.5, help="a box centre's highest offset in its cell, in cells")
    class_agnostic_nms: bool = setting(False, help="one NMS over every class, not one per class")
    output_order: tuple[str, ...] | None = output_order_setting(GRID_ROLES)


def grid_parts(
    outputs: Sequence[np.ndarray], output_order: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objectness (rows, cols), box (rows, cols, 4) and classes (rows, cols, n) of a grid head."""
    arrays = [np.asarray(o, np.float32) for o in outputs]
    if len(arrays) not in (1, 3) or any(a.ndim != 4 or a.shape[0] != 1 for a in arrays):
        raise InvalidModel(
            "edgekit-grid expects one output [1, rows, cols, 5 + classes] or three "
            f"[1, rows, cols, 1 | 4 | classes], got {[a.shape for a in arrays]}"
        )
    if len(arrays) == 1:
        grid = arrays[0][0]
        if grid.shape[-1] < 6:
            raise InvalidModel(f"edgekit-grid output has {grid.shape[-1]} channels, needs >= 6")
        return grid[..., 0], grid[..., 1:5], grid[..., 5:]
    if output_order is not None:
        if sorted(output_order) != sorted(GRID_ROLES):
            raise InvalidModel(
                f"edgekit-grid output_order must name each of {', '.join(GRID_ROLES)} once, "
                f"got {list(output_order)}"
            )
        roles = dict(zip(output_order, arrays))
    else:
        roles = _grid_roles(arrays)
    if len({roles[r].shape[1:3] for r in GRID_ROLES}) != 1:
        raise InvalidModel(f"edgekit-grid outputs differ in grid size: {[a.shape for a in arrays]}")
    return roles["objectness"][0, ..., 0], roles["box"][0], roles["classes"][0]


def _grid_roles(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Tell the three grid outputs apart by their channel count."""
    channels = [a.shape[-1] for a in arrays]
    if channels.count(1) != 1 or channels.count(4) != 1:
        raise InvalidModel(
            f"could not tell the edgekit-grid outputs apart by their channels {channels}; "
            "set \"output_order\" in the manifest's decoder"
        )
    classes = next(a for a in arrays if a.shape[-1] not in (1, 4))
    return {
        "objectness": arrays[channels.index(1)],
        "box": arrays[channels.index(4)],
        "classes": classes,
    }


def decode_edgekit_grid(
    outputs: Sequence[np.ndarray],
    input_size: tuple[int, int],
    labels: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> list[Detection]:
    """Detections in model-input pixels from edgekit's grid head; ``input_size`` is (w, h)."""
    p: GridParams = make_params(GridParams, params, "edgekit-grid")
    objectness, box, cls = grid_parts(outputs, p.output_order)
    rows, cols = objectness.shape
    width, height = input_size
    allowed = class_filter(p.classes, labels)
    if allowed is not None:  # the best of the classes asked for, in each cell
        cls = np.where(np.isin(np.arange(cls.shape[-1]), list(allowed)), cls, -1.0)
    class_ids = cls.argmax(axis=-1)
    scores = objectness * cls.max(axis=-1)
    ys, xs = np.nonzero(scores >= p.score_threshold)
    if len(ys) == 0:
        return []
    cell = box[ys, xs]
    span = p.offset_high - p.offset_low
    cx = (xs + p.offset_low + span * cell[:, 0]) * (width / cols)
    cy = (ys + p.offset_low + span * cell[:, 1]) * (height / rows)
    w = cell[:, 2] * p.size_scale * width
    h = cell[:, 3] * p.size_scale * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return suppress_boxes(boxes, class_ids[ys, xs], scores[ys, xs], labels, p)


def suppress_boxes(
    boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray, labels: Sequence[str], p: Any
) -> list[Detection]:
    """NMS (per class unless ``p.class_agnostic_nms``) and the top ``p.max_detections``."""
    if p.class_agnostic_nms:
        keep = nms(boxes, scores, p.iou_threshold, p.max_detections)
    else:
        keep = class_nms(boxes, scores, class_ids, p.iou_threshold, p.max_detections)
    return detections(boxes[keep], class_ids[keep], scores[keep], labels)


