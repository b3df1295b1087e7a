"""Write a classification clip: held-out handwritten digits, one at a time, moving and changing.

    python models/lenet5_digits/make_clip.py OUT.avi [--frames N] [--fps F] [--hold N] [--seed N]
                                                     [--size PX]

or from Python: ``make_clip(path, frames=300, fps=15, hold=20, seed=0, size=480) -> Path``.

The video is MJPG in an .avi, ``size`` x ``size`` (square: LeNet's 32 x 32 input is the frame
scaled down; 480 by default, a camera's height), white ink on black as LeNet was trained.
Each digit is a scan from LeNet's held-out split (``train.py``'s stratified 80/20 split: scans
it never saw), shown for ``hold`` frames while it drifts a little, then the next one.
Beside the video, ``OUT.labels.txt`` gives each run of frames its digit (``FIRST-LAST
LABEL``), the sidecar ``edgekit run`` and ``edgekit compare`` score a classifier against.
Never imports TensorFlow.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

SIZE = 480  # frame width and height, by default
SEED = 1998  # train.py's split seed: the same held-out scans


def held_out() -> tuple[np.ndarray, np.ndarray]:
    """LeNet's held-out scans, (N, 8, 8) ink in [0, 1], and their digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    _, test_x, _, test_y = train_test_split(images, digits.target, test_size=0.2,
                                            random_state=SEED, stratify=digits.target)
    return test_x, test_y.astype(np.int64)


def frame(ink: np.ndarray, t: float, phase: float, size: int = SIZE) -> np.ndarray:
    """One BGR frame: the scan scaled to most of the frame, shifted a little along a path
    (up to 1/20 of the frame: 6 px in 128)."""
    import cv2

    margin = size // 16
    side = size - 2 * margin
    big = cv2.resize(ink, (side, side), interpolation=cv2.INTER_LINEAR)
    reach = 0.75 * margin
    dx = int(round(reach * math.sin(2 * math.pi * (t + phase))))
    dy = int(round(reach * math.cos(2 * math.pi * (0.7 * t + phase))))
    canvas = np.zeros((size, size), np.float32)
    x, y = margin + dx, margin + dy
    canvas[y:y + side, x:x + side] = big
    grey = (np.clip(canvas, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def make_clip(path: str | Path, frames: int = 300, fps: float = 15, hold: int = 20,
              seed: int = 0, size: int = SIZE) -> Path:
    """Write the clip and its labels sidecar; return the clip's path."""
    import cv2

    path = Path(path)
    scans, values = held_out()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(scans))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    lines = [f"# {path.name}: {frames} frames at {fps:g} FPS, one held-out digit per run"]
    try:
        for start in range(0, frames, hold):
            pick = order[(start // hold) % len(order)]
            last = min(frames, start + hold) - 1
            phase = float(rng.random())
            for i in range(start, last + 1):
                writer.write(frame(scans[pick], (i - start) / hold, phase, size))
            lines.append(f"{start}-{last} {int(values[pick])}")
    finally:
        writer.release()
    path.with_name(path.stem + ".labels.txt").write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=15)
    parser.add_argument("--hold", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args()
    print(make_clip(args.out, args.frames, args.fps, args.hold, args.seed, args.size))


if __name__ == "__main__":
    main()
