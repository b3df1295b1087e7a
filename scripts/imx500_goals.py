"""The IMX500 goals: LeNet and the bundled detector through MCT and imxconv-tf.

    .venv/bin/python scripts/imx500_goals.py [--out DIR]

Converts each model with ``--formats imx500`` (its model card's calibration and validation
sets: LeNet's 200 calibration and 360 test digits, the detector's 48 calibration and 48
validation scenes) and prints, per model, the row: status, agreement with Keras (top-1, or
mAP-agreement for the detector) and accuracy of MCT's quantised model run here, the
quantisation kept, on-chip memory used and whether it fits, the packerOut.zip size and the
conversion time. Then the goals: LeNet ``ok`` with >= 99% top-1 agreement, the detector with
>= 98% mAP-agreement, both with the memory report. Exit 1 when a goal is missed; needs
.venv-imx500 (``make setup-imx500``) and Java 17.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"LeNet": (ROOT / "models/lenet5_digits/lenet5_digits.keras", 0.99, "top-1 agreement"),
          "detector": (ROOT / "models/digit_detector/digit_detector.keras", 0.98,
                       "mAP-agreement")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the bundles here (default: a temporary "
                        "folder, removed)")
    args = parser.parse_args()
    from edgekit.bundle.imx500_file import memory_line
    from edgekit.convert import ConvertOptions, convert

    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name, (model, bar, metric) in MODELS.items():
            manifest = convert(model, out / name, ConvertOptions(formats="imx500", force=True))
            a = next(x for x in manifest.artifacts if x.format == "imx500")
            f = a.fidelity
            agreement = None if f is None else f.top1_agreement
            memory = a.details.get("memory", {})
            print(f"{name}: imx500 {a.status}"
                  + (f" ({a.reason})" if a.reason else "")
                  + (f"; {metric} {100 * agreement:.1f}%" if agreement is not None
                     else "; agreement not measured")
                  + (f", accuracy {100 * f.accuracy:.1f}% (Keras "
                     f"{100 * manifest.validation['keras_accuracy']:.1f}%)"
                     if f is not None and f.accuracy is not None else "")
                  + f"; quantisation {a.details.get('quantisation', '-')}"
                  + (f"; {memory_line(memory)}" if memory else "; no memory report")
                  + f"; packerOut.zip {a.size} B; {a.seconds:.0f} s"
                  + f" ({f.samples if f else 0} validation samples)")
            if a.status != "ok" or agreement is None or agreement < bar or not memory:
                missed.append(f"{name}: imx500 {a.status}, {metric} "
                              f"{agreement} (goal >= {bar}), memory report "
                              f"{'kept' if memory else 'missing'}")
    print("goals: " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
