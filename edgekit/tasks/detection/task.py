"""Detection in the camera loop: a frame's detections (drawn, counted, compared) and the
task that decodes them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.preprocess import Transform
from edgekit.tasks.base import FrameResult, LoopTask
from edgekit.tasks.detection.boxes import Detection, to_frame
from edgekit.tasks.detection.registry import decode, decoder_params, describe_decoder

METRIC_THRESHOLD = 0.01  # detections kept for mAP (the PR curve needs the low scores too)


@dataclass(frozen=True)
class DetectionsResult(FrameResult):
    """A frame's detections: those shown (``detections``, over the score threshold) and, when
    the run is scored, every candidate down to ``METRIC_THRESHOLD`` (``candidates``)."""

    detections: list[Detection]
    candidates: list[Detection]

    def record(self) -> dict[str, Any]:
        return {"detections": [{"label": d.label, "class_id": d.class_id,
                                "score": round(d.score, 4), "box": [round(v, 1) for v in d.box]}
                               for d in self.detections]}

    def draw(self, image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        from edgekit.tasks.draw import annotate

        return annotate(image, self.detections, lines)

    def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.detections:
            name = d.label or str(d.class_id)
            counts[name] = counts.get(name, 0) + 1
        return counts


class DetectionTask(LoopTask):
    """The decoder's boxes, mapped back to frame pixels; ``score_threshold`` (None: the
    decoder's) decides what is shown; ``keep_all`` keeps the low scores too, for mAP."""

    name = "detection"

    def __init__(self, decoder: Mapping[str, Any], origin: Mapping[str, str],
                 input_size: tuple[int, int], labels: Sequence[str],
                 score_threshold: float | None = None, keep_all: bool = False) -> None:
        self.decoder, self.origin, self.input_size = dict(decoder), dict(origin), input_size
        self.labels = list(labels)
        self.shown = score_threshold if score_threshold is not None else \
            decoder_params(decoder).score_threshold
        self.params = {**self.decoder, "score_threshold": min(self.shown, METRIC_THRESHOLD)
                       if keep_all else self.shown}

    def postprocess(self, outputs: list[np.ndarray], transform: Transform) -> DetectionsResult:
        candidates = to_frame(decode(outputs, self.params, self.input_size, self.labels),
                              transform)
        return DetectionsResult([d for d in candidates if d.score >= self.shown], candidates)

    def describe(self) -> str:
        return describe_decoder(self.decoder, self.origin)
