"""Object detection, runtime-agnostic: boxes, NMS, decoders and letterbox geometry.

A decoder takes a model's outputs (float numpy arrays, already dequantised,
batch 1) and returns :class:`Detection` records in model-input pixels; a
:class:`Transform` from :func:`letterbox` or :func:`resize` maps them back to
the frame. ``DECODERS`` picks a decoder by the name in a manifest's
``"decoder"`` object; the other keys of that object are the decoder's
parameters (see each ``*Params`` class; an unknown key raises InvalidModel).
Every decoder is called the same way:
``decoder(outputs, input_size=(width, height), labels=[...], params={...})``.

Boxes are always ``(x1, y1, x2, y2)`` in pixels, x to the right, y down.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from edgekit.errors import InvalidModel, UsageError
from edgekit.preprocess import Transform

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detected object: its label, class id, score in [0, 1] and box in pixels."""

    label: str
    class_id: int
    score: float
    box: Box


# ---------------------------------------------------------------------------- boxes and NMS


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


# ---------------------------------------------------------------------------- decoder params


def _params(cls: type, params: Mapping[str, Any] | None, decoder: str) -> Any:
    """Build the frozen params dataclass ``cls`` from a manifest's decoder object."""
    given = dict(params or {})
    given.pop("name", None)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidModel(
            f"decoder {decoder!r} has no parameter(s) {', '.join(unknown)}; "
            f"fix the manifest's \"decoder\" object (known: {', '.join(sorted(known))})"
        )
    return cls(**given)


def _output(outputs: Sequence[np.ndarray], decoder: str, count: int) -> list[np.ndarray]:
    """The outputs as float arrays, checked to be ``count`` tensors."""
    arrays = [np.asarray(o, np.float32) for o in outputs]
    if len(arrays) != count:
        raise InvalidModel(
            f"decoder {decoder!r} expects {count} output tensor(s), the model gave "
            f"{len(arrays)} with shapes {[a.shape for a in arrays]}; pick the decoder that "
            "matches the model in its manifest"
        )
    return arrays


# ---------------------------------------------------------------------------- edgekit-grid


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

    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    max_detections: int = 100
    size_scale: float = 0.5
    offset_low: float = -0.5
    offset_high: float = 1.5
    class_agnostic_nms: bool = False
    output_order: tuple[str, ...] | None = None


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
    p: GridParams = _params(GridParams, params, "edgekit-grid")
    objectness, box, cls = grid_parts(outputs, p.output_order)
    rows, cols = objectness.shape
    width, height = input_size
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
    return _suppress(boxes, class_ids[ys, xs], scores[ys, xs], labels, p)


def _suppress(
    boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray, labels: Sequence[str], p: Any
) -> list[Detection]:
    """NMS (per class unless ``p.class_agnostic_nms``) and the top ``p.max_detections``."""
    if p.class_agnostic_nms:
        keep = nms(boxes, scores, p.iou_threshold, p.max_detections)
    else:
        keep = class_nms(boxes, scores, class_ids, p.iou_threshold, p.max_detections)
    return detections(boxes[keep], class_ids[keep], scores[keep], labels)


# ---------------------------------------------------------------------------- SSD post-process

SSD_ROLES = ("boxes", "classes", "scores", "count")


@dataclass(frozen=True)
class SsdParams:
    """Parameters for TFLite's ``TFLite_Detection_PostProcess`` outputs.

    The op emits boxes [1, N, 4] (ymin, xmin, ymax, xmax, normalised to [0, 1]),
    classes [1, N], scores [1, N] and count [1]; models list them in different
    orders. ``output_order`` names the role of each output in the model's order
    (e.g. ``["boxes", "classes", "scores", "count"]``, the TF Object Detection
    API's order). Without it the roles are told apart by shape: count is the
    one-element vector, boxes has four times as many values as each of the two
    others; of those two [1, N] tensors, classes is the one whose values are
    all whole numbers (and not all in [0, 1]); if that does not settle it
    (e.g. every score is 0 or 1), the one listed first is taken as classes.
    ``class_offset`` is added to each class id (1 for label files that start
    with a background entry).
    """

    score_threshold: float = 0.3
    max_detections: int = 100
    output_order: tuple[str, ...] | None = None
    class_offset: int = 0


