"""MOTA and IDF1 of the bundled detector's tracks on the demo clip, per backend, and the
candidate trackers side by side (how edgekit's tracker was chosen; issue 25).

    .venv/bin/python scripts/track_metrics.py [--bundle DIR] [--clip CLIP.avi]
        [--backends tflite,onnxruntime,openvino] [--trackers sort,bytetrack,norfair] [--json]

The detector runs once per backend (``edgekit run --save F.jsonl``'s detections, in frame pixels);
each tracker then follows those detections and is scored against the clip's true paths
(``make_clip``'s ``track`` ids) with motmetrics. ``norfair`` is edgekit's own tracker
(``edgekit.events.tracking.Tracker``: Tryolabs' norfair, IoU within a class); ``sort`` and
``bytetrack`` are the ``trackers`` package's SORTTracker and ByteTrackTracker (with
supervision; not an edgekit dependency), with the same confirmation (3 frames) and the same
memory (1 s of frames). The time is the tracker's
update per frame, median. Bundle and clip default to out/bench/digit_detector and
out/bench/clip.avi (made once).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
sys.path.insert(0, str(ROOT))

from edgekit.events.scoring import score_tracks  # noqa: E402
from edgekit.events.tracking import CONFIRM_FRAMES, Tracker, lost_frames  # noqa: E402
from edgekit.tasks.detection import Detection  # noqa: E402

Update = Callable[[Sequence[Detection]], list]  # detections -> [(track id, box)]


def norfair_tracker(fps: float) -> Update:
    tracker = Tracker(fps)
    return lambda found: [(t.track_id, t.detection.box) for t in tracker.update(found)]


def sort_tracker(fps: float) -> Update:
    import supervision as sv
    from trackers import SORTTracker

    tracker = SORTTracker(lost_track_buffer=lost_frames(fps), frame_rate=fps,
                          track_activation_threshold=0.0,
                          minimum_consecutive_frames=CONFIRM_FRAMES, minimum_iou_threshold=0.1)

    def update(found: Sequence[Detection]) -> list:
        out = tracker.update(_sv(sv, found))
        return [(int(t), tuple(b)) for t, b in zip(out.tracker_id, out.xyxy) if t >= 0]
    return update


def _sv(sv: Any, found: Sequence[Detection]) -> Any:
    return sv.Detections(xyxy=np.array([d.box for d in found], np.float32).reshape(-1, 4),
                         confidence=np.array([d.score for d in found], np.float32),
                         class_id=np.array([d.class_id for d in found], int))


def bytetrack_tracker(fps: float) -> Update:
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(lost_track_buffer=lost_frames(fps), frame_rate=fps,
                               minimum_consecutive_frames=CONFIRM_FRAMES,
                               track_activation_threshold=0.3)

    def update(found: Sequence[Detection]) -> list:
        out = tracker.update(_sv(sv, found))
        return [(int(t), tuple(b)) for t, b in zip(out.tracker_id, out.xyxy) if t >= 0]
    return update


CANDIDATES = {"norfair": norfair_tracker, "sort": sort_tracker, "bytetrack": bytetrack_tracker}


def detections(bundle: Path, clip: Path, backend: str) -> list[list[Detection]]:
    """The detector's detections per frame of ``clip`` on ``backend`` (the loop's JSON lines)."""
    from edgekit.loop.run import loop_model, run_loop

    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "run.jsonl"
        with loop_model(bundle, backend=backend) as model:
            run_loop(model, clip, jsonl=lines)
        frames = [json.loads(line) for line in lines.read_text().splitlines()]
    return [[Detection(d["label"], d["class_id"], d["score"], tuple(d["box"]))
             for d in f["detections"]] for f in frames]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=OUT / "digit_detector")
    parser.add_argument("--clip", type=Path, default=OUT / "clip.avi")
    parser.add_argument("--backends", default="tflite,onnxruntime,openvino")
    parser.add_argument("--trackers", default=",".join(CANDIDATES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (args.bundle / "edgekit.json").is_file() and not any(args.bundle.glob("*.json")):
        from edgekit.convert import ConvertOptions, convert

        convert(ROOT / "models/digit_detector/digit_detector.keras", args.bundle,
                ConvertOptions(formats="tflite-fp32,onnx,openvino-fp32"))
    if not args.clip.is_file():
        from edgekit.demo import make_clip

        make_clip(args.clip)
    truth = json.loads(args.clip.with_suffix(".json").read_text())
    rows = []
    for backend in args.backends.split(","):
        found = detections(args.bundle, args.clip, backend)
        for name in args.trackers.split(","):
            update = CANDIDATES[name](float(truth["fps"]))
            tracks, times = {}, []
            for index, frame in enumerate(found):
                start = time.perf_counter_ns()
                tracks[index] = update(frame)
                times.append(time.perf_counter_ns() - start)
            score = score_tracks(truth["objects"], tracks)
            rows.append({"backend": backend, "tracker": name, **score.to_dict(),
                         "update_ms": round(statistics.median(times) / 1e6, 3)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'backend':12} {'tracker':10} {'MOTA':>7} {'IDF1':>7} {'IDsw':>5} {'update ms':>10}")
    for r in rows:
        print(f"{r['backend']:12} {r['tracker']:10} {r['mota']:7.3f} {r['idf1']:7.3f} "
              f"{r['id_switches']:5d} {r['update_ms']:10.3f}")
    print(f"({rows[0]['frames']} frames of {args.clip.name}; truth: its objects' paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
