"""Segmentation: a class per pixel, from an output of H x W x C class scores or H x W class
ids, mapped back onto the frame (through the letterbox or resize the frame went through)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import InvalidModel
from edgekit.tasks.base import FrameResult, LoopTask

if TYPE_CHECKING:
    from edgekit.preprocess import Transform

MAX_CLASSES = 256  # the mask is an 8-bit PNG


def mask_layout(shape: Sequence[int]) -> str:
    """How an output holds a mask: "scores" (H x W x C, C > 1), "ids" (H x W, or H x W x 1
    read as class ids) or an InvalidModel that says what it takes; a leading batch of 1 is
    allowed."""
    dims = [int(d) for d in shape]
    if len(dims) in (3, 4) and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 3 and dims[0] > 1 and dims[1] > 1 and dims[2] >= 1:
        if dims[2] > MAX_CLASSES:
            raise InvalidModel(f"a segmentation output of shape {tuple(shape)} has {dims[2]} "
                               f"classes; edgekit's masks hold at most {MAX_CLASSES}")
        return "scores" if dims[2] > 1 else "ids"
    if len(dims) == 2 and dims[0] > 1 and dims[1] > 1:
        return "ids"
    raise InvalidModel(f"a segmentation output is H x W x C class scores or H x W class ids "
                       f"(a batch of 1 in front allowed), not {tuple(shape)}: is this model a "
                       "segmenter? (--postprocess task=generic shows any output)")


def class_ids(output: np.ndarray) -> np.ndarray:
    """The model's output -> an H x W uint8 map of class ids, at the output's resolution."""
    a = np.asarray(output)
    if mask_layout(a.shape) == "scores":
        a = a.reshape(a.shape[-3:]).argmax(axis=-1)
    else:  # H x W, or H x W x 1, with or without a batch of 1
        a = np.rint(a.reshape(a.shape[-3:-1] if a.ndim >= 3 and a.shape[-1] == 1
                              else a.shape[-2:]))
    return np.clip(a, 0, MAX_CLASSES - 1).astype(np.uint8)


def mask_to_frame(ids: np.ndarray, transform: Transform, input_size: tuple[int, int]) -> \
        np.ndarray:
    """A mask over the model's input (any resolution: it is first scaled to ``input_size``,
    (w, h)) -> the same mask over the frame: the letterbox's padding cut off, the rest scaled
    to the frame's size (nearest neighbour: class ids are not blended)."""
    import cv2

    width, height = input_size
    if ids.shape != (height, width):
        ids = cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)
    fw, fh = transform.frame_size
    x0, y0 = int(round(transform.pad_x)), int(round(transform.pad_y))
    x1 = min(width, int(round(transform.pad_x + fw * transform.scale_x)))
    y1 = min(height, int(round(transform.pad_y + fh * transform.scale_y)))
    inside = ids[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)]
    return cv2.resize(inside, (fw, fh), interpolation=cv2.INTER_NEAREST)


def class_shares(mask: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Each class present in ``mask`` and the share of the pixels it holds, largest first."""
    counts = np.bincount(mask.reshape(-1), minlength=1)
    total = max(1, mask.size)
    shares = {(labels[i] if i < len(labels) and labels[i] else str(i)): n / total
              for i, n in enumerate(counts) if n}
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


@dataclass(frozen=True)
class MaskResult(FrameResult):
    """A frame's class mask (H x W class ids, the frame's size) and each class's share."""

    mask: np.ndarray
    labels: tuple[str, ...]
    cells: np.ndarray | None = None  # the same classes at the model's output resolution

    def shares(self) -> dict[str, float]:
        return class_shares(self.mask, self.labels)

    def record(self) -> dict[str, Any]:
        return {"shares": {k: round(v, 4) for k, v in self.shares().items()}}

    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        from edgekit.tasks.draw import annotate_mask

        return annotate_mask(image, self.mask, self.labels, lines)

    def label_counts(self) -> dict[str, int]:
        return {name: 1 for name in self.shares()}

    def answer(self) -> np.ndarray:
        return self.cells if self.cells is not None else self.mask


class SegmentationTask(LoopTask):
    """A class mask per frame, from the model's first output."""

    name = "segmentation"

    def __init__(self, labels: Sequence[str], input_size: tuple[int, int]) -> None:
        self.labels, self.input_size = tuple(labels), input_size

    def postprocess(self, outputs: list[np.ndarray], transform: Transform) -> MaskResult:
        cells = class_ids(outputs[0])
        return MaskResult(mask_to_frame(cells, transform, self.input_size), self.labels, cells)

    def describe(self) -> str:
        return "task: segmentation, a class per pixel (the first output)"