def ssd_roles(outputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Tell SSD post-process outputs apart by shape and values (see :class:`SsdParams`)."""
    arrays = _output(outputs, "ssd", 4)
    count = [a for a in arrays if a.size == 1 and a.ndim <= 1]
    rest = [a for a in arrays if not any(a is c for c in count)]
    rest.sort(key=lambda a: -a.size)
    if len(count) != 1 or rest[0].size != 4 * rest[1].size or rest[1].size != rest[2].size:
        raise InvalidModel(
            "could not tell the SSD outputs apart by shape "
            f"{[a.shape for a in arrays]}; set \"output_order\" in the manifest's decoder"
        )
    boxes, flat = rest[0], [a for a in arrays if a is rest[1] or a is rest[2]]
    first, second = flat

    def looks_like_classes(a: np.ndarray) -> bool:
        whole = bool(np.all(a == np.round(a)))
        return whole and not bool(np.all((a >= 0) & (a <= 1)))

    if looks_like_classes(second) and not looks_like_classes(first):
        first, second = second, first
    return {"boxes": boxes, "classes": first, "scores": second, "count": count[0]}


def decode_ssd_postprocess(
    outputs: Sequence[np.ndarray],
    input_size: tuple[int, int],
    labels: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> list[Detection]:
    """Detections in model-input pixels from SSD post-process outputs; ``input_size`` is (w, h)."""
    p: SsdParams = _params(SsdParams, params, "ssd")
    if p.output_order is not None:
        if sorted(p.output_order) != sorted(SSD_ROLES):
            raise InvalidModel(
                f"ssd output_order must name each of {', '.join(SSD_ROLES)} once, "
                f"got {list(p.output_order)}"
            )
        roles = dict(zip(p.output_order, _output(outputs, "ssd", 4)))
    else:
        roles = ssd_roles(outputs)
    boxes = roles["boxes"].reshape(-1, 4)
    classes = roles["classes"].reshape(-1)
    scores = roles["scores"].reshape(-1)
    n = min(int(roles["count"].reshape(-1)[0]), len(boxes), len(classes), len(scores))
    keep = np.flatnonzero(scores[:n] >= p.score_threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")][: p.max_detections]
    width, height = input_size
    ymin, xmin, ymax, xmax = (boxes[keep, i] for i in range(4))
    pixel = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
    class_ids = np.round(classes[keep]).astype(np.int64) + p.class_offset
    return detections(pixel, class_ids, scores[keep], labels)


# ---------------------------------------------------------------------------- YOLO


@dataclass(frozen=True)
class YoloParams:
    """Parameters for raw YOLO-style outputs: [1, N, C] or [1, C, N] with cx, cy, w, h first.

    ``C`` is 4 + classes (YOLOv8 and later) or, with ``objectness`` true, 5 +
    classes (YOLOv5: cx, cy, w, h, objectness, classes). The channel axis is
    the one of size ``C`` when ``num_classes`` is given (or the labels are),
    else the smaller of the two. ``coordinates`` is ``"pixels"`` (model-input
    pixels), ``"normalized"`` ([0, 1] of the input size) or ``"auto"`` (normalised
    when no coordinate exceeds 2). ``apply_sigmoid`` is for heads that emit
    logits.
    """

    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    num_classes: int | None = None
    objectness: bool = False
    coordinates: str = "auto"
    apply_sigmoid: bool = False
    class_agnostic_nms: bool = False


def _yolo_rows(raw: np.ndarray, channels: int | None) -> np.ndarray:
    """The output as (N, C) rows, one per candidate box."""
    if raw.ndim != 3 or raw.shape[0] != 1:
        raise InvalidModel(f"yolo expects one output [1, N, C] or [1, C, N], got {raw.shape}")
    a, b = raw.shape[1:]
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
    p: YoloParams = _params(YoloParams, params, "yolo")
    if p.coordinates not in ("auto", "pixels", "normalized"):
        raise InvalidModel(
            f"yolo coordinates must be auto, pixels or normalized, got {p.coordinates!r}"
        )
    (raw,) = _output(outputs, "yolo", 1)
    num_classes = p.num_classes if p.num_classes is not None else (len(labels) or None)
    first_class = 5 if p.objectness else 4
    rows = _yolo_rows(raw, None if num_classes is None else first_class + num_classes)
    if rows.shape[1] <= first_class:
        raise InvalidModel(f"yolo output has {rows.shape[1]} channels: too few for any class")
    if p.apply_sigmoid:
        rows = np.concatenate([rows[:, :4], 1 / (1 + np.exp(-rows[:, 4:]))], axis=1)
    cls = rows[:, first_class:]
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
    return _suppress(boxes, class_ids[keep], scores[keep], labels, p)


Decoder = Callable[..., "list[Detection]"]
DECODERS: dict[str, Decoder] = {
    "edgekit-grid": decode_edgekit_grid,
    "ssd": decode_ssd_postprocess,
    "yolo": decode_yolo,
}


def decode(
    outputs: Sequence[np.ndarray],
    decoder: Mapping[str, Any],
    input_size: tuple[int, int],
    labels: Sequence[str] = (),
) -> list[Detection]:
    """Run the decoder a manifest's ``"decoder"`` object names, with its parameters."""
    name = decoder.get("name")
    if name not in DECODERS:
        raise UsageError(
            f"unknown detection decoder {name!r}; the manifest's decoder \"name\" must be one "
            f"of {', '.join(sorted(DECODERS))}"
        )
    return DECODERS[name](outputs, input_size=input_size, labels=labels, params=decoder)


# ---------------------------------------------------------------------------- geometry


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
