"""Every task through the loop: a classifier on a labelled clip and the bundled segmenter,
on every CPU backend (issue 21's goals).

    .venv/bin/python scripts/bench_tasks.py [--rounds 5] [--lenet DIR] [--segmenter DIR]

Classification: LeNet on a 300-frame labelled clip (models/lenet5_digits/make_clip.py) in
the pipelined loop, its top-1 accuracy against the clip's labels beside the accuracy of
``edgekit classify``'s function on the same frames (decoded once, the same backend and
artifact); goal: within 1 point. Then the sequential and the pipelined loop alternately,
``--rounds`` times: the median of the per-round FPS ratios; goal: at least 1.2x.

Segmentation: the bundled digit segmenter's artifacts, each one's pixel agreement and mean
IoU agreement with Keras on the validation scenes (from its convert); goal: every CPU
artifact at least 99% pixel agreement. Then the loop on the demo clip per backend: every
frame's mask equal to what the Python API gives for the same frame.

Bundles default to out/bench/{lenet5_digits,digit_segmenter} (converted once), clips to
out/bench/digits300.avi and out/bench/clip.avi.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
sys.path.insert(0, str(ROOT))

from edgekit.loop.run import loop_model, run_loop  # noqa: E402

BACKENDS = ["tflite", "onnxruntime", "openvino"]


def bundle(name: str, given: Path | None) -> Path:
    if given is not None:
        return given
    path = OUT / name
    if not (path / "edgekit.json").is_file():
        from edgekit.convert import ConvertOptions, convert

        print(f"converting {name} into {path} (once)")
        convert(ROOT / "models" / name / f"{name}.keras", path, ConvertOptions(force=True))
    return path


def frames_of(clip: Path) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def classification(lenet: Path, rounds: int) -> None:
    from edgekit.bundle.fidelity import agreeing
    from edgekit.demo import make_classification_clip
    from edgekit.loop.labels import read_sidecar

    clip = OUT / "digits300.avi"
    if not clip.is_file():
        make_classification_clip(clip, frames=300)
    frames = frames_of(clip)
    print(f"classification: {lenet.name} on {clip.name} ({len(frames)} frames, labels "
          f"{clip.stem}.labels.txt)")
    for backend in BACKENDS:
        with loop_model(lenet, backend=backend) as model:
            report = run_loop(model, clip)
            truth = read_sidecar(clip.with_name(clip.stem + ".labels.txt"), model.labels,
                                 len(frames))
            answers = [model.classify(f, k=1)[0].id for f in frames]
        api = agreeing([truth.by_index[i] for i in range(len(frames))], answers) / len(frames)
        ratios, seq, pipe = [], [], []
        for _ in range(rounds):
            for pipelined, store in ((False, seq), (True, pipe)):
                with loop_model(lenet, backend=backend, pipelined=pipelined) as model:
                    store.append(run_loop(model, clip, pipelined=pipelined).stats.fps)
            ratios.append(pipe[-1] / seq[-1])
        print(f"  {backend:<12} loop top-1 {100 * report.accuracy:5.1f}%  classify "
              f"{100 * api:5.1f}%  difference {100 * (report.accuracy - api):+.1f} points;  "
              f"pipelined {statistics.median(pipe):7.1f} FPS / sequential "
              f"{statistics.median(seq):7.1f} FPS: {statistics.median(ratios):.2f}x "
              f"(per-round min {min(ratios):.2f}, max {max(ratios):.2f})")


def segmentation(segmenter: Path) -> None:
    from edgekit.bundle.manifest import read_manifest
    from edgekit.demo import make_clip
    from edgekit.preprocess import prepare
    from edgekit.tasks.segmentation import class_ids, mask_to_frame

    manifest = read_manifest(segmenter)
    print(f"segmentation: {segmenter.name}, {manifest.validation.get('samples')} validation "
          "scenes (convert's figures)")
    for a in manifest.artifacts:
        if a.fidelity is None:
            print(f"  {a.format:<15} {a.status}")
            continue
        f = a.fidelity
        print(f"  {a.format:<15} pixel agreement {100 * f.top1_agreement:6.2f}%  mIoU agreement "
              f"{f.miou_agreement:.4f}  pixel accuracy "
              f"{'-' if f.accuracy is None else f'{100 * f.accuracy:.2f}%'}")
    clip = OUT / "clip.avi"
    if not clip.is_file():
        make_clip(clip)
    frames = frames_of(clip)
    for backend in BACKENDS:
        masks = OUT / f"masks_{backend}"
        with loop_model(segmenter, backend=backend) as model:
            run_loop(model, clip, save_masks=masks)
            equal = 0
            for i, frame in enumerate(frames):
                import cv2

                tensor, transform = prepare(frame, model.spec)
                api = mask_to_frame(class_ids(model.predict(tensor)[0]), transform,
                                    (model.spec.width, model.spec.height))
                saved = cv2.imread(str(masks / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
                equal += bool(saved is not None and np.array_equal(saved, api))
        print(f"  {backend:<12} loop masks equal to the Python API's: {equal}/{len(frames)} "
              "frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lenet", type=Path)
    parser.add_argument("--segmenter", type=Path)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    classification(bundle("lenet5_digits", args.lenet), args.rounds)
    segmentation(bundle("digit_segmenter", args.segmenter))


if __name__ == "__main__":
    main()
