"""What the annotated video shows: the panel of numbers, the boxes and their labels."""
from __future__ import annotations

import numpy as np

from edgekit.loop.pipeline import Item, LoopStats
from edgekit.loop.sinks import overlay_lines
from edgekit.loop.sources import Frame
from edgekit.tasks.detection import Detection
from edgekit.tasks.draw import _free_corner, _label, annotate

LINES = ["tflite  120.0 FPS  end-to-end 7.9 ms", "cap 0.2  pre 0.5  infer 1.3 ms"]


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero((a != b).any(axis=2))
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()]) if len(xs) else np.array([])


def test_the_panel_alone_stays_top_left_with_its_text_inside() -> None:
    frame = np.full((240, 320, 3), 128, np.uint8)
    out = annotate(frame, [], LINES)
    x1, y1, x2, y2 = _changed(out, frame)
    assert (x1, y1) == (0, 0) and x2 < 320 and y2 < 2 * 18 + 8
    panel = out[: y2 + 1, : x2 + 1]
    assert (panel == 44).all(axis=2).mean() > 0.7 and (panel == 255).all(axis=2).any()
    assert (out[y2 + 1:] == 128).all() and (out[:, x2 + 1:] == 128).all()  # nothing outside


def test_the_panel_moves_off_a_label_and_labels_are_drawn_over_it() -> None:
    frame = np.full((240, 320, 3), 128, np.uint8)
    digit = Detection("seven", 7, 0.91, (4.0, 2.0, 80.0, 70.0))  # label at the top left
    (lx1, ly1, lx2, ly2), _ = _label(digit, 320)
    out = annotate(frame, [digit], LINES)
    alone = annotate(frame, [], LINES)
    panel = _changed(alone, frame)
    width, height = panel[2] + 1, panel[3] + 1
    corner = _free_corner((320, 240), (width, height), [(lx1, ly1, lx2, ly2)], [])
    assert corner != (0, 0)
    x, y = corner
    assert out[y + 2, x + 2].max() < 128  # the panel is there, darkened
    label = out[ly1 + 1:ly2 - 1, lx1 + 1:lx2 - 1]
    color = np.array((134, 219, 61))  # class 7's colour
    assert ((label == color).all(axis=2) | (label == 255).all(axis=2)).mean() > 0.6


def test_no_zero_fps_before_there_is_anything_to_show() -> None:
    stats = LoopStats()
    first = overlay_lines(stats, "tflite")
    assert "FPS" not in first[0] and "0.0" not in " ".join(first)
    for i in range(3):
        item = Item(Frame(i, np.zeros((2, 2, 3), np.uint8), 0), {"infer": 1_000_000},
                    done_ns=2_000_000)
        stats.started_ns = 1
        stats.record(item)
    later = overlay_lines(stats, "tflite")
    assert "FPS" in later[0] and "end-to-end 2.0 ms" in later[0] and "infer 1.0 ms" in later[1]
