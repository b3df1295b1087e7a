"""Raw SSD outputs before the post-process op (``ssd-raw``): box encodings against anchors
(generated as TFLite's anchor generator does, or read from a file) and per-class scores."""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.errors import InvalidModel, UsageError
from edgekit.helpers.schema import setting
from edgekit.tasks.detection.boxes import Detection, class_nms, detections, nms
from edgekit.tasks.detection.params import (
    class_filter,
    classes_setting,
    iou_setting,
    make_params,
    max_detections_setting,
    output_order_setting,
    pick_outputs,
    score_setting,
)

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

    output_roles: ClassVar[tuple[str, ...]] = SSD_RAW_ROLES  # what output_order may name

    score_threshold: float = score_setting(0.3)
    iou_threshold: float = iou_setting(0.6)
    max_detections: int = max_detections_setting()
    classes: tuple[str, ...] = classes_setting()
    class_agnostic_nms: bool = setting(True, help="the op's fast NMS (true) or its per-class "
                                                  "NMS (false)")
    num_classes: int | None = setting(None, low=1, help="classes after the background "
                                      "column(s) (default: all but one)")
    apply_sigmoid: bool = setting(False, help="the scores are logits")
    y_scale: float = setting(10.0, help="the box coder's centre scale (y)")
    x_scale: float = setting(10.0, help="the box coder's centre scale (x)")
    h_scale: float = setting(5.0, help="the box coder's size scale (height)")
    w_scale: float = setting(5.0, help="the box coder's size scale (width)")
    anchors: str | None = setting(None, help="a file of anchors (.npy, or text lines)")
    num_layers: int = setting(6, low=1, help="feature maps the anchors are made for")
    min_scale: float = setting(0.2, help="the smallest anchor, as a share of the input")
    max_scale: float = setting(0.95, help="the largest anchor, as a share of the input")
    aspect_ratios: tuple[float, ...] = setting((1.0, 2.0, 0.5, 3.0, 0.3333),
                                               help="the anchors' width over height")
    interpolated_scale_aspect_ratio: float = setting(
        1.0, help="the extra anchor between two scales' aspect ratio")
    reduce_boxes_in_lowest_layer: bool = setting(True, help="three anchors on the first map")
    feature_map_sizes: tuple[int, ...] | None = setting(
        None, help="each map's size (default: the input over 16, 32, ...)")
    output_order: tuple[str, ...] | None = output_order_setting(SSD_RAW_ROLES)


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
        raise UsageError(f"anchors {path}: no such file (a .npy or text file of anchors, one "
                         "per line: y_center x_center height width)", param="anchors")
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
        raise UsageError(f"anchors {path}: cannot read it as anchors ({exc}); give a .npy of "
                         "shape (N, 4) or text lines 'y_center x_center height width'",
                         param="anchors") from None
    if anchors.dtype == object:
        raise UsageError(f"anchors {path}: its lines hold different counts of numbers; give "
                         "four a line: y_center x_center height width", param="anchors")
    anchors = np.asarray(anchors, np.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 4 or not len(anchors) \
            or not np.all(np.isfinite(anchors)):
        raise UsageError(f"anchors {path}: holds an array of shape {anchors.shape}; anchors "
                         "are (N, 4) finite numbers: y_center x_center height width",
                         param="anchors")
    anchors.setflags(write=False)
    return anchors


def raw_ssd_parts(outputs: Sequence[np.ndarray],
                  output_order: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Box encodings (N, 4) and scores (N, K) of a raw SSD head."""
    arrays = pick_outputs(outputs, "ssd-raw", 2)
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
    p: RawSsdParams = make_params(RawSsdParams, params, "ssd-raw")
    encodings, columns = raw_ssd_parts(outputs, p.output_order)
    if p.anchors:
        anchors, where = read_anchors(p.anchors), f"the anchors file {p.anchors}"
    else:
        anchors, where = ssd_anchors(p, input_size), "the SSD anchor parameters"
    if len(anchors) != len(encodings):
        raise UsageError(
            f"{where} give {len(anchors)} anchors, but the model outputs {len(encodings)} "
            "boxes: " + ("give the anchors file made for this model" if p.anchors else
                         "set `num_layers`, `aspect_ratios` or `feature_map_sizes` as the model "
                         "was trained, or give `anchors` FILE"))
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
