"""The real detector in the loop: pipelined over sequential, and with frames in flight, for
every CPU backend; then --capture realtime=source on a 30 FPS clip.

    .venv/bin/python scripts/bench_pipelining.py [--rounds 5] [--bundle DIR] [--clip FILE]

Each round runs, on the same clip and one after another, the sequential loop, the pipelined
loop, the pipelined loop with --requests 2 and in --mode throughput (the runtime's own number
of requests), for each backend (the real stages: decode,
letterbox, inference, decoder; no sink). Printed: the median FPS of each and the median of
the per-round ratios to sequential. Goals: pipelined >= 1.2x sequential on every CPU
backend, never below 1.0x; --requests 2 higher again on OpenVINO.

Then realtime=source: a 30 FPS clip paced at its frame rate; goals FPS <= 30.5 and end-to-end p50
within 2x of the sum of the stages' p50 (no queueing).

The bundle defaults to out/bench/digit_detector (converted from models/digit_detector once),
the clip to out/bench/clip20.avi (edgekit.demo.make_clip, 20 s at 15 FPS: 300 frames).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
sys.path.insert(0, str(ROOT))

from edgekit.loop.run import loop_model, run_loop  # noqa: E402

BACKENDS = ["tflite", "onnxruntime", "openvino"]
# (name, pipelined, requests, mode); requests None: the runtime's recommendation
CONFIGS = [("sequential", False, 1, "latency"), ("pipelined", True, 1, "latency"),
           ("pipelined, 2 requests", True, 2, "latency"),
           ("pipelined, throughput mode", True, None, "throughput")]


def ensure_inputs(bundle: Path | None, clip: Path | None) -> tuple[Path, Path, Path]:
    from edgekit.demo import make_clip

    OUT.mkdir(parents=True, exist_ok=True)
    if bundle is None:
        bundle = OUT / "digit_detector"
        if not (bundle / "edgekit.json").is_file():
            from edgekit.convert import ConvertOptions, convert

            convert(ROOT / "models" / "digit_detector" / "digit_detector.keras", bundle,
                    ConvertOptions(formats="tflite-fp32,tflite-int8,onnx,openvino-fp32"))
    if clip is None:  # 300 frames: a run of 90 (the demo clip) lasts under half a second,
        clip = OUT / "clip20.avi"  # and one round's ratio then swung by 0.3 on this machine
        if not clip.is_file():
            make_clip(clip, seconds=20, fps=15, seed=0)
    clip30 = OUT / "clip30.avi"
    if not clip30.is_file():
        make_clip(clip30, seconds=6, fps=30, seed=1)
    return bundle, clip, clip30


def fps(bundle: Path, clip: Path, backend: str, pipelined: bool, requests: int | None,
        mode: str) -> float:
    with loop_model(bundle, backend=backend, requests=requests, pipelined=pipelined,
                         mode=mode) as model:
        return run_loop(model, clip, pipelined=pipelined).stats.fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--clip", type=Path)
    args = parser.parse_args()
    bundle, clip, clip30 = ensure_inputs(args.bundle, args.clip)
    results = {(b, c[0]): [] for b in BACKENDS for c in CONFIGS}
    for _ in range(args.rounds):
        for backend in BACKENDS:
            for name, pipelined, requests, mode in CONFIGS:
                results[(backend, name)].append(fps(bundle, clip, backend, pipelined, requests,
                                                    mode))
    print(f"{clip.name}, {bundle.name}: FPS, median of {args.rounds} alternating rounds; ratio: "
          "median of the per-round ratios to sequential (min-max)")
    for backend in BACKENDS:
        base = results[(backend, "sequential")]
        cells = []
        for name, *_ in CONFIGS:
            values = results[(backend, name)]
            ratios = [v / b for v, b in zip(values, base)]
            cells.append(f"{name} {statistics.median(values):6.1f}"
                         + ("" if name == "sequential" else
                            f" ({statistics.median(ratios):.2f}x, {min(ratios):.2f}-"
                            f"{max(ratios):.2f})"))
        print(f"  {backend:12} " + "; ".join(cells))
    print(f"--capture realtime=source on {clip30.name} (30 FPS):")
    for backend in BACKENDS:
        with loop_model(bundle, backend=backend) as model:
            stats = run_loop(model, clip30, realtime=True).stats
        stages = sum(stats.stage(n).p50 for n in ("preprocess", "infer", "postprocess", "sink"))
        e2e = stats.end_to_end().p50
        print(f"  {backend:12} FPS {stats.fps:5.2f}; end-to-end p50 {e2e:.2f} ms, stages' p50 "
              f"sum {stages:.2f} ms ({e2e / stages:.2f}x); queue wait p50 "
              f"{stats.queue_wait().p50:.2f} ms")


if __name__ == "__main__":
    main()
