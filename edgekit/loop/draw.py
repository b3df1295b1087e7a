"""Boxes, labels and the loop's live numbers drawn onto a frame."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekit.tasks.detection import Detection

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
            (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0)]


def annotate(image: np.ndarray, detections: Sequence[Detection],
             lines: Sequence[str] = ()) -> np.ndarray:
    """A copy of ``image`` with each detection's box and label, and ``lines`` top left."""
    import cv2

    out = image.copy()
    for d in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        color = _PALETTE[d.class_id % len(_PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        text = f"{d.label or d.class_id} {d.score:.2f}"
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(0, y1 - h - 6)
        cv2.rectangle(out, (x1, top), (x1 + w + 4, top + h + 6), color, -1)
        cv2.putText(out, text, (x1 + 2, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
    lines = [line for line in lines if line]
    if lines:
        width = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] for line in lines)
        band = out[:18 * len(lines) + 8, :width + 12]
        band[:] = (band * 0.35).astype(out.dtype)  # darken behind the text
    for i, line in enumerate(lines):
        # White on the darkened band only: OpenCV 5 draws a thicker stroke with wider letter
        # spacing, so a black outline (thickness 3) under it showed as a shifted shadow.
        cv2.putText(out, line, (6, 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return out
