"""Object detection, runtime-agnostic: boxes, NMS, decoders and their parameters.

A decoder takes a model's outputs (float numpy arrays, already dequantised,
batch 1) and returns :class:`Detection` records in model-input pixels; a
:class:`Transform` from ``edgekit.preprocess.fit`` maps them back to the frame.
``DECODERS`` picks a decoder by the name in a manifest's ``"decoder"`` object;
the other keys of that object are the decoder's parameters (see each
``*Params`` class; an unknown key or a value out of range is refused). Every
decoder is called the same way:
``decoder(outputs, input_size=(width, height), labels=[...], params={...})``.

The parameters every decoder shares: ``score_threshold``, ``max_detections``,
``classes`` (keep only these, by name or id), and ``iou_threshold`` where the
decoder does non-maximum suppression itself. ``DetectionOptions`` is what a person
asks for on top of a bundle's decoder (``--iou``, ``--max-detections``,
``--classes``, ``--anchors``, ``--decoder-param KEY=VALUE``); ``configure``
merges and checks them.

Boxes are always ``(x1, y1, x2, y2)`` in pixels, x to the right, y down.
``DetectionTask`` is the detection side of the camera loop's task contract (tasks/base.py).
"""
from __future__ import annotations

import functools
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.errors import EdgekitError, InvalidModel, UsageError
from edgekit.preprocess import Transform
from edgekit.tasks.base import FrameResult, LoopTask

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


def _params(cls: type, params: Mapping[str, Any] | None, decoder: str,
            error: type[EdgekitError] = InvalidModel) -> Any:
    """Build the frozen params dataclass ``cls`` from a manifest's decoder object, each value
    brought to its field's type and checked (``error``: InvalidModel for a manifest,
    UsageError for flags)."""
    given = dict(params or {})
    given.pop("name", None)
    given.pop("origin", None)  # where each value came from: for people, not the decoder
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise error(
            f"decoder {decoder!r} has no parameter(s) {', '.join(unknown)}; "
            f"fix the manifest's \"decoder\" object (known: {', '.join(sorted(known))})"
            if error is InvalidModel else
            f"the {decoder} decoder has no parameter {', '.join(unknown)} (its parameters: "
            f"{', '.join(sorted(known))})"
        )
    hints = _type_hints(cls)
    values = {key: _coerce(value, hints[key], f"{decoder} {key}", error)
              for key, value in given.items()}
    built = cls(**values)
    _check_common(built, decoder, error)
    return built


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The field types of a params class (resolved once: decoders run on every frame)."""
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, what: str, error: type[EdgekitError]) -> Any:
    """A JSON value or a flag's text as the type ``hint`` names (bool, int, float, str, a
    tuple of those, or None where the hint allows it); ``error`` when it is not one."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        item = args[0]
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else \
                [v for v in text.replace(" ", "").split(",") if v]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return tuple(_coerce(v, item, what, error) for v in items)
    try:
        if hint is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            if isinstance(value, bool):
                return value
            raise ValueError
        if hint is int:
            number = float(value)
            if number != int(number) or isinstance(value, bool):
                raise ValueError
            return int(number)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int("inf")
        kind = {bool: "true or false", int: "a whole number", float: "a finite number"}.get(
            hint, "text")
        raise error(f"{what} takes {kind}, not {value!r}") from None


def _check_common(p: Any, decoder: str, error: type[EdgekitError]) -> None:
    """The shared parameters in range: scores and IoU 0..1, at least one detection."""
    for key in ("score_threshold", "iou_threshold"):
        value = getattr(p, key, None)
        if value is not None and not 0 <= value <= 1:
            raise error(f"{decoder} {key} {value:g} is outside 0..1")
    if getattr(p, "max_detections", 1) < 1:
        raise error(f"{decoder} max_detections {p.max_detections} must be 1 or more")
    roles = OUTPUT_ROLES.get(decoder)
    order = getattr(p, "output_order", None)
    if roles and order is not None and sorted(order) != sorted(roles):
        raise error(f"{decoder} output_order names the role of each output in the model's "
                    f"order: each of {', '.join(roles)} once, not {','.join(order)}")


