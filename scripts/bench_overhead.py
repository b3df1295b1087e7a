"""edgekit's own overhead: median latency of ``backend.infer`` over the raw runtime call on the
same artifact, interleaved in one run, for tflite, onnxruntime and openvino, on the LeNet
bundle and on MobileNetV2 (224x224, weights=None, converted by edgekit).

    .venv/bin/python scripts/bench_overhead.py [--lenet-runs 3000] [--mobilenet-runs 300]

The raw call is each runtime's fastest plain use: LiteRT set_tensor/invoke/get_tensor;
ONNX Runtime session.run; OpenVINO one reused infer request with its input tensor bound
once (measured on LeNet on a 2-core VM: 65 us against 158 us for infer(dict)). Both sides
load the same file with the same settings; calls alternate A/B, B/A so drift hits both
equally.
Goal: ratio <= 1.05 on the MobileNet-sized model.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

PAIRS = [("tflite", "tflite-fp32"), ("onnxruntime", "onnx"), ("openvino", "openvino-fp32")]


def raw_call(backend: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The runtime used directly, the fastest plain way, with default settings."""
    if backend == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def call(x: np.ndarray) -> np.ndarray:
            it.set_tensor(inp, x)
            it.invoke()
            return it.get_tensor(out)
        return call
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    import openvino as ov

    # f32 as edgekit runs an FP32 IR (the plugin's default is bf16 on a CPU that has it)
    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    buffer = np.zeros(tuple(compiled.inputs[0].get_shape()), np.float32)
    request.set_input_tensor(0, ov.Tensor(buffer, shared_memory=True))

    def call(x: np.ndarray) -> np.ndarray:
        np.copyto(buffer, x)
        request.infer()
        return request.get_output_tensor(0).data.copy()
    return call


def interleaved(a: Callable, b: Callable, x: np.ndarray, runs: int) -> tuple[list[int], list[int]]:
    for _ in range(max(10, runs // 20)):  # warm both
        a(x), b(x)
    times_a, times_b = [], []
    for i in range(runs):
        order = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for f, store in order:
            start = time.perf_counter_ns()
            f(x)
            store.append(time.perf_counter_ns() - start)
    return times_a, times_b


def measure(bundle: Path, runs: int) -> None:
    from edgekit.backends import open_backend
    from edgekit.bundle.fidelity import load_validation
    from edgekit.bundle.manifest import read_manifest

    manifest = read_manifest(bundle)
    x = load_validation(bundle).x[:1].astype(np.float32)
    for backend, fmt in PAIRS:
        path = bundle / manifest.artifact(fmt).file
        with open_backend(backend, path) as edge:
            raw = raw_call(backend, path)
            assert np.allclose(edge.infer(x)[0], raw(x), atol=1e-5)
            ours, theirs = interleaved(edge.infer, raw, x, runs)
        p50_ours, p50_raw = statistics.median(ours) / 1e3, statistics.median(theirs) / 1e3
        print(f"{manifest.name:14} {backend:12} {path.name:28} edgekit p50 {p50_ours:9.1f} us"
              f"   raw p50 {p50_raw:9.1f} us   ratio {p50_ours / p50_raw:.3f}   "
              f"+{p50_ours - p50_raw:.1f} us   ({runs} each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet-runs", type=int, default=3000)
    parser.add_argument("--mobilenet-runs", type=int, default=300)
    parser.add_argument("--lenet", type=Path, default=ROOT / "out" / "demo" / "lenet5_digits")
    parser.add_argument("--mobilenet", type=Path, help="a MobileNetV2 bundle (default: "
                        "scripts/mobilenet_bundle.py's); --mobilenet-runs 0 skips it")
    args = parser.parse_args()
    if not (args.lenet / "edgekit.json").is_file():
        sys.exit(f"no LeNet bundle at {args.lenet}: run `make demo` first")
    print("median latency of backend.infer vs the raw runtime call, same artifact, interleaved")
    measure(args.lenet, args.lenet_runs)
    if args.mobilenet_runs:
        from mobilenet_bundle import ensure_mobilenet_bundle

        measure(args.mobilenet or ensure_mobilenet_bundle(), args.mobilenet_runs)


if __name__ == "__main__":
    main()
