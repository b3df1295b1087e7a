"""ONNX through tf2onnx, from a batch-1 tf.function of the Keras model (FACTS.md: from_keras
fails on Keras 3), checked with onnx.checker's full check."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.convert.job import Job
from edgekit.convert.keras_model import input_name
from edgekit.errors import ConversionError
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
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            raise ConversionError(f"tf2onnx failed: {first}") from exc
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise ConversionError(f"the ONNX model fails onnx.checker: {first}") from exc
    onnx.save(proto, str(out))
    return {"toolchain": {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                          "tensorflow": tf.__version__},
            "details": {"opset": OPSET, "checker": "onnx.checker.check_model(full_check=True)"}}