def class_filter(classes: Sequence[str | int], labels: Sequence[str]) -> frozenset[int] | None:
    """The class ids ``classes`` names (by label or id); None for no filter. A name that is
    no label is a UsageError that lists some of them."""
    if not classes:
        return None
    ids = set()
    lowered = [label.lower() for label in labels]
    for item in classes:
        text = str(item).strip()
        if text.isdigit():
            if labels and int(text) >= len(labels):
                raise UsageError(f"--classes {text}: this model's labels number its classes "
                                 f"0 to {len(labels) - 1}")
            ids.add(int(text))
        elif text in labels:
            ids.add(list(labels).index(text))
        elif text.lower() in lowered:
            ids.add(lowered.index(text.lower()))
        else:
            known = [f"{i} {name}" for i, name in enumerate(labels) if name][:12]
            more = ", ..." if len([n for n in labels if n]) > 12 else ""
            raise UsageError(
                f"--classes {text!r} is not a class of this model ("
                + (", ".join(known) + more if known else "it has no labels: give ids, or "
                   "--labels") + ")")
    return frozenset(ids)


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
    classes: tuple[str, ...] = ()
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
    classes: tuple[str, ...] = ()
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
    class_ids = np.round(classes[:n]).astype(np.int64) + p.class_offset
    wanted = scores[:n] >= p.score_threshold
    allowed = class_filter(p.classes, labels)
    if allowed is not None:  # after the model's own NMS: the op has already suppressed
        wanted &= np.isin(class_ids, list(allowed))
    keep = np.flatnonzero(wanted)
    keep = keep[np.argsort(-scores[keep], kind="stable")][: p.max_detections]
    width, height = input_size
    ymin, xmin, ymax, xmax = (boxes[keep, i] for i in range(4))
    pixel = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
    return detections(pixel, class_ids[keep], scores[keep], labels)


# ---------------------------------------------------------------------------- YOLO


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

    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    classes: tuple[str, ...] = ()
    num_classes: int | None = None
    layout: str = "auto"
    objectness: bool = False
    coordinates: str = "auto"
    apply_sigmoid: bool = False
    class_agnostic_nms: bool = False


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
    p: YoloParams = _params(YoloParams, params, "yolo")
    if p.coordinates not in ("auto", "pixels", "normalized"):
        raise InvalidModel(
            f"yolo coordinates must be auto, pixels or normalized, got {p.coordinates!r}"
        )
    if p.layout not in ("auto", "NC", "CN"):
        raise UsageError(f"yolo layout must be auto, NC ([1, boxes, channels]: YOLOv5) or CN "
                         f"([1, channels, boxes]: YOLOv8), not {p.layout!r}")
    (raw,) = _output(outputs, "yolo", 1)
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
    return _suppress(boxes, class_ids[keep], scores[keep], labels, p)


# ---------------------------------------------------------------------------- raw SSD

SSD_RAW_ROLES = ("boxes", "scores")


@dataclass(frozen=True)
class RawSsdParams:
    """Parameters for SSD outputs before non-maximum suppression (Coral's ``*_no_nms``
    models, the TF Object Detection API's ``raw_outputs``): box encodings [1, N, 4]
    (ty, tx, th, tw per anchor) and class scores [1, N, K]. Decoding, NMS and the
    anchors are done here, as TFLite's ``TFLite_Detection_PostProcess`` op does them.

    Box coding is the TF OD API's ``faster_rcnn_box_coder``: centre
    ``ty / y_scale * anchor_h + anchor_y``, height ``exp(th / h_scale) * anchor_h``
    (likewise x and w). The K score columns start with ``K - num_classes``
    background columns (default one); ``apply_sigmoid`` for logits.
    ``class_agnostic_nms`` true is the op's default "fast" NMS (each anchor keeps
    its best class, one NMS over all); false is its regular per-class NMS.

    Anchors come from ``anchors``, a file (.npy, or text, one anchor per line:
    y_center x_center height width, normalised to 0..1, in the model's output
    order), else from the TF OD API's ``ssd_anchor_generator`` parameters below
    (``multiple_grid_anchor_generator.create_ssd_anchors``; its defaults are the
    MobileNet SSD configs'). ``feature_map_sizes`` default to the input size over
    16, 32, 64, ... rounded up (19, 10, 5, 3, 2, 1 for 300x300).
    ``output_order`` names the outputs' roles ("boxes", "scores") when the
    shapes do not tell them apart (K = 4).
    """

    score_threshold: float = 0.3
    iou_threshold: float = 0.6
    max_detections: int = 100
    classes: tuple[str, ...] = ()
    class_agnostic_nms: bool = True
    num_classes: int | None = None
    apply_sigmoid: bool = False
    y_scale: float = 10.0
    x_scale: float = 10.0
    h_scale: float = 5.0
    w_scale: float = 5.0
    anchors: str | None = None
    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    feature_map_sizes: tuple[int, ...] | None = None
    output_order: tuple[str, ...] | None = None


