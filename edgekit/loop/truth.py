"""A detection clip's truth: boxes per source frame (the demo clip's ``CLIP.json``, or
``--capture truth=FILE``), and the loop's mAP against it. A classification clip's truth is in
labels.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import InvalidData
from edgekit.helpers.files import read_small
from edgekit.loop.sources import is_live
from edgekit.tasks.detection import Detection
from edgekit.tasks.metrics import mean_average_precision

TRUTH_MAX_BYTES = 256 * 1024 * 1024  # a ground-truth file: boxes per frame, as JSON


@dataclass
class GroundTruth:
    """Boxes per source frame index, for mAP (the demo clip's ``CLIP.json`` format)."""

    labels: list[str]
    frames: dict[int, list[dict]] = field(default_factory=dict)


def truth_path(spec: str | Path, explicit: Path | None = None) -> Path | None:
    """``--capture truth=FILE``, else ``SOURCE.json`` beside a video file or image folder, if
    present."""
    if explicit is not None:
        return Path(explicit)
    text = str(spec)
    if is_live(text):
        return None
    candidate = Path(text).with_suffix(".json") if Path(text).is_file() else \
        Path(text.rstrip("/") + ".json")
    return candidate if candidate.is_file() else None


def find_ground_truth(spec: str | Path, explicit: Path | None = None) -> GroundTruth | None:
    """The ground truth ``truth_path`` finds, read; None when there is none."""
    import json

    path = truth_path(spec, explicit)
    if path is None:
        return None
    try:
        data = json.loads(read_small(path, TRUTH_MAX_BYTES, "--capture truth"))
        objects = data["objects"]
        frames = objects if isinstance(objects, dict) else dict(enumerate(objects))
        return GroundTruth(list(data.get("labels", [])),
                           {int(k): list(v) for k, v in frames.items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise InvalidData(f"{path}: not a ground-truth file edgekit reads ({exc}); it needs "
                          '"objects": a list per frame of {"label", "class_id", "box"}') from None


def truth_boxes(gt: GroundTruth, index: int) -> list[Detection]:
    """A frame's true boxes as detections (score 1)."""
    return [Detection(o.get("label", ""), int(o["class_id"]), 1.0, tuple(o["box"]))
            for o in gt.frames.get(index, [])]


def score_map(predicted: dict[int, list[Detection]], gt: GroundTruth,
              uncertain_from: int | None) -> tuple[float | None, int, str]:
    """(mAP@0.5 of the frames before ``uncertain_from``, frames scored, a note)."""
    frames = sorted(i for i in predicted if uncertain_from is None or i < uncertain_from)
    note = ""
    if uncertain_from is not None:
        note = (f"scored on the {len(frames)} frames before the first decode failure (frame "
                f"{uncertain_from}); positions after it are uncertain")
    if not frames:
        return None, 0, note or "no frame to score"
    value = mean_average_precision([predicted[i] for i in frames],
                                   [truth_boxes(gt, i) for i in frames], 0.5)
    return value, len(frames), note
