"""What the pre- and post-processing choices cost per frame, medians of rounds interleaved in
one run (the machine is noisy: every variant gets the same drift).

    .venv/bin/python scripts/bench_preprocess.py [--rounds 300] [--twin DIR]

Pre-processing: ``edgekit.preprocess.prepare`` (resize, colour, normalise) of a 640x480 frame
(Coral's grace_hopper.bmp, else a frame of the demo clip) to 160x160 (Coral's MobileNet) and
300x300 (an SSD), for each ``--interpolation``, with OpenCV's filters and with ``--antialias``
(Pillow's), and for each ``--resize`` mode with bilinear. The ratio is to the default
(stretch, bilinear, no antialias).

Raw SSD (with ``--twin DIR``, made by ``python models/ssd_twin/make_twin.py DIR``): the same
model run as ``ssd_twin_raw.tflite`` and decoded on the host (``--decoder ssd-raw``: anchors,
box coding, NMS in numpy) against ``ssd_twin_postprocess.tflite`` (TFLite's post-process op
in the graph, ``--decoder ssd``), inference plus decoding, on the same frames.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekit.preprocess import INTERPOLATIONS, InputSpec, prepare  # noqa: E402

CORAL = ROOT.parent / "shared" / "testdata" / "coral"


def frame() -> np.ndarray:
    photo = CORAL / "grace_hopper.bmp"
    if photo.is_file():
        return cv2.resize(cv2.imread(str(photo)), (640, 480), interpolation=cv2.INTER_AREA)
    from edgekit.demo import make_clip

    clip = Path("/tmp") / "bench_preprocess_clip.avi"
    make_clip(clip, seconds=1, fps=5, seed=0)
    capture = cv2.VideoCapture(str(clip))
    ok, image = capture.read()
    capture.release()
    assert ok
    return cv2.resize(image, (640, 480))


def interleaved(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each call, the calls taken in turn (order reversed each round)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for name in names:  # warm-up
        calls[name]()
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            start = time.perf_counter_ns()
            calls[name]()
            times[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def preprocessing(rounds: int) -> None:
    image = frame()
    for size in (160, 300):
        base = InputSpec((1, size, size, 3), mean=(127.5,), std=(127.5,))
        specs = {"stretch bilinear (default)": base}
        for name in INTERPOLATIONS:
            if name != "bilinear":
                specs[f"stretch {name}"] = replace(base, interpolation=name)
        for name in INTERPOLATIONS:
            specs[f"stretch {name} --antialias"] = replace(base, interpolation=name,
                                                           antialias=True)
        for mode in ("letterbox", "center-crop:0.875", "shorter-side"):
            specs[f"{mode} bilinear"] = replace(base, resize=mode)
        medians = interleaved({k: (lambda s=s: prepare(image, s)) for k, s in specs.items()},
                              rounds)
        default = medians["stretch bilinear (default)"]
        print(f"\nprepare(): 640x480 frame to {size}x{size}, median of {rounds} interleaved rounds")
        print(f"{'spec':<34} {'ms':>7} {'x default':>10}")
        for name, ms in medians.items():
            print(f"{name:<34} {ms:7.3f} {ms / default:10.2f}")


def raw_ssd(twin: Path, rounds: int) -> None:
    from edgekit.loop.run import loop_model
    from edgekit.preprocess import SpecOptions
    from edgekit.tasks.detection import DetectionOptions, decode

    spec = SpecOptions(mean=(127.5,), std=(127.5,))
    host = loop_model(twin / "ssd_twin_raw.tflite", spec=spec, detect=DetectionOptions(
        decoder="ssd-raw", score_threshold=0.3, iou_threshold=0.6, max_detections=20))
    op = loop_model(twin / "ssd_twin_postprocess.tflite", spec=spec,
                         detect=DetectionOptions(decoder="ssd"))
    tensor = prepare(frame(), host.spec)[0]
    size = (host.spec.width, host.spec.height)
    try:
        raw_outputs = host.predict(tensor)
        found = decode(raw_outputs, host.decoder, size)
        calls = {
            "raw .tflite infer": lambda: host.predict(tensor),
            "ssd-raw decode on the host": lambda: decode(raw_outputs, host.decoder, size),
            "raw infer + ssd-raw decode": lambda: decode(host.predict(tensor), host.decoder,
                                                         size),
            "post-processed .tflite infer + ssd decode": lambda: decode(
                op.predict(tensor), op.decoder, size),
        }
        medians = interleaved(calls, rounds)
    finally:
        host.close()
        op.close()
    both = medians["post-processed .tflite infer + ssd decode"]
    print(f"\nraw SSD (1917 anchors, 91 classes; {len(found)} detections on the frame), "
          f"median of {rounds} interleaved rounds")
    print(f"{'':<42} {'ms':>7} {'x op':>6}")
    for name, ms in medians.items():
        print(f"{name:<42} {ms:7.3f} {ms / both:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--twin", type=Path, help="a folder made by models/ssd_twin/make_twin.py")
    args = parser.parse_args()
    preprocessing(args.rounds)
    if args.twin:
        raw_ssd(args.twin, max(50, args.rounds // 3))


if __name__ == "__main__":
    main()
