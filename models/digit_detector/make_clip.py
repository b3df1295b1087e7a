"""Write a demo clip: handwritten digits drifting over a slowly panning photo.

    python models/digit_detector/make_clip.py OUT.avi [--seconds S] [--fps F] [--seed N]

or from Python: ``make_clip(path, seconds=6.0, fps=15, seed=0) -> Path``.

The video is MJPG in an .avi (OpenCV writes it everywhere). Beside it,
``OUT.json`` holds the ground truth:

    {
      "video": "OUT.avi", "fps": 15, "width": 640, "height": 480, "frames": 90, "seed": 0,
      "labels": ["0", ..., "9"],
      "box_format": "x1, y1, x2, y2 in frame pixels (x2, y2 exclusive)",
      "objects": [                      # one list per frame, in frame order
        [{"label": "7", "class_id": 7, "box": [x1, y1, x2, y2], "track": 0}, ...],
        ...
      ]
    }

Material comes from the held-out split of ``scenes.py`` (digit scans and photos
the bundled detector never saw in training). Each digit keeps to its own
horizontal lane, so digits never overlap; a digit that bounces off the frame's
edge turns into another scan, and so into another object: each object's ``track`` id is
unique in the clip (the truth for scoring a tracker). Digits are 80..150 px tall, about
16..30 px once a 640x480 frame is letterboxed to the detector's 128x128 input. This module never
imports TensorFlow.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

HERE = Path(__file__).resolve().parent
FRAME_SIZE = (640, 480)
DIGIT_HEIGHT = (80, 150)
LANES = 3


def load_scenes() -> ModuleType:
    """The sibling ``scenes.py``, however this file was loaded (script, import or by path)."""
    name = "edgekit_digit_detector_scenes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "scenes.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class Mover:
    """One digit on the move: its scan, ink, position (top left) and velocity in pixels."""

    digit: object
    alpha: np.ndarray
    colour: np.ndarray
    x: float
    y: float
    vx: float
    vy: float
    lane: tuple[int, int]
    track: int = 0  # the object's id in the ground truth: a new one at each bounce


def new_mover(rng: np.random.Generator, scenes: ModuleType, canvas: np.ndarray,
              lane: tuple[int, int], fps: float) -> Mover:
    """A digit in ``lane`` (top, bottom rows) with a random size, place and speed."""
    width = canvas.shape[1]
    top, bottom = lane
    h = int(rng.integers(DIGIT_HEIGHT[0], min(DIGIT_HEIGHT[1], bottom - top) + 1))
    w = round(h * rng.uniform(0.75, 1.0))
    digit = scenes.random_digit(rng, "test")
    alpha = scenes.render_ink(digit, w, h)
    x = float(rng.uniform(0, width - w))
    y = float(rng.uniform(top, bottom - h))
    colour = scenes.ink_colour(rng, canvas[top:bottom])
    speed = rng.uniform(60, 160) / fps  # pixels per frame
    vx = speed * rng.choice([-1.0, 1.0])
    vy = rng.uniform(-20, 20) / fps
    return Mover(digit, alpha, colour, x, y, vx, vy, lane)


def step(rng: np.random.Generator, scenes: ModuleType, mover: Mover, width: int) -> None:
    """Move one frame on; at a side edge bounce and become another scan of the same size."""
    h, w = mover.alpha.shape
    mover.x += mover.vx
    mover.y += mover.vy
    if mover.x < 0 or mover.x > width - w:
        mover.x = float(np.clip(mover.x, 0, width - w))
        mover.vx = -mover.vx
        mover.digit = scenes.random_digit(rng, "test")
        mover.alpha = scenes.render_ink(mover.digit, w, h)
        mover.track += LANES  # another digit: another object, its id still unique
    top, bottom = mover.lane
    if mover.y < top or mover.y > bottom - h:
        mover.y = float(np.clip(mover.y, top, bottom - h))
        mover.vy = -mover.vy


def panning_view(photo: np.ndarray, size: tuple[int, int], t: float, flip: bool) -> np.ndarray:
    """The frame-sized window at time ``t`` in [0, 1] of a slow diagonal pan over ``photo``."""
    import cv2

    width, height = size
    scale = 1.25 * max(width / photo.shape[1], height / photo.shape[0])
    big = cv2.resize(photo, (int(photo.shape[1] * scale) + 1, int(photo.shape[0] * scale) + 1),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if flip:
        big = big[:, ::-1]
    x = round(t * (big.shape[1] - width))
    y = round(t * (big.shape[0] - height))
    return np.ascontiguousarray(big[y:y + height, x:x + width])


def make_clip(path: str | Path, seconds: float = 6.0, fps: float = 15, seed: int = 0,
              size: tuple[int, int] = FRAME_SIZE) -> Path:
    """Write the clip to ``path`` (.avi, MJPG) and its ground truth beside it; return ``path``."""
    import cv2

    path = Path(path)
    frames = max(1, round(seconds * fps))
    width, height = size
    scenes = load_scenes()
    rng = np.random.default_rng(seed)
    photos = scenes.photos("test")
    photo = photos[int(rng.integers(len(photos)))]
    flip = bool(rng.random() < 0.5)
    first = panning_view(photo, size, 0.0, flip)
    lane_height = height // LANES
    movers = [new_mover(rng, scenes, first, (i * lane_height, (i + 1) * lane_height), fps)
              for i in range(LANES)]
    for i, mover in enumerate(movers):
        mover.track = i
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write MJPG video to {path}; use a path ending in .avi")
    objects = []
    try:
        for index in range(frames):
            frame = panning_view(photo, size, index / max(1, frames - 1), flip)
            boxes = []
            for mover in movers:
                x, y = round(mover.x), round(mover.y)
                scenes.paint(frame, mover.alpha, mover.colour, x, y)
                box = scenes.tight_box(mover.alpha, x, y)
                value = mover.digit.value
                if box is not None:
                    boxes.append({"label": scenes.LABELS[value], "class_id": value,
                                  "box": [int(v) for v in box], "track": mover.track})
                step(rng, scenes, mover, width)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            objects.append(boxes)
    finally:
        writer.release()
    truth = {
        "video": path.name, "fps": fps, "width": width, "height": height, "frames": frames,
        "seed": seed, "labels": list(scenes.LABELS),
        "box_format": "x1, y1, x2, y2 in frame pixels (x2, y2 exclusive)",
        "objects": objects,
    }
    path.with_suffix(".json").write_text(json.dumps(truth, separators=(",", ":")) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .avi to write; its .json goes beside it")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--fps", type=float, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = make_clip(args.out, seconds=args.seconds, fps=args.fps, seed=args.seed)
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
