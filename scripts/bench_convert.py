"""Figures for the conversion layer: time to convert the bundled LeNet to every format,
each artifact's size, agreement and accuracy, and the time of `python -c "import edgekit"`.

    .venv/bin/python scripts/bench_convert.py [--runs 3] [--import-runs 20]

Conversion is timed end to end in a fresh process (`edgekit convert`, TensorFlow import
and fidelity checks included), as a user runs it. Times are medians over the runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "lenet5_digits" / "lenet5_digits.keras"


def time_convert(runs: int) -> tuple[list[float], dict]:
    env = dict(os.environ)  # convert finds the checkout's .venv-legacy by itself
    walls, manifest = [], {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "edgekit", "convert", str(MODEL), "-o",
                                  f"{tmp}/b", "--json", "-q"], capture_output=True, text=True,
                                 env=env, check=True)
            walls.append(time.perf_counter() - start)
            manifest = json.loads(out.stdout)
    return walls, manifest


def time_python(code: str, runs: int) -> list[float]:
    """Wall times of `python -c CODE` in fresh processes."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--import-runs", type=int, default=20)
    args = parser.parse_args()

    walls, manifest = time_convert(args.runs)
    print("edgekit convert lenet5_digits.keras, all formats: median "
          f"{statistics.median(walls):.1f} s over {args.runs} runs "
          f"(min {min(walls):.1f}, max {max(walls):.1f}); goal < 60 s")
    print(f"keras accuracy on {manifest['validation']['samples']} validation images: "
          f"{100 * manifest['validation']['keras_accuracy']:.2f}%")
    print(f"{'format':16} {'status':8} {'size':>10} {'convert':>8} {'agreement':>10} "
          f"{'accuracy':>9}  runtimes")
    for a in manifest["artifacts"]:
        f = a.get("fidelity") or {}
        agree = f"{100 * f['top1_agreement']:.2f}%" if f.get("top1_agreement") is not None else "-"
        acc = f"{100 * f['accuracy']:.2f}%" if f.get("accuracy") is not None else "-"
        runtimes = ", ".join(f"{k}: {v}" for k, v in a.get("runtimes", {}).items())
        print(f"{a['format']:16} {a['status']:8} {a['size']:>10,} {a['seconds']:>7.2f}s "
              f"{agree:>10} {acc:>9}  {runtimes}")
    imports = time_python("import edgekit", args.import_runs)
    bare = time_python("pass", args.import_runs)
    print(f'python -c "import edgekit": median {statistics.median(imports) * 1000:.0f} ms over '
          f"{args.import_runs} runs (bare interpreter start: "
          f"{statistics.median(bare) * 1000:.0f} ms); goal < 300 ms")


if __name__ == "__main__":
    main()
