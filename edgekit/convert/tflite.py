"""TFLite float32, dynamic-range and full-integer artifacts, from the batch-1 SavedModel."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekit.convert.job import Job, Skipped
from edgekit.errors import ConversionError, first_line


def _converter(job: Job) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(job.saved_model))


def _write(converter: Any, out: Path, what: str) -> dict[str, Any]:
    import tensorflow as tf

    from edgekit.quiet import captured_stderr

    with captured_stderr():  # the MLIR quantiser prints its settings to stderr
        try:
            data = converter.convert()
        except Exception as exc:
            raise ConversionError(f"the TFLite converter failed on the {what} model: "
                                  f"{first_line(exc, 300)}") from exc
    out.write_bytes(data)
    return {"toolchain": {"tensorflow": tf.__version__}}


def convert_fp32(job: Job, out: Path) -> dict[str, Any]:
    return _write(_converter(job), out, "float32")


def convert_dynamic(job: Job, out: Path) -> dict[str, Any]:
    import tensorflow as tf

    converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Per-channel dense weights give FULLY_CONNECTED version 12, which tflite-runtime 2.14 (what
    # Raspberry Pi users have) rejects; per-tensor keeps version 9 at the same accuracy (FACTS.md).
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return _write(converter, out, "dynamic-range")


def convert_int8(job: Job, out: Path) -> dict[str, Any]:
    import tensorflow as tf

    if job.calibration is None:
        raise Skipped("full-integer quantisation needs calibration data: give --calib "
                      "(a folder of images, or a .npy/.npz array of pre-processed samples)")
    samples = job.calibration

    def representative() -> Iterator[list[Any]]:
        for sample in samples:
            yield [sample[None].astype("float32")]

    io_type = {"int8": tf.int8, "uint8": tf.uint8}[job.int8_io]
    converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    details = _write(converter, out, "full-integer")
    details["calibration_samples"] = int(len(samples))
    return details
