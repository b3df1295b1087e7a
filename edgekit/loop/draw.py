"""Boxes, labels and the loop's live numbers drawn onto a frame.

The numbers go in a dark panel in the corner that covers the fewest detections (their
labels first), and the detections are drawn over it: a label is never hidden by the panel.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
