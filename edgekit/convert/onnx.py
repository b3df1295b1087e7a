"""ONNX through tf2onnx, from a batch-1 tf.function of the Keras model (FACTS.md: from_keras
fails on Keras 3), checked with onnx.checker's full check."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.convert.job import Job, Skipped
from edgekit.convert.keras_model import input_name
from edgekit.errors import ConversionError, first_line
from edgekit.quiet import captured_stderr

OPSET = 13


def convert_onnx(job: Job, out: Path) -> dict[str, Any]:
    import onnx
    import tensorflow as tf
    import tf2onnx

    model = job.model
    spec = tf.TensorSpec((1, *job.spec.sample_shape), tf.float32, name=input_name(model))
    function = tf.function(lambda x: model(x, training=False))
    with captured_stderr():
        try:
            proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec],
                                                     opset=OPSET)
        except Exception as exc:
            raise ConversionError(f"tf2onnx failed: {first_line(exc, 300)}") from exc
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the ONNX model fails onnx.checker: {first_line(exc, 300)}") \
            from exc
    onnx.save(proto, str(out))
    return {"toolchain": {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                          "tensorflow": tf.__version__},
            "details": {"opset": OPSET, "checker": "onnx.checker.check_model(full_check=True)"}}


def convert_onnx_int8(job: Job, out: Path) -> dict[str, Any]:
    """Static int8 quantisation of the float ONNX artifact (QDQ, per-channel weights)."""
    import tempfile

    import onnx

    try:
        import onnxruntime
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise Skipped("int8 ONNX needs ONNX Runtime's quantiser: pip install onnxruntime") \
            from None
    if job.calibration is None:
        raise Skipped("int8 quantisation needs calibration data: give --calib")
    source = job.built.get("onnx")
    if source is None:
        raise Skipped("int8 ONNX is made from the onnx artifact, which was not built")
    name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    samples = job.calibration

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({name: s[None].astype("float32")} for s in samples)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-int8-") as tmp, captured_stderr():
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            per_channel=True)
            onnx.checker.check_model(onnx.load(str(out)), full_check=True)
        except Exception as exc:
            raise ConversionError(f"ONNX int8 quantisation failed: {first_line(exc, 300)}") \
                from exc
    return {"toolchain": {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
            "details": {"quant_format": "QDQ", "activations": "int8", "weights": "int8, "
                        "per channel", "calibration_samples": len(samples)}}
