"""OpenVINO IR from the batch-1 SavedModel: FP32 (compression off, checked) and FP16."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgekit.convert.job import Job
from edgekit.errors import ConversionError, first_line


def _weight_types(model: Any) -> dict[str, int]:
    """How many Constant nodes of each element type the IR holds (f32, f16, i64...)."""
    counts = Counter(op.get_element_type().get_type_name()
                     for op in model.get_ops() if op.get_type_name() == "Constant")
    return dict(sorted(counts.items()))


def _convert(job: Job, out: Path, fp16: bool) -> dict[str, Any]:
    from edgekit.helpers import telemetry

    telemetry.off()
    import openvino as ov

    try:
        model = ov.convert_model(str(job.saved_model))
        ov.save_model(model, str(out), compress_to_fp16=fp16)
        written = ov.Core().read_model(str(out))
    except Exception as exc:
        raise ConversionError(f"OpenVINO conversion failed: {first_line(exc, 300)}") from exc
    types = _weight_types(written)
    if not fp16 and types.get("f16"):
        raise ConversionError(f"the FP32 IR still holds {types['f16']} FP16 constants")
    if fp16 and types.get("f32") and not types.get("f16"):
        raise ConversionError("the FP16 IR holds no FP16 weights")
    return {"toolchain": {"openvino": ov.__version__.split("-")[0]},
            "details": {"constants": types}}


def convert_fp32(job: Job, out: Path) -> dict[str, Any]:
    return _convert(job, out, fp16=False)


def convert_fp16(job: Job, out: Path) -> dict[str, Any]:
    return _convert(job, out, fp16=True)
