"""What each task's result looks like on a frame, and the loop's live numbers beside it:
boxes and labels (detection), top-k bars (classification), a translucent class mask with a
legend (segmentation).

The numbers go in a dark panel in the corner that covers the fewest detections (their
labels first), and the detections are drawn over it: a label is never hidden by the panel.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for the hints only: the tasks import this module to draw their results
    from edgekit.tasks.classification import Class
    from edgekit.tasks.detection import Detection

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
            (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0)]
_FONT_SCALE = 0.5
_LINE = 18  # pixels per panel line
_PAD = 6

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


def annotate(image: np.ndarray, detections: Sequence[Detection],
             lines: Sequence[str] = ()) -> np.ndarray:
    """A copy of ``image`` with ``lines`` in a panel and each detection's box and label."""
    import cv2

    out = image.copy()
    height, width = out.shape[:2]
    drawn = [(d, _box(d, width, height), _label(d, width)) for d in detections]
    lines = [line for line in lines if line]
    if lines:
        size = (max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, 1)[0][0]
                    for line in lines) + 2 * _PAD, _LINE * len(lines) + _PAD + 2)
        x, y = _free_corner((width, height), size, [label for _, _, (label, _) in drawn],
                            [box for _, box, _ in drawn])
        panel = out[y:y + size[1], x:x + size[0]]
        panel[:] = (panel * 0.35).astype(out.dtype)  # darken behind the text
        for i, line in enumerate(lines):
            # White on the darkened panel only: OpenCV 5 draws a thicker stroke with wider
            # letter spacing, so a black outline under it showed as a shifted shadow.
            cv2.putText(out, line, (x + _PAD, y + _LINE * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX,
                        _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    for d, (x1, y1, x2, y2), ((lx1, ly1, lx2, ly2), text) in drawn:
        color = _PALETTE[d.class_id % len(_PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        cv2.rectangle(out, (lx1, ly1), (lx2, ly2), color, -1)
        cv2.putText(out, text, (lx1 + 2, ly2 - 4), cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _box(d: Detection, width: int, height: int) -> Rect:
    x1, y1, x2, y2 = (int(round(v)) for v in d.box)
    return (max(0, x1), max(0, y1), min(width - 1, x2), min(height - 1, y2))


def _label(d: Detection, width: int) -> tuple[Rect, str]:
    """Where a detection's label goes (above its box, inside the frame) and its text."""
    import cv2

    text = f"{d.label or d.class_id} {d.score:.2f}"
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, 1)
    x1, y1 = int(round(d.box[0])), int(round(d.box[1]))
    x1 = max(0, min(x1, width - w - 4))
    top = max(0, y1 - h - 6)
    return (x1, top, x1 + w + 4, top + h + 6), text


def _free_corner(frame: tuple[int, int], size: tuple[int, int], labels: Sequence[Rect],
                 boxes: Sequence[Rect]) -> tuple[int, int]:
    """The panel's top-left corner: the frame corner whose panel covers the least of the
    labels (then of the boxes); top left when nothing is in the way."""
    width, height = frame
    w, h = min(size[0], width), min(size[1], height)
    corners = [(0, 0), (width - w, 0), (0, height - h), (width - w, height - h)]

    def covered(corner: tuple[int, int], rects: Sequence[Rect]) -> int:
        x, y = corner
        return sum(max(0, min(x + w, r[2]) - max(x, r[0])) *
                   max(0, min(y + h, r[3]) - max(y, r[1])) for r in rects)

    return min(corners, key=lambda c: (covered(c, labels), covered(c, boxes)))


_BAR_W = 120  # pixels of a score bar at 1.0
_MASK_ALPHA = 0.45  # how much of a class's colour covers its pixels


def annotate_classes(image: np.ndarray, classes: Sequence[Class],
                     lines: Sequence[str] = ()) -> np.ndarray:
    """A copy of ``image`` with ``lines`` in a panel and the classes, best first, as labelled
    score bars in a panel at the bottom left."""
    import cv2

    out = annotate(image, [], lines)
    if not classes:
        return out
    texts = [f"{c.name} {c.score:.2f}" for c in classes]
    text_w = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, 1)[0][0]
                 for t in texts)
    return _panel(out, [(t, _PALETTE[c.id % len(_PALETTE)], min(1.0, max(0.0, c.score)))
                        for t, c in zip(texts, classes)], text_w)


def annotate_mask(image: np.ndarray, mask: np.ndarray, labels: Sequence[str],
                  lines: Sequence[str] = ()) -> np.ndarray:
    """A copy of ``image`` with each class of ``mask`` (class ids, the image's size) laid
    over it in its colour, class 0 (the background, by convention) left clear; ``lines``
    in a panel and a legend of the classes present, largest first, at the bottom left."""
    import cv2

    colours = _mask_colours()
    out = image.copy()
    shown = mask != 0
    if shown.any():
        tinted = colours[mask[shown]].astype(np.float32)
        out[shown] = (out[shown] * (1 - _MASK_ALPHA) + tinted * _MASK_ALPHA).astype(out.dtype)
    out = annotate(out, [], lines)
    counts = np.bincount(mask.reshape(-1), minlength=1)
    present = [i for i in np.argsort(-counts, kind="stable") if counts[i]][:8]
    rows = [(f"{labels[i] if i < len(labels) and labels[i] else i} "
             f"{100 * counts[i] / mask.size:.0f}%", tuple(int(v) for v in colours[i]), None)
            for i in present]
    text_w = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, 1)[0][0]
                 for t, _, _ in rows)
    return _panel(out, rows, text_w)


def _mask_colours() -> np.ndarray:
    """A BGR colour per class id (0..255): the palette, repeated; grey for class 0, which is
    left clear on the frame (its legend swatch only)."""
    colours = np.array([_PALETTE[i % len(_PALETTE)] for i in range(256)], np.uint8)
    colours[0] = (128, 128, 128)
    return colours


def _panel(out: np.ndarray, rows: Sequence[tuple[str, tuple[int, int, int], float | None]],
           text_w: int) -> np.ndarray:
    """Rows of a colour swatch (or a score bar, when a row has a score) and a text, in a
    darkened panel at the bottom left of ``out`` (drawn in place; returned)."""
    import cv2

    height, width = out.shape[:2]
    has_bars = any(score is not None for _, _, score in rows)
    swatch = _BAR_W if has_bars else 12
    w = min(width, swatch + text_w + 3 * _PAD)
    h = min(height, _LINE * len(rows) + _PAD + 2)
    y = height - h
    panel = out[y:y + h, 0:w]
    panel[:] = (panel * 0.35).astype(out.dtype)
    for i, (text, colour, score) in enumerate(rows):
        top = y + _PAD // 2 + _LINE * i + 3
        filled = swatch if score is None else max(1, int(round(swatch * score)))
        cv2.rectangle(out, (_PAD, top), (_PAD + filled, top + _LINE - 6), colour, -1)
        cv2.putText(out, text, (2 * _PAD + swatch, top + _LINE - 7), cv2.FONT_HERSHEY_SIMPLEX,
                    _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return out
