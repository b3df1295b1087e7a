"""int8 fidelity before and after edgekit's remedies, for every int8 artifact of the bundled
models and of a small CNN that plain int8 gets wrong (scripts/outlier_cnn.py).

    .venv/bin/python scripts/bench_int8_fidelity.py [--rounds 3] [--runs 300] [--out DIR]

For each model, ``edgekit convert`` runs twice (the int8 formats only): with ``--no-remedy``
(the toolchains' default quantisation) and with the remedies on. Printed per int8 artifact:
top-1 agreement with Keras (mAP-agreement for the detector) and accuracy before -> after,
the remedy kept and the layers it keeps float, size, p50 latency (edgekit bench, both bundles
in alternating rounds, the median of each round's p50), and the conversion time (the remedies'
share of it). Then the goals: every int8 artifact >= 99% top-1 agreement (LeNet) and >= 98%
mAP-agreement (detector), the detector's int8 mAP within 2 points of Keras.

Data: LeNet's own calib.npz (200) and val.npz (the 360 test digits); the detector's calib.npz
(48 training scenes) and 500 held-out scenes (the ones its REPORT.md scores, seed 1991); the
outlier CNN's 200 calibration and 540 held-out digits. A last case calibrates the detector on
four of its scenes darkened to 30%: what remedies cannot fix, and the warnings it gets.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "models" / "digit_detector"))
FORMATS = "tflite-int8,edgetpu,onnx-int8"
INT8 = ("tflite-int8", "onnx-int8", "edgetpu")
BACKEND = {"tflite-int8": "tflite", "onnx-int8": "onnxruntime"}


@dataclass
class Case:
    name: str
    model: Path
    val: Path | None = None  # None: the model card's
    calib: Path | None = None  # None: the model card's
    bar: float = 0.99
    results: dict = field(default_factory=dict)  # "before"/"after" -> (manifest, seconds)
    latency: dict = field(default_factory=dict)  # (mode, format) -> [p50 per round]


def detector_held_out(out: Path, count: int = 500) -> Path:
    """The detector's 500 held-out scenes (REPORT.md's set) as a validation .npz."""
    path = out / f"detector_val{count}.npz"
    if path.exists():
        return path
    import scenes as scene_lib
    import train as recipe

    held = recipe.make_scenes(recipe.SEED + 2, count, "test")
    boxes, classes, counts = scene_lib.pad_truth(held)
    np.savez(path, x=recipe.preprocess(np.stack([s.image for s in held])), boxes=boxes,
             classes=classes, counts=counts)
    return path


def darkened_calibration(out: Path) -> Path:
    """Four of the detector's calibration scenes at 30% brightness: unrepresentative data,
    which no remedy can undo (the int8 input range itself is too narrow)."""
    path = out / "detector_calib_dark.npz"
    calib = np.load(ROOT / "models/digit_detector/calib.npz")["x"]
    np.savez(path, x=calib[:4] * 0.3)
    return path


def convert_both(case: Case, out: Path, say) -> None:
    from edgekit.convert import ConvertOptions, convert

    for mode, remedy in (("before", False), ("after", True)):
        start = time.perf_counter()
        manifest = convert(case.model, out / f"{case.name}-{mode}", ConvertOptions(
            formats=FORMATS, val=case.val, calib=case.calib, force=True, remedy=remedy),
            progress=lambda m, mode=mode: say(f"{case.name} {mode}: {m}"))
        case.results[mode] = (manifest, time.perf_counter() - start)


def bench_rounds(case: Case, out: Path, rounds: int, runs: int, say) -> None:
    from edgekit.bench import BenchSettings, bench

    settings = BenchSettings(runs=runs, warmup=20, fidelity=False)
    for r in range(rounds):
        for mode in ("before", "after") if r % 2 == 0 else ("after", "before"):
            say(f"{case.name} {mode}: bench round {r + 1}/{rounds}")
            for row in bench(out / f"{case.name}-{mode}", ["tflite", "onnxruntime"], settings):
                if row.status == "ok" and BACKEND.get(row.format) == row.backend:
                    case.latency.setdefault((mode, row.format), []).append(row.latency.p50)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n else "-"


def report(case: Case) -> list[str]:
    from edgekit.helpers.render import markdown_table

    before, seconds_before = case.results["before"]
    after, seconds_after = case.results["after"]
    keras = after.validation.get("keras_accuracy")
    metric = after.validation.get("metric")
    lines = [f"### {case.name}: {after.validation.get('samples')} validation samples, "
             f"agreement and accuracy in {'mAP@0.5' if metric == 'mAP@0.5' else 'top-1'}; "
             f"Keras accuracy {_pct(keras)}", ""]
    rows = []
    for fmt in INT8:
        a, b = before.artifact(fmt), after.artifact(fmt)
        if a is None or b is None:
            continue
        if not (a.ok and b.ok):
            rows.append([fmt, b.status, "-", "-", "-", "-", "-", "-", "-",
                         (b.reason or a.reason)[:90]])
            continue
        remedy = b.details.get("int8_remedy", {})
        floats = remedy.get("float_layers") or []
        p50 = [statistics.median(case.latency.get((m, fmt), [float("nan")]))
               for m in ("before", "after")]
        same = a.files == b.files  # the remedies kept the default: one file, benched twice
        latency = (f"{p50[0]:.3f} -> {p50[1]:.3f} ms (same file)" if same else
                   f"{p50[0]:.3f} -> {p50[1]:.3f} ms (x{p50[1] / p50[0]:.2f})")
        rows.append([
            fmt, "ok", f"{_pct(a.fidelity.top1_agreement)} -> {_pct(b.fidelity.top1_agreement)}",
            f"{_pct(a.fidelity.accuracy)} -> {_pct(b.fidelity.accuracy)}",
            remedy.get("remedy", "-") if len(remedy.get("attempts", [])) > 1 else "none needed",
            str(len(floats)), f"{_kb(a.size)} -> {_kb(b.size)}",
            latency,
            f"{a.seconds:.2f} -> {b.seconds:.2f} s "
            f"(remedies {remedy.get('remedy_seconds', 0):.2f} s)",
            ", ".join(n.split(";")[0] for n in floats)])
    lines.append(markdown_table(["format", "status", "agreement before -> after",
                                 "accuracy before -> after", "remedy kept", "float layers",
                                 "size", "p50 latency", "conversion", "layers kept float"],
                                rows))
    lines.append(f"\nwhole convert (int8 formats, fidelity included): {seconds_before:.1f} s "
                 f"without remedies, {seconds_after:.1f} s with")
    lines += [f"\nwarning: {w}" for w in after.source.get("warnings", [])
              if "calibration" in w or "reaches only" in w]
    return lines


def goals(cases: dict[str, Case]) -> list[str]:
    lines = ["", "### goals"]
    for name, bar in (("lenet5_digits", 0.99), ("digit_detector", 0.98)):
        manifest = cases[name].results["after"][0]
        for fmt in ("tflite-int8", "onnx-int8"):
            a = manifest.artifact(fmt)
            value = a.fidelity.top1_agreement if a and a.fidelity else None
            verdict = "met" if value is not None and value >= bar else "NOT met"
            lines.append(f"- {name} {fmt}: agreement {_pct(value)} >= {_pct(bar)}: {verdict}")
    detector = cases["digit_detector"].results["after"][0]
    keras = detector.validation["keras_accuracy"]
    for fmt in ("tflite-int8", "onnx-int8"):
        acc = detector.artifact(fmt).fidelity.accuracy
        verdict = "met" if abs(acc - keras) <= 0.02 else "NOT met"
        lines.append(f"- digit_detector {fmt}: mAP {acc:.4f} vs Keras {keras:.4f} "
                     f"({100 * (acc - keras):+.2f} points, within 2): {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "int8_fidelity")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args.out.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    from outlier_cnn import build

    cases = {
        "lenet5_digits": Case("lenet5_digits", ROOT / "models/lenet5_digits/lenet5_digits.keras"),
        "digit_detector": Case("digit_detector",
                               ROOT / "models/digit_detector/digit_detector.keras",
                               detector_held_out(args.out), bar=0.98),
        "outlier_cnn": Case("outlier_cnn", build(args.out / "outlier_cnn_model")["model"]),
        "detector_dark_calibration": Case(
            "detector_dark_calibration", ROOT / "models/digit_detector/digit_detector.keras",
            detector_held_out(args.out), darkened_calibration(args.out), bar=0.98),
    }
    for case in cases.values():
        convert_both(case, args.out, say)
    for case in cases.values():
        bench_rounds(case, args.out, args.rounds, args.runs, say)
    print(f"int8 fidelity before -> after the remedies; latency: edgekit bench, {args.runs} runs, "
          f"p50, median of {args.rounds} alternating rounds, this machine (\"same file\": the "
          "two numbers are one artifact benched twice, i.e. the noise)\n")
    for case in cases.values():
        print("\n".join(report(case)) + "\n")
    print("\n".join(goals(cases)))


if __name__ == "__main__":
    main()
