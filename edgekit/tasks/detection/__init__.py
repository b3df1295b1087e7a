"""Object detection, runtime-agnostic: boxes and NMS (``boxes``), the decoders' parameters
(``params``), one module per decoder (``grid``, ``ssd``, ``yolo``, ``ssd_raw``), the registry
(``registry``) and the loop's task (``task``). Import from here.

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
asks for on top of a bundle's decoder (``iou``, ``max_detections``,
``classes``, ``anchors``, each decoder parameter: ``--postprocess`` keys); ``configure``
merges and checks them.

Boxes are always ``(x1, y1, x2, y2)`` in pixels, x to the right, y down.
``DetectionTask`` is the detection side of the camera loop's task contract (tasks/base.py).
"""
from __future__ import annotations

from edgekit.tasks.detection.boxes import (
    Box,
    Detection,
    box_iou,
    class_nms,
    detections,
    nms,
    to_frame,
)
from edgekit.tasks.detection.grid import (
    GRID_ROLES,
    GridParams,
    decode_edgekit_grid,
    grid_parts,
    suppress_boxes,
)
from edgekit.tasks.detection.params import (
    class_filter,
    make_params,
    pick_outputs,
)
from edgekit.tasks.detection.registry import (
    DECODERS,
    FLAG_OF,
    OUTPUT_ROLES,
    PARAMS,
    Decoder,
    DetectionOptions,
    configure,
    decode,
    decoder_param_help,
    decoder_params,
    describe_decoder,
    describe_params,
    option_of,
    with_bundle_files,
)
from edgekit.tasks.detection.ssd import (
    SSD_ROLES,
    SsdParams,
    decode_ssd_postprocess,
    ssd_roles,
)
from edgekit.tasks.detection.ssd_raw import (
    SSD_RAW_ROLES,
    RawSsdParams,
    decode_ssd_raw,
    raw_ssd_parts,
    read_anchors,
    ssd_anchors,
)
from edgekit.tasks.detection.task import (
    METRIC_THRESHOLD,
    DetectionsResult,
    DetectionTask,
)
from edgekit.tasks.detection.yolo import (
    YoloParams,
    decode_yolo,
)

__all__ = [
    "Box",
    "box_iou",
    "class_filter",
    "class_nms",
    "configure",
    "decode",
    "decode_edgekit_grid",
    "decode_ssd_postprocess",
    "decode_ssd_raw",
    "decode_yolo",
    "Decoder",
    "decoder_param_help",
    "decoder_params",
    "DECODERS",
    "describe_decoder",
    "describe_params",
    "Detection",
    "DetectionOptions",
    "detections",
    "DetectionsResult",
    "DetectionTask",
    "FLAG_OF",
    "option_of",
    "grid_parts",
    "GRID_ROLES",
    "GridParams",
    "make_params",
    "METRIC_THRESHOLD",
    "nms",
    "OUTPUT_ROLES",
    "PARAMS",
    "pick_outputs",
    "raw_ssd_parts",
    "RawSsdParams",
    "read_anchors",
    "ssd_anchors",
    "SSD_RAW_ROLES",
    "SSD_ROLES",
    "ssd_roles",
    "SsdParams",
    "suppress_boxes",
    "to_frame",
    "with_bundle_files",
    "YoloParams",
]
