"""How well a tracker follows the objects of a clip whose true paths are known (the demo clip's
ground truth gives each object a ``track`` id): MOTA and IDF1, as motmetrics computes them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import UsageError

MATCH_IOU = 0.5  # a hypothesis matches a true box at IoU 0.5 or more (MOTChallenge's rule)


@dataclass(frozen=True)
class TrackScore:
    mota: float
    idf1: float
    switches: int
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return {"mota": round(self.mota, 4), "idf1": round(self.idf1, 4),
                "id_switches": self.switches, "frames": self.frames}


def _iou_distances(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """1 - IoU between x1, y1, x2, y2 boxes, NaN where below ``MATCH_IOU`` (no match)."""
    if not len(truth) or not len(found):
        return np.empty((len(truth), len(found)))
    x1 = np.maximum(truth[:, None, 0], found[None, :, 0])
    y1 = np.maximum(truth[:, None, 1], found[None, :, 1])
    x2 = np.minimum(truth[:, None, 2], found[None, :, 2])
    y2 = np.minimum(truth[:, None, 3], found[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = inter / (area(truth)[:, None] + area(found)[None, :] - inter)
    return np.where(iou >= MATCH_IOU, 1 - iou, np.nan)


def score_tracks(truth: Sequence[Sequence[Mapping[str, Any]]],
                 found: Mapping[int, Sequence[tuple[int, Sequence[float]]]]) -> TrackScore:
    """``truth``: per frame, objects with ``track`` and ``box``; ``found``: frame index ->
    (track id, box) pairs. Frames missing from ``found`` count as frames with no tracks."""
    try:
        import motmetrics as mm
    except ImportError:
        raise UsageError("scoring a tracker needs motmetrics: pip install motmetrics") from None
    acc = mm.MOTAccumulator(auto_id=True)
    for index, objects in enumerate(truth):
        if objects and "track" not in objects[0]:
            raise UsageError("this ground truth has no track ids: make the clip again with "
                             "this edgekit (models/digit_detector/make_clip.py)")
        hyp = list(found.get(index, ()))
        acc.update([o["track"] for o in objects], [t for t, _ in hyp],
                   _iou_distances(np.array([o["box"] for o in objects], float).reshape(-1, 4),
                                  np.array([b for _, b in hyp], float).reshape(-1, 4)))
    table = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"],
                                        name="run")
    return TrackScore(float(table["mota"].iloc[0]), float(table["idf1"].iloc[0]),
                      int(table["num_switches"].iloc[0]), len(truth))


def score_run(bundle: str | Path, clip: str | Path, backend: str) -> TrackScore:
    """The bundle's detector tracked through ``clip`` (its ground truth beside it, with track
    ids) on ``backend``, scored against the true paths."""
    import json
    import tempfile

    from edgekit.events.settings import EventsOptions
    from edgekit.loop.run import loop_model, run_loop

    truth = json.loads(Path(clip).with_suffix(".json").read_text())["objects"]
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "frames.jsonl"
        with loop_model(bundle, backend=backend) as model:
            run_loop(model, clip, jsonl=lines, events=EventsOptions(track=True))
        frames = [json.loads(line) for line in lines.read_text().splitlines()]
    found = {f["frame"]: [(d["track"], d["box"]) for d in f.get("detections", ())
                          if d.get("track") is not None] for f in frames}
    return score_tracks(truth, found)
