"""TFLite float32, dynamic-range and full-integer artifacts, from the batch-1 SavedModel."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgekit.bundle.tflite_file import read_graph
from edgekit.convert.job import Job
from edgekit.convert.remedy import (
    Candidate,
    GraphNode,
    channel_error,
    float_layer_candidates,
    search,
)
from edgekit.errors import ConversionError, Skipped, first_line


def _converter(job: Job) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(job.saved_model))


def _convert_bytes(converter: Any, what: str) -> bytes:
    from edgekit.helpers.quiet import captured_stderr

    with captured_stderr():  # the MLIR quantiser prints its settings to stderr
        try:
            return converter.convert()
        except Exception as exc:
            raise ConversionError(f"the TFLite converter failed on the {what} model: "
                                  f"{first_line(exc, 300)}") from exc


def _write(converter: Any, out: Path, what: str) -> dict[str, Any]:
    import tensorflow as tf

    out.write_bytes(_convert_bytes(converter, what))
    return {"toolchain": {"tensorflow": tf.__version__}}


def convert_fp32(job: Job, out: Path) -> dict[str, Any]:
    return _write(_converter(job), out, "float32")


def convert_dynamic(job: Job, out: Path) -> dict[str, Any]:
    import tensorflow as tf

    converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Per-channel dense weights give FULLY_CONNECTED version 12, which tflite-runtime 2.14 (what
    # Raspberry Pi users have) rejects ("Didn't find op for builtin opcode 'FULLY_CONNECTED'
    # version '12'": tests/test_runtimes.py); per-tensor keeps version 9 at the same accuracy.
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return _write(converter, out, "dynamic-range")


def _int8_converter(job: Job, per_channel: bool = True) -> Any:
    import tensorflow as tf

    samples = job.calibration

    def representative() -> Iterator[list[Any]]:
        for sample in samples:
            yield [sample[None].astype("float32")]

    converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = _io_type(job)
    converter.inference_output_type = _io_type(job)
    converter._experimental_disable_per_channel = not per_channel
    return converter


def _io_type(job: Job) -> Any:
    import tensorflow as tf

    return {"int8": tf.int8, "uint8": tf.uint8}[job.int8_io]


def _sensitive_tensors(calibrated: bytes, job: Job) -> list[str]:
    """Tensors of the calibrated model, most damaged by int8 first (TFLite's quantisation
    debugger, with edgekit's per-channel error as its layer metric); graph outputs left out
    (they are int8 whatever the layers before them are)."""
    import csv
    import io

    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    from edgekit.helpers.quiet import captured_stderr

    def metric(reference: Any, quantised: Any, scale: float, zero_point: int) -> float:
        return channel_error(reference, (quantised.astype("float64") - zero_point) * scale)

    samples = job.calibration

    def dataset() -> Iterator[list[Any]]:
        for sample in samples:
            yield [sample[None].astype("float32")]

    with captured_stderr():
        debug_model = tflite_convert.mlir_quantize(calibrated, enable_numeric_verify=True)
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model, debug_dataset=dataset,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                layer_direct_compare_metrics={"channel_error": metric}))
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
    outputs = {name for node in read_graph(calibrated) for name in node.outputs} - {
        name for node in read_graph(calibrated) for name in node.inputs}
    rows = [r for r in rows if r["tensor_name"] not in outputs]
    rows.sort(key=lambda r: -float(r["channel_error"] or 0))
    return [r["tensor_name"] for r in rows]


def _int8_candidates(job: Job) -> Iterator[Candidate]:
    """The default full-integer model, then the remedies for one that misses the bar."""
    def convert(per_channel: bool) -> Callable[[Path], list[str]]:
        def build(path: Path) -> list[str]:
            path.write_bytes(_convert_bytes(_int8_converter(job, per_channel), "full-integer"))
            return []
        return build

    yield Candidate("none", convert(per_channel=True))
    yield Candidate("per-tensor weights", convert(per_channel=False))
    from tensorflow.lite.python import convert as tflite_convert

    from edgekit.helpers.quiet import captured_stderr

    calibrator = _int8_converter(job)
    calibrator._experimental_calibrate_only = True
    calibrated = _convert_bytes(calibrator, "calibrated")
    graph = [GraphNode(n.outputs[0], n.op, n.inputs, n.outputs)
             for n in read_graph(calibrated) if n.outputs]

    def keep(path: Path, layers: list[str]) -> None:
        io_type = _io_type(job)
        with captured_stderr():
            try:
                data = tflite_convert.mlir_quantize(
                    calibrated, input_data_type=io_type, output_data_type=io_type,
                    denylisted_nodes=layers)
            except Exception as exc:
                raise ConversionError(f"keeping {len(layers)} layer(s) float failed: "
                                      f"{first_line(exc, 200)}") from exc
        path.write_bytes(data)

    yield from float_layer_candidates(_sensitive_tensors(calibrated, job), graph, keep)


def convert_int8(job: Job, out: Path) -> dict[str, Any]:
    """Full-integer TFLite; when it misses the agreement bar, the remedies in order."""
    import tensorflow as tf

    if job.calibration is None:
        raise Skipped("full-integer quantisation needs calibration data: give --calib "
                      "(a folder of images, or a .npy/.npz array of pre-processed samples)")
    remedy = search(out, "tflite-int8", _int8_candidates(job), job.remedy, job.progress)
    details: dict[str, Any] = {"calibration_samples": int(len(job.calibration))}
    if remedy:
        details["int8_remedy"] = remedy
    return {"toolchain": {"tensorflow": tf.__version__}, "details": details}