def ssd_anchors(p: RawSsdParams, input_size: tuple[int, int]) -> np.ndarray:
    """Anchors (N, 4) as (y_center, x_center, height, width), normalised, from the SSD anchor
    parameters; the order is the model's: layer, then row, column, then the anchor's box."""
    return _ssd_anchors(p.num_layers, p.min_scale, p.max_scale, p.aspect_ratios,
                        p.interpolated_scale_aspect_ratio, p.reduce_boxes_in_lowest_layer,
                        p.feature_map_sizes, tuple(input_size))


@functools.lru_cache(maxsize=16)
def _ssd_anchors(num_layers: int, min_scale: float, max_scale: float,
                 aspect_ratios: tuple[float, ...], interpolated: float, reduce_lowest: bool,
                 feature_map_sizes: tuple[int, ...] | None,
                 input_size: tuple[int, int]) -> np.ndarray:
    width, height = input_size
    if num_layers < 1:
        raise UsageError("ssd-raw num_layers must be 1 or more")
    if feature_map_sizes is None:
        shapes = [(math.ceil(height / 2 ** (4 + i)), math.ceil(width / 2 ** (4 + i)))
                  for i in range(num_layers)]
    elif len(feature_map_sizes) != num_layers:
        raise UsageError(f"ssd-raw feature_map_sizes lists {len(feature_map_sizes)} sizes; "
                         f"num_layers is {num_layers}")
    else:
        shapes = [(int(n), int(n)) for n in feature_map_sizes]
    scales = [min_scale + (max_scale - min_scale) * i / max(1, num_layers - 1)
              for i in range(num_layers)] + [1.0]
    base_h, base_w = min(width, height) / height, min(width, height) / width
    layers = []
    for layer, (rows, cols) in enumerate(shapes):
        scale, scale_next = scales[layer], scales[layer + 1]
        if layer == 0 and reduce_lowest:
            specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            specs = [(scale, ratio) for ratio in aspect_ratios]
            if interpolated > 0:
                specs.append((math.sqrt(scale * scale_next), interpolated))
        box_scales = np.array([s for s, _ in specs], np.float64)
        root = np.sqrt(np.array([r for _, r in specs], np.float64))
        heights, widths = box_scales / root * base_h, box_scales * root * base_w
        ys = (np.arange(rows) + 0.5) / rows
        xs = (np.arange(cols) + 0.5) / cols
        grid_y, grid_x, index = np.meshgrid(ys, xs, np.arange(len(specs)), indexing="ij")
        layers.append(np.stack([grid_y.ravel(), grid_x.ravel(), heights[index.ravel()],
                                widths[index.ravel()]], axis=1))
    anchors = np.concatenate(layers).astype(np.float32)
    anchors.setflags(write=False)
    return anchors


