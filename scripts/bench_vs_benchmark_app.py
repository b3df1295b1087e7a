"""The same OpenVINO IR timed by `edgekit bench` and by OpenVINO's own benchmark_app (it ships
in the openvino wheel): latency mode, synchronous, one stream, the same threads, both in f32
(benchmark_app's default on a CPU with bfloat16 is bf16; edgekit runs an FP32 IR in f32).

    .venv/bin/python scripts/bench_vs_benchmark_app.py [--threads 2] [--rounds 3]

Each tool runs `--rounds` times, alternating, and the median of its medians is compared.
Goal: medians within 10% of each other (on the MobileNet-sized model; on LeNet the ~50 us
inference is mostly call overhead, which this also shows).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "scripts"))


def edgekit_p50(xml: Path, threads: int, runs: int) -> float:
    out = subprocess.run([str(BIN / "edgekit"), "bench", str(xml), "--backends", "openvino",
                          "--infer", f"threads={str(threads)}", "--runs", str(runs), "--warmup",
                              "20",
                          "--json", "-q"], capture_output=True, text=True, check=True)
    (row,) = json.loads(out.stdout)
    return row["latency"]["p50"]


def benchmark_app_p50(xml: Path, threads: int, runs: int) -> float:
    out = subprocess.run([str(BIN / "benchmark_app"), "-m", str(xml), "-d", "CPU", "-api",
                          "sync", "-hint", "none", "-nstreams", "1", "-nthreads", str(threads),
                          "-niter", str(runs), "-infer_precision", "f32"],
                         capture_output=True, text=True, check=True)
    match = re.search(r"Median:\s+([\d.]+) (ms|us)", out.stdout)
    if match is None:
        raise SystemExit(f"no median in benchmark_app's output:\n{out.stdout[-2000:]}")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "us" else value


def compare(xml: Path, threads: int, runs: int, rounds: int) -> None:
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(edgekit_p50(xml, threads, runs))
        theirs.append(benchmark_app_p50(xml, threads, runs))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{xml.name:26} threads {threads}  edgekit bench p50 {a:8.3f} ms   benchmark_app median "
          f"{b:8.3f} ms   ratio {a / b:.3f}   ({rounds} rounds x {runs} runs; per round: "
          f"{', '.join(f'{v:.3f}' for v in ours)} vs {', '.join(f'{v:.3f}' for v in theirs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from mobilenet_bundle import ensure_mobilenet_bundle

    compare(ensure_mobilenet_bundle() / "mobilenetv2_fp32.xml", args.threads, 300, args.rounds)
    lenet = ROOT / "out" / "demo" / "lenet5_digits" / "lenet5_digits_fp32.xml"
    if lenet.is_file():
        compare(lenet, args.threads, 3000, args.rounds)


if __name__ == "__main__":
    main()
