"""TFLite's SSD post-process outputs (``ssd``): boxes, classes, scores and count, already
decoded and suppressed by the model."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edgekit.errors import InvalidModel
from edgekit.helpers.schema import setting
from edgekit.tasks.detection.boxes import Detection, detections
from edgekit.tasks.detection.params import (
    class_filter,
    classes_setting,
    make_params,
    max_detections_setting,
    output_order_setting,
    pick_outputs,
    score_setting,
)

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

    output_roles: ClassVar[tuple[str, ...]] = SSD_ROLES  # what output_order may name

    score_threshold: float = score_setting(0.3)
    max_detections: int = max_detections_setting()
    classes: tuple[str, ...] = classes_setting()
    output_order: tuple[str, ...] | None = output_order_setting(SSD_ROLES)
    class_offset: int = setting(0, help="added to each class id (1 for labels that start with "
                                         "a background entry)")


def ssd_roles(outputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Tell SSD post-process outputs apart by shape and values (see :class:`SsdParams`)."""
    arrays = pick_outputs(outputs, "ssd", 4)
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
    p: SsdParams = make_params(SsdParams, params, "ssd")
    if p.output_order is not None:
        if sorted(p.output_order) != sorted(SSD_ROLES):
            raise InvalidModel(
                f"ssd output_order must name each of {', '.join(SSD_ROLES)} once, "
                f"got {list(p.output_order)}"
            )
        roles = dict(zip(p.output_order, pick_outputs(outputs, "ssd", 4)))
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