def read_anchors(path: str | Path) -> np.ndarray:
    """Anchors (N, 4) from a .npy or text file; UsageError when it is not one."""
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    if stat is None:
        raise UsageError(f"--anchors {path}: no such file (a .npy or text file of anchors, one "
                         "per line: y_center x_center height width)")
    return _read_anchors(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_anchors(path: str, mtime_ns: int, size: int) -> np.ndarray:
    try:
        if path.endswith(".npy"):
            anchors = np.load(path, allow_pickle=False)
        else:
            rows = [line.replace(",", " ").split() for line in Path(path).read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
            anchors = np.array([[float(v) for v in row] for row in rows], np.float64) \
                if len({len(row) for row in rows}) == 1 else np.array(rows, dtype=object)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--anchors {path}: cannot read it as anchors ({exc}); give a .npy of "
                         "shape (N, 4) or text lines 'y_center x_center height width'") from None
    if anchors.dtype == object:
        raise UsageError(f"--anchors {path}: its lines hold different counts of numbers; give "
                         "four a line: y_center x_center height width")
    anchors = np.asarray(anchors, np.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 4 or not len(anchors) \
            or not np.all(np.isfinite(anchors)):
        raise UsageError(f"--anchors {path}: holds an array of shape {anchors.shape}; anchors "
                         "are (N, 4) finite numbers: y_center x_center height width")
    anchors.setflags(write=False)
    return anchors


def raw_ssd_parts(outputs: Sequence[np.ndarray],
                  output_order: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Box encodings (N, 4) and scores (N, K) of a raw SSD head."""
    arrays = _output(outputs, "ssd-raw", 2)
    if output_order is not None:
        if sorted(output_order) != sorted(SSD_RAW_ROLES):
            raise InvalidModel(f"ssd-raw output_order must name boxes and scores once each, "
                               f"got {list(output_order)}")
        roles = dict(zip(output_order, arrays))
    else:
        fours = [a for a in arrays if a.shape[-1] == 4]
        if len(fours) != 1:
            raise InvalidModel(
                "ssd-raw expects box encodings [1, N, 4] and class scores [1, N, K]; could not "
                f"tell {[a.shape for a in arrays]} apart: set output_order (boxes, scores)")
        roles = {"boxes": fours[0], "scores": next(a for a in arrays if a is not fours[0])}
    boxes = roles["boxes"].reshape(-1, 4)
    if roles["scores"].size % len(boxes):
        raise InvalidModel(f"ssd-raw: {len(boxes)} box encodings but scores of shape "
                           f"{roles['scores'].shape}: the two outputs do not belong together")
    return boxes, roles["scores"].reshape(len(boxes), -1)


def decode_ssd_raw(
    outputs: Sequence[np.ndarray],
    input_size: tuple[int, int],
    labels: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> list[Detection]:
    """Detections in model-input pixels from raw SSD outputs: anchors, box decoding, NMS."""
    p: RawSsdParams = _params(RawSsdParams, params, "ssd-raw")
    encodings, columns = raw_ssd_parts(outputs, p.output_order)
    if p.anchors:
        anchors, where = read_anchors(p.anchors), f"the anchors file {p.anchors}"
    else:
        anchors, where = ssd_anchors(p, input_size), "the SSD anchor parameters"
    if len(anchors) != len(encodings):
        raise UsageError(
            f"{where} give {len(anchors)} anchors, but the model outputs {len(encodings)} "
            "boxes: " + ("give the anchors file made for this model" if p.anchors else
                         "set num_layers, aspect_ratios or feature_map_sizes as the model was "
                         "trained (--decoder-param), or give --anchors FILE"))
    num_classes = p.num_classes if p.num_classes is not None else columns.shape[1] - 1
    if not 1 <= num_classes <= columns.shape[1]:
        raise UsageError(f"ssd-raw num_classes {num_classes}: the scores have "
                         f"{columns.shape[1]} columns")
    scores = columns[:, columns.shape[1] - num_classes:].astype(np.float64)
    if p.apply_sigmoid:
        scores = 1 / (1 + np.exp(-scores))
    allowed = class_filter(p.classes, labels)
    if allowed is not None:
        scores = np.where(np.isin(np.arange(num_classes), list(allowed)), scores, -np.inf)
    t = encodings.astype(np.float64)
    a = anchors.astype(np.float64)
    yc = t[:, 0] / p.y_scale * a[:, 2] + a[:, 0]
    xc = t[:, 1] / p.x_scale * a[:, 3] + a[:, 1]
    half_h = 0.5 * np.exp(t[:, 2] / p.h_scale) * a[:, 2]
    half_w = 0.5 * np.exp(t[:, 3] / p.w_scale) * a[:, 3]
    width, height = input_size
    boxes = np.stack([(xc - half_w) * width, (yc - half_h) * height,
                      (xc + half_w) * width, (yc + half_h) * height], axis=1)
    if p.class_agnostic_nms:  # each anchor's best class, one NMS over all
        class_ids, best = scores.argmax(axis=1), scores.max(axis=1)
        keep = np.flatnonzero(best >= p.score_threshold)
        chosen = keep[nms(boxes[keep], best[keep], p.iou_threshold, p.max_detections)]
        return detections(boxes[chosen], class_ids[chosen], best[chosen], labels)
    anchor, class_ids = np.nonzero(scores >= p.score_threshold)
    found = scores[anchor, class_ids]
    keep = class_nms(boxes[anchor], found, class_ids, p.iou_threshold, p.max_detections)
    return detections(boxes[anchor[keep]], class_ids[keep], found[keep], labels)


Decoder = Callable[..., "list[Detection]"]
DECODERS: dict[str, Decoder] = {
    "edgekit-grid": decode_edgekit_grid,
    "ssd": decode_ssd_postprocess,
    "ssd-raw": decode_ssd_raw,
    "yolo": decode_yolo,
}
PARAMS: dict[str, type] = {"edgekit-grid": GridParams, "ssd": SsdParams,
                           "ssd-raw": RawSsdParams, "yolo": YoloParams}
OUTPUT_ROLES: dict[str, tuple[str, ...]] = {"edgekit-grid": GRID_ROLES, "ssd": SSD_ROLES,
                                            "ssd-raw": SSD_RAW_ROLES}


def decoder_params(decoder: Mapping[str, Any]) -> Any:
    """The parameters object (``GridParams``, ...) of a decoder object, defaults filled in."""
    name = decoder.get("name")
    if name not in PARAMS:
        raise UsageError(f"unknown detection decoder {name!r}; choose from {', '.join(PARAMS)}")
    return _params(PARAMS[name], decoder, name)


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


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class DetectionOptions:
    """What a person asks for on top of a bundle's decoder (or for a bare detector): None
    keeps the bundle's value (or the decoder's default). ``params`` are the decoder's own
    parameters as KEY=VALUE texts (``--decoder-param``)."""

    decoder: str | None = None
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    classes: tuple[str, ...] | None = None
    anchors: str | None = None
    params: tuple[str, ...] = ()

    def given(self) -> dict[str, Any]:
        """The parameters asked for, by the decoder's key."""
        out: dict[str, Any] = {}
        for text in self.params:
            key, sep, value = text.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--decoder-param {text!r}: give KEY=VALUE, e.g. "
                                 "--decoder-param size_scale=0.5")
            out[key.strip()] = value.strip()
        for key in ("score_threshold", "iou_threshold", "max_detections", "classes", "anchors"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


FLAG_OF = {"score_threshold": "--score-threshold", "iou_threshold": "--iou",
           "max_detections": "--max-detections", "classes": "--classes", "anchors": "--anchors"}


def configure(decoder: Mapping[str, Any], options: DetectionOptions | None,
              own: str = "bundle") -> tuple[dict[str, Any], dict[str, str]]:
    """The decoder object to use: the model's own (``own`` names where it came from), with
    what ``options`` asks for on top; and where each value came from ("flag", ``own``).

    Everything is checked here, before a frame is read: the decoder's name, each parameter's
    name, type and range, the anchors file. A UsageError says which flag is wrong.
    """
    options = options or DetectionOptions()
    name = options.decoder or decoder.get("name")
    if name not in DECODERS:
        raise UsageError(f"unknown detection decoder {name!r}; choose from "
                         f"{', '.join(DECODERS)}" if options.decoder else
                         f"no detection decoder: give --decoder ({', '.join(DECODERS)})")
    base = {k: v for k, v in decoder.items() if k not in ("name", "origin")} \
        if decoder.get("name") in (None, name) else {}
    origin = {key: own for key in base}
    given = options.given()
    cls = PARAMS[name]
    known = {f.name for f in fields(cls)}
    for key in given:
        if key not in known:
            flag = FLAG_OF.get(key, f"--decoder-param {key}")
            why = (" (the model ran TFLite_Detection_PostProcess, which did the NMS: there is "
                   "no IoU left to set; give the op's own threshold when converting)"
                   if name == "ssd" and key == "iou_threshold" else
                   " (anchors are for raw SSD outputs: --decoder ssd-raw)"
                   if key == "anchors" else "")
            raise UsageError(f"{flag}: the {name} decoder has no such parameter{why}; its "
                             f"parameters: {', '.join(sorted(known))}")
    merged = {**base, **given}
    origin.update({key: "flag" for key in given})
    params = _params(cls, merged, name, UsageError)
    if getattr(params, "anchors", None):
        read_anchors(params.anchors)
    checked = {key: value for key, value in asdict(params).items() if key in merged}
    return {"name": name, **checked}, origin


def with_bundle_files(decoder: Mapping[str, Any], folder: str | Path | None) -> dict[str, Any]:
    """The decoder object with a file it names inside a bundle (``anchors``) made a path
    from here; the manifest keeps it relative, so the bundle can move."""
    out = dict(decoder)
    if folder is not None and out.get("anchors") and not Path(out["anchors"]).is_absolute():
        out["anchors"] = str(Path(folder) / out["anchors"])
    return out


def describe_decoder(decoder: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    """One line: the decoder and its parameters (the shared ones always, the rest when set),
    each with where it came from."""
    name = decoder.get("name", "?")
    p = _params(PARAMS[name], decoder, name) if name in PARAMS else None
    shown = [k for k in ("score_threshold", "iou_threshold", "max_detections", "classes")
             if p is not None and hasattr(p, k) and (k != "classes" or p.classes)]
    shown += [k for k in decoder if k not in shown and k not in ("name", "origin")]

    def value(key: str) -> str:
        v = getattr(p, key) if p is not None and hasattr(p, key) else decoder[key]
        if isinstance(v, (tuple, list)):
            return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v)

    return f"decoder {name}: " + ", ".join(
        f"{k} {value(k)} ({origin.get(k, 'default')})" for k in shown)


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


# ---------------------------------------------------------------------------- the camera loop

METRIC_THRESHOLD = 0.01  # detections kept for mAP (the PR curve needs the low scores too)


@dataclass(frozen=True)
class DetectionsResult(FrameResult):
    """A frame's detections: those shown (``detections``, over the score threshold) and, when
    the run is scored, every candidate down to ``METRIC_THRESHOLD`` (``candidates``)."""

    detections: list[Detection]
    candidates: list[Detection]

    def record(self) -> dict[str, Any]:
        return {"detections": [{"label": d.label, "class_id": d.class_id,
                                "score": round(d.score, 4), "box": [round(v, 1) for v in d.box]}
                               for d in self.detections]}

    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        from edgekit.tasks.draw import annotate

        return annotate(image, self.detections, lines)

    def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.detections:
            name = d.label or str(d.class_id)
            counts[name] = counts.get(name, 0) + 1
        return counts


class DetectionTask(LoopTask):
    """The decoder's boxes, mapped back to frame pixels; ``score_threshold`` (None: the
    decoder's) decides what is shown; ``keep_all`` keeps the low scores too, for mAP."""

    name = "detection"

    def __init__(self, decoder: Mapping[str, Any], origin: Mapping[str, str],
                 input_size: tuple[int, int], labels: Sequence[str],
                 score_threshold: float | None = None, keep_all: bool = False) -> None:
        self.decoder, self.origin, self.input_size = dict(decoder), dict(origin), input_size
        self.labels = list(labels)
        self.shown = score_threshold if score_threshold is not None else \
            decoder_params(decoder).score_threshold
        self.params = {**self.decoder, "score_threshold": min(self.shown, METRIC_THRESHOLD)
                       if keep_all else self.shown}

    def postprocess(self, outputs: list[np.ndarray], transform: Transform) -> DetectionsResult:
        candidates = to_frame(decode(outputs, self.params, self.input_size, self.labels),
                              transform)
        return DetectionsResult([d for d in candidates if d.score >= self.shown], candidates)

    def describe(self) -> str:
        return describe_decoder(self.decoder, self.origin)
