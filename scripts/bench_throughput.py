"""Latency and throughput mode against OpenVINO's benchmark_app, and throughput over latency
for every CPU backend, on the same MobileNetV2 model.

    .venv/bin/python scripts/bench_throughput.py [--rounds 5] [--seconds 5] [--bundle DIR]

OpenVINO: each round runs, one after another, `edgekit bench --mode latency`,
`benchmark_app -hint latency`, `edgekit bench --mode throughput` and `benchmark_app -hint
throughput` on the bundle's IR, each for --seconds, both with OpenVINO's own threads and
streams (benchmark_app takes -nthreads only with -hint none) and both computing in f32:
edgekit runs an FP32 IR in f32, and benchmark_app's default on a CPU with bfloat16 is bf16
(so one more benchmark_app run per round, in its default, shows that gap). Medians of:
edgekit's p50 latency against benchmark_app's median latency, and inferences per second
against benchmark_app's "Throughput" FPS. Goals: each within 10%.

TFLite and ONNX Runtime: alternating rounds of `edgekit bench` in latency and throughput mode
on the bundle's .tflite and .onnx; the median of throughput mode's inferences per second over
latency mode's.

The bundle defaults to scripts/mobilenet_bundle.py's (MobileNetV2 224x224, random weights).
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


def edgekit(model: Path, backend: str, mode: str, seconds: float) -> dict:
    out = subprocess.run([str(BIN / "edgekit"), "bench", str(model), "--backends", backend,
                          "--infer", f"mode={mode}", "--duration", str(seconds), "--warmup", "20",
                          "--no-fidelity", "--json", "-q"],
                         capture_output=True, text=True, check=True)
    (row,) = json.loads(out.stdout)
    if row["status"] != "ok":
        raise SystemExit(f"edgekit bench {model.name} on {backend}: {row['reason']}")
    return row


def benchmark_app(xml: Path, hint: str, seconds: float, precision: str | None = "f32") -> dict:
    """benchmark_app's figures; ``precision`` f32 as edgekit computes an FP32 IR (None: the
    plugin's default, bfloat16 on a CPU that has it)."""
    precise = ["-infer_precision", precision] if precision else []
    out = subprocess.run([str(BIN / "benchmark_app"), "-m", str(xml), "-d", "CPU", "-hint",
                          hint, "-t", str(round(seconds)), *precise], capture_output=True,
                         text=True, check=True).stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        if match is None:
            raise SystemExit(f"benchmark_app printed no {pattern!r}:\n{out[-2000:]}")
        return float(match.group(1))
    return {"median_ms": number(r"Median:\s+([\d.]+) ms"),
            "precision": re.search(r"INFERENCE_PRECISION_HINT: <Type: '(\w+)'>", out).group(1),
            "fps": number(r"Throughput:\s+([\d.]+) FPS"),
            "requests": int(re.search(r"(\d+) inference request", out).group(1))
            if "Start inference synchronously" not in out else 1,
            "streams": int(number(r"NUM_STREAMS: (\d+)"))}


def ratio_line(label: str, ours: list[float], theirs: list[float], unit: str) -> str:
    a, b = statistics.median(ours), statistics.median(theirs)
    per_round = statistics.median(x / y for x, y in zip(ours, theirs))
    return (f"{label:34} edgekit {a:8.2f} {unit}  benchmark_app {b:8.2f} {unit}  ratio "
            f"{a / b:.3f}, per-round ratios' median {per_round:.3f}  (per round: "
            f"{', '.join(f'{v:.2f}' for v in ours)} vs {', '.join(f'{v:.2f}' for v in theirs)})")


def openvino_rounds(xml: Path, rounds: int, seconds: float) -> None:
    ours_lat, theirs_lat, ours_fps, theirs_fps, ours_lat_fps = [], [], [], [], []
    theirs_lat_fps = []
    default_lat = []  # benchmark_app in the plugin's default precision
    setting = ""
    for _ in range(rounds):
        row = edgekit(xml, "openvino", "latency", seconds)
        ours_lat.append(row["latency"]["p50"])
        ours_lat_fps.append(row["throughput"])
        app = benchmark_app(xml, "latency", seconds)
        theirs_lat.append(app["median_ms"])
        theirs_lat_fps.append(app["fps"])
        default = benchmark_app(xml, "latency", seconds, None)
        default_lat.append(default["median_ms"])
        row = edgekit(xml, "openvino", "throughput", seconds)
        ours_fps.append(row["throughput"])
        app = benchmark_app(xml, "throughput", seconds)
        theirs_fps.append(app["fps"])
        setting = (f"edgekit: {row['requests']} requests, {row['streams']} streams, threads "
                   f"{row['threads']}; benchmark_app: {app['requests']} requests, "
                   f"{app['streams']} streams")
    print(f"{xml.name} on OpenVINO CPU, {rounds} alternating rounds of {seconds:g} s each")
    print(ratio_line("latency mode, p50 / median", ours_lat, theirs_lat, "ms"))
    print(ratio_line("throughput mode, inferences/s", ours_fps, theirs_fps, "/s"))
    print(f"  throughput mode ({setting}); both compute in f32 (benchmark_app "
          "-infer_precision f32)")
    print(ratio_line(f"latency, benchmark_app in {default['precision']}", ours_lat, default_lat,
                     "ms"))
    for who, tp, lat in (("edgekit", ours_fps, ours_lat_fps),
                         ("benchmark_app", theirs_fps, theirs_lat_fps)):
        gain = statistics.median(tp) / statistics.median(lat)
        per_round = statistics.median(a / b for a, b in zip(tp, lat))
        print(f"  {who} throughput mode / latency mode, inferences/s: {gain:.2f}x "
              f"({statistics.median(tp):.1f} vs {statistics.median(lat):.1f}; per-round "
              f"ratios' median {per_round:.2f}, min {min(a / b for a, b in zip(tp, lat)):.2f})")


def backend_rounds(model: Path, backend: str, rounds: int, seconds: float) -> None:
    latency, throughput = [], []
    setting = ""
    for _ in range(rounds):
        latency.append(edgekit(model, backend, "latency", seconds)["throughput"])
        row = edgekit(model, backend, "throughput", seconds)
        throughput.append(row["throughput"])
        setting = f"{row['requests']} requests, threads {row['threads']}"
    a, b = statistics.median(throughput), statistics.median(latency)
    print(f"{model.name} on {backend:12} throughput mode {a:7.1f}/s ({setting}), latency mode "
          f"{b:7.1f}/s: {a / b:.2f}x  (per round: {', '.join(f'{v:.1f}' for v in throughput)} "
          f"vs {', '.join(f'{v:.1f}' for v in latency)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--bundle", type=Path, help="a bundle with an OpenVINO IR, a .tflite "
                        "and a .onnx (default: scripts/mobilenet_bundle.py's)")
    args = parser.parse_args()
    if args.bundle is None:
        from mobilenet_bundle import ensure_mobilenet_bundle
        args.bundle = ensure_mobilenet_bundle()
    files = {p.suffix: p for p in sorted(args.bundle.iterdir())
             if p.suffix in (".xml", ".tflite", ".onnx") and "int8" not in p.name
             and "fp16" not in p.name and "dynamic" not in p.name}
    openvino_rounds(files[".xml"], args.rounds, args.seconds)
    for suffix, backend in ((".tflite", "tflite"), (".onnx", "onnxruntime")):
        if suffix in files:
            backend_rounds(files[suffix], backend, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
