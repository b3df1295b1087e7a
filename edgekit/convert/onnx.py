"""ONNX through tf2onnx, from a batch-1 tf.function of the Keras model, checked with
onnx.checker's full check. Not ``tf2onnx.convert.from_keras``: on Keras 3 it fails with
``KeyError: 'keras_tensor_..'`` (tf2onnx 1.17 here; onnx/tensorflow-onnx#2448, #2329)."""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.job import Job
from edgekit.convert.keras_model import input_name
from edgekit.convert.remedy import (
    Candidate,
    GraphNode,
    channel_error,
    float_layer_candidates,
    search,
)
from edgekit.errors import ConversionError, Skipped, first_line
from edgekit.helpers.quiet import captured_stderr

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


def _reader(name: str, samples: Any) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({name: s[None].astype("float32")} for s in samples)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.items, None)

    return Reader()


def _quantize(prepared: Path, out: Path, job: Job, method: str = "MinMax",
              exclude: Sequence[str] = (), reduce_range: bool = False) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    with captured_stderr(), contextlib.redirect_stdout(io.StringIO()):  # ORT prints progress
        try:
            quantize_static(str(prepared), str(out), _reader(name, job.calibration),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=getattr(CalibrationMethod, method),
                            nodes_to_exclude=list(exclude) or None, reduce_range=reduce_range)
            onnx.checker.check_model(onnx.load(str(out)), full_check=True)
        except Exception as exc:
            raise ConversionError(f"ONNX int8 quantisation failed: {first_line(exc, 300)}") \
                from exc


def _sensitive_tensors(prepared: Path, quantised: Path, job: Job) -> list[str]:
    """Activations of the default int8 model, most damaged by int8 first (ONNX Runtime's
    QDQ debugging tools: each tensor before and after its QuantizeLinear/DequantizeLinear)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    outputs = {o.name for o in onnx.load(str(prepared), load_external_data=False).graph.output}
    augmented = quantised.with_name("augmented.onnx")
    with captured_stderr(), contextlib.redirect_stdout(io.StringIO()):
        modify_model_output_intermediate_tensors(str(quantised), str(augmented))
        activations = collect_activations(str(augmented), _reader(name, job.calibration))
    matching = create_activation_matching(activations)
    errors = {}
    for tensor, pair in matching.items():
        if tensor in outputs:
            continue
        before, after = np.stack(pair["pre_qdq"]), np.stack(pair["post_qdq"])
        axis = 2 if before.ndim == 5 else -1  # (runs, N, C, H, W): ONNX convolutions are NCHW
        errors[tensor] = channel_error(before, after, axis)
    return sorted(errors, key=lambda t: -errors[t])


def _int8_candidates(job: Job, source: Path, tmp: Path) -> Iterator[Candidate]:
    """Static QDQ int8 (MinMax, per-channel weights), then the remedies in order."""
    import onnx

    prepared = tmp / "prepared.onnx"
    with captured_stderr():
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:
            raise ConversionError(f"ONNX int8 quantisation failed: {first_line(exc, 300)}") \
                from exc

    def calibrated(method: str, reduce_range: bool = False) -> Callable[[Path], list[str]]:
        def build(path: Path) -> list[str]:
            _quantize(prepared, path, job, method, reduce_range=reduce_range)
            return []
        return build

    yield Candidate("none", calibrated("MinMax"))
    # On x86 without VNNI (AVX2 only, as the AMD EPYC here), ONNX Runtime's int8 convolution
    # kernels add pairs of 8-bit products in 16 bits, which can saturate and cost the bundled
    # detector's onnx-int8 most of its agreement with Keras; 7-bit weights (reduce_range)
    # leave room for the sum (the figures: docs/figures.md, "Choices in the code", from
    # scripts/bench_int8_fidelity.py). ONNX Runtime's quantize_static docstring gives the
    # same advice for non-VNNI machines.
    yield Candidate("7-bit weights (reduce_range)", calibrated("MinMax", reduce_range=True))
    yield Candidate("entropy calibration", calibrated("Entropy"))
    yield Candidate("percentile calibration", calibrated("Percentile"))
    default = tmp / "default.onnx"
    _quantize(prepared, default, job)
    graph = [GraphNode(n.name, n.op_type, tuple(n.input), tuple(n.output))
             for n in onnx.load(str(prepared), load_external_data=False).graph.node]

    def keep(path: Path, layers: list[str]) -> None:  # on 7-bit weights: see above
        _quantize(prepared, path, job, exclude=layers, reduce_range=True)

    yield from float_layer_candidates(_sensitive_tensors(prepared, default, job), graph, keep)


def convert_onnx_int8(job: Job, out: Path) -> dict[str, Any]:
    """Static int8 quantisation of the float ONNX artifact (QDQ, per-channel weights); when it
    misses the agreement bar, the remedies in order."""
    import tempfile

    import onnx

    from edgekit.helpers import telemetry

    telemetry.off()
    try:
        import onnxruntime
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise Skipped("int8 ONNX needs ONNX Runtime's quantiser: pip install onnxruntime") \
            from None
    if job.calibration is None:
        raise Skipped("int8 quantisation needs calibration data: give --calib")
    source = job.built.get("onnx")
    if source is None:
        raise Skipped("int8 ONNX is made from the onnx artifact, which was not built")
    details: dict[str, Any] = {"quant_format": "QDQ", "activations": "int8",
                               "weights": "int8, per channel",
                               "calibration_samples": len(job.calibration)}
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-int8-") as tmp:
        remedy = search(out, "onnx-int8", _int8_candidates(job, source, Path(tmp)), job.remedy,
                        job.progress)
    if remedy:
        details["int8_remedy"] = remedy
    return {"toolchain": {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
            "details": details}
