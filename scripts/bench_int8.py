"""int8 against fp32 on the MobileNet-sized model (MobileNetV2 224x224), for each CPU backend:
the speed-up of the median latency and the size ratio, measured in one `edgekit bench` run.

    .venv/bin/python scripts/bench_int8.py [--runs 200] [--threads N]

Pairs: tflite runs tflite-int8 vs tflite-fp32; onnxruntime runs onnx-int8 vs onnx;
openvino runs tflite-int8 and onnx-int8 vs its fp32 IR.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

PAIRS = [("tflite", "tflite-int8", "tflite-fp32"), ("onnxruntime", "onnx-int8", "onnx"),
         ("openvino", "tflite-int8", "openvino-fp32"), ("openvino", "onnx-int8", "openvino-fp32")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    from mobilenet_bundle import ensure_mobilenet_bundle

    from edgekit.bench import BenchSettings, bench

    bundle = ensure_mobilenet_bundle()
    rows = bench(bundle, ["tflite", "onnxruntime", "openvino"],
                 BenchSettings(runs=args.runs, warmup=10, threads=args.threads, fidelity=False),
                 progress=lambda m: print(f"  {m}", file=sys.stderr))
    by = {(r.backend, r.format): r for r in rows if r.status == "ok"}
    print(f"MobileNetV2 224x224, {args.runs} runs per row, threads "
          f"{args.threads or 'default'}, sync, 1 request")
    for backend, int8, fp32 in PAIRS:
        a, b = by.get((backend, int8)), by.get((backend, fp32))
        if not (a and b):
            print(f"{backend:12} {int8} vs {fp32}: not measured (row missing)")
            continue
        print(f"{backend:12} {int8:12} p50 {a.latency.p50:7.2f} ms vs {fp32:14} p50 "
              f"{b.latency.p50:7.2f} ms   speed-up x{b.latency.p50 / a.latency.p50:.2f}   "
              f"size {a.size / 2**20:.1f} MB / {b.size / 2**20:.1f} MB = {a.size / b.size:.2f}")


if __name__ == "__main__":
    main()
