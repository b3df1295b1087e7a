"""Track ids (edgekit.events.tracking): an object keeps its id across frames, a new one gets
a new id, and on the demo clip the ids follow the generator's true paths (MOTA, IDF1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from edgekit.events.scoring import score_run, score_tracks
from edgekit.events.tracking import CONFIRM_FRAMES, TrackedResult, Tracker
from edgekit.tasks.detection import Detection, DetectionsResult

pytest.importorskip("norfair")


def _digit(x: float, label: str = "7", y: float = 100.0) -> Detection:
    return Detection(label, int(label), 0.9, (x, y, x + 40, y + 60))


def test_an_object_keeps_its_id_and_another_gets_its_own() -> None:
    tracker = Tracker(fps=15)
    seen = []
    for frame in range(10):
        tracked = tracker.update([_digit(10 + 8 * frame), _digit(300, "3", y=300)])
        seen.append({t.detection.label: t.track_id for t in tracked})
    assert seen[0] == {} and seen[CONFIRM_FRAMES - 2] == {}  # not confirmed yet
    last = seen[-1]
    assert set(last) == {"7", "3"} and last["7"] != last["3"]
    assert all(ids == last for ids in seen[CONFIRM_FRAMES:])


def test_a_digit_that_turns_into_another_class_is_another_object() -> None:
    tracker = Tracker(fps=15)
    for frame in range(5):
        first = tracker.update([_digit(10 + 5 * frame)])
    for frame in range(5, 10):
        second = tracker.update([_digit(10 + 5 * frame, "2")])
    assert first and second and first[0].track_id != second[0].track_id


def test_track_ids_in_the_record_and_on_the_drawing() -> None:
    tracker = Tracker(fps=15)
    detections = [_digit(50)]
    for _ in range(CONFIRM_FRAMES):
        tracks = tracker.update(detections)
    result = TrackedResult(DetectionsResult(detections, detections), tracks)
    assert result.record()["detections"][0]["track"] == tracks[0].track_id
    image = np.zeros((240, 320, 3), np.uint8)
    plain = DetectionsResult(detections, detections).draw(image, [])
    assert not np.array_equal(result.draw(image, []), plain)  # "7 #1" is wider than "7"


def test_scores_a_perfect_and_a_swapping_tracker() -> None:
    truth = [[{"track": 0, "box": [0, 0, 10, 10]}, {"track": 1, "box": [50, 50, 60, 60]}]] * 4
    perfect = {i: [(5, (0, 0, 10, 10)), (6, (50, 50, 60, 60))] for i in range(4)}
    assert score_tracks(truth, perfect).to_dict()["mota"] == 1.0
    swapped = dict(perfect)
    swapped[2] = swapped[3] = [(6, (0, 0, 10, 10)), (5, (50, 50, 60, 60))]
    score = score_tracks(truth, swapped)
    assert score.switches == 2 and score.idf1 < 1.0


@pytest.mark.slow
def test_the_demo_clip_tracked_against_its_true_paths(detector_bundle: Path, demo_clip: Path,
                                                      tmp_path: Path) -> None:
    lines = tmp_path / "frames.jsonl"
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--events-filter", "track=on",
                     "--save", lines,
                     "--backend", "onnxruntime", "--json")
    assert result.returncode == 0, result.stderr
    assert "tracked (norfair" in json.loads(result.stdout)["decoder"]
    frames = [json.loads(line) for line in lines.read_text().splitlines()]
    assert all("track" in d for f in frames for d in f["detections"])
    found = {f["frame"]: [(d["track"], d["box"]) for d in f["detections"]
                          if d["track"] is not None] for f in frames}
    truth = json.loads(demo_clip.with_suffix(".json").read_text())["objects"]
    score = score_tracks(truth, found)
    # measured: MOTA 0.778, IDF1 0.876 on every backend (scripts/track_metrics.py)
    assert score.mota >= 0.7 and score.idf1 >= 0.8, score
    again = score_run(detector_bundle, demo_clip, "onnxruntime")  # the demo report's figure
    assert (again.mota, again.idf1) == (score.mota, score.idf1)
