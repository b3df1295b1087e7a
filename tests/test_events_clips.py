"""Event clips (edgekit.events.clips): pre-roll from the ring buffer, post-roll after the
track ends, written aside and renamed when whole, the oldest deleted to stay under
max_disk, and a read-only or full folder said in one line."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli
from tmpfs import fill, read_only, tmpfs

from edgekit.errors import WriteFailed
from edgekit.events import clips as clips_module
from edgekit.events.clips import WRITER_BUFFER, ClipRecorder, clip_files
from edgekit.events.rules import Event
from edgekit.events.service import counters_line
from edgekit.events.settings import ClipOptions, parse_size
from edgekit.loop.pipeline import Item
from edgekit.loop.sinks import video_frames
from edgekit.loop.sources import Frame

FPS = 15.0


class _Clock:
    """Frames 1/15 s apart (their capture stamps), without waiting for them."""

    def __init__(self) -> None:
        self.base = time.perf_counter_ns()
        self.wall = time.time()

    def item(self, index: int) -> Item:
        image = np.full((120, 160, 3), (index * 7) % 255, np.uint8)
        return Item(Frame(index, image, self.base + int(index / FPS * 1e9)))

    def at(self, index: int) -> float:
        return self.wall + index / FPS


def _event(kind: str, track: int, clock: _Clock, index: int, n: int) -> Event:
    return Event(kind, track, "7", 7, 0.9, (1.0, 1.0, 20.0, 20.0), index, clock.at(index), "cam",
                 "bundle", id=f"e{n}")


def _record(recorder: ClipRecorder, clock: _Clock, tracks: list[tuple[int, int, int]],
            frames: int) -> list[Event]:
    """Feed ``frames`` frames; each (track, first, last) track gets its new and end events."""
    events, n = [], 0
    for index in range(frames):
        recorder.frame(clock.item(index))
        for track, first, last in tracks:
            for kind, when in (("new", first), ("end", last)):
                if index == when:
                    n += 1
                    event = _event(kind, track, clock, index, n)
                    recorder.event(event)
                    events.append(event)
        time.sleep(0.002)  # let the recorder keep up, as a camera's frame rate does
    recorder.close()
    return events


def test_a_clip_holds_its_pre_and_post_roll_and_the_event_names_it(tmp_path: Path) -> None:
    clock, said = _Clock(), []
    recorder = ClipRecorder(ClipOptions(folder=str(tmp_path), pre_s=1.0, post_s=1.0,
                                        max_disk=parse_size("50M")), FPS, said.append)
    events = _record(recorder, clock, [(1, 30, 45)], 90)
    assert [e.clip for e in events] == ["e1-7-track1.avi"] * 2
    clips = clip_files(tmp_path)
    assert [p.name for p in clips] == ["e1-7-track1.avi"]
    # 1 s before frame 30 (15 frames and the frame itself), up to 1 s after frame 45
    assert 15 + 1 + 15 + 15 - 2 <= video_frames(clips[0]) <= 15 + 1 + 15 + 15 + 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert recorder.counters()["clips"] == 1 and not said


def test_the_oldest_clips_go_to_stay_under_max_disk(tmp_path: Path) -> None:
    clock, said = _Clock(), []
    probe = ClipRecorder(ClipOptions(folder=str(tmp_path / "one"), pre_s=0.5, post_s=0.5,
                                     max_disk=1 << 30), FPS)
    _record(probe, clock, [(1, 10, 15)], 40)
    one = clip_files(tmp_path / "one")[0].stat().st_size
    limit = int(one * 2.5) + WRITER_BUFFER  # room kept for the clip being written
    recorder = ClipRecorder(ClipOptions(folder=str(tmp_path / "clips"), pre_s=0.5, post_s=0.5,
                                        max_disk=limit), FPS, said.append)
    events = _record(recorder, clock, [(t, 10 + 20 * t, 15 + 20 * t) for t in range(5)], 130)
    kept = clip_files(tmp_path / "clips")
    made = [e.clip for e in events if e.type == "new"]
    assert 2 <= len(kept) < 5 and [p.name for p in kept] == made[-len(kept):]  # the newest
    assert sum(p.stat().st_size for p in kept) <= limit
    assert recorder.counters()["deleted"] == 5 - len(kept) and not said


def test_max_disk_smaller_than_one_clip_is_said_once(tmp_path: Path) -> None:
    said: list[str] = []
    recorder = ClipRecorder(ClipOptions(folder=str(tmp_path), pre_s=0.5, post_s=0.5,
                                        max_disk=1000), FPS, said.append)
    _record(recorder, _Clock(), [(1, 10, 15), (2, 30, 35)], 60)
    assert clip_files(tmp_path) == [] and recorder.counters()["failed"] == 2
    assert len(said) == 1 and "more than max_disk" in said[0]


def test_a_read_only_clips_folder_is_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro") as folder:
        read_only(folder)
        with pytest.raises(WriteFailed, match="--clips .*cannot write there: .*read-only"):
            ClipRecorder(ClipOptions(folder=str(folder)), FPS)


def test_a_full_disk_discards_the_clip_and_the_recorder_goes_on(tmp_path: Path) -> None:
    said: list[str] = []
    with tmpfs(tmp_path / "full", size_kb=2048) as folder:
        recorder = ClipRecorder(ClipOptions(folder=str(folder), pre_s=0.5, post_s=0.5,
                                            max_disk=1 << 30), FPS, said.append)
        fill(folder, 8)
        _record(recorder, _Clock(), [(1, 10, 15)], 40)
        assert clip_files(folder) == []
        assert not [p for p in folder.iterdir() if p.name.startswith(".edgekit")
                    or p.name.startswith(".e1")]
    assert recorder.counters()["failed"] == 1 and len(said) == 1 and "not kept" in said[0]


class _SlowRecorder(ClipRecorder):
    """A recorder that takes 40 ms a frame (a loaded machine), noting the raw bytes of the
    frames waiting for it each time the loop hands one over."""

    def __init__(self, *args: object) -> None:
        self.waiting: list[int] = []
        self.recorded = 0
        super().__init__(*args)

    def frame(self, item: Item) -> None:
        super().frame(item)
        self.waiting.append(sum(m[2].nbytes for m in list(self._queue.queue)
                                if m[0] == "frame"))

    def _frame(self, captured: float, image: object) -> None:
        time.sleep(0.04)
        self.recorded += 1
        super()._frame(captured, image)


def test_a_slow_recorder_holds_at_most_the_backlog_budget_and_counts_what_it_skips(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    budget = 3 << 20  # three VGA frames
    monkeypatch.setattr(clips_module, "BACKLOG_BYTES", budget)
    assert clips_module.BACKLOG_BYTES <= 8 << 20  # the default stays a few MB too
    clock, said = _Clock(), []
    recorder = _SlowRecorder(ClipOptions(folder=str(tmp_path), pre_s=0.5, post_s=0.5,
                                         max_disk=parse_size("50M")), FPS, said.append)
    frames = 120
    big = np.zeros((480, 640, 3), np.uint8)  # 0.9 MB raw, as a VGA camera's frames
    events = []
    for index in range(frames):
        item = clock.item(index)
        item.frame.image = big + np.uint8(index % 200)
        recorder.frame(item)
        for kind, when in (("new", 10), ("end", 100)):
            if index == when:
                events.append(_event(kind, 1, clock, index, len(events) + 1))
                recorder.event(events[-1])
    recorder.close()
    assert max(recorder.waiting) <= budget  # 64 frames would have been 59 MB
    counters = recorder.counters()
    assert counters["skipped_frames"] > 0
    assert counters["skipped_frames"] + recorder.recorded == frames
    assert f"{counters['skipped_frames']} frames skipped" in counters_line(counters)
    clips = clip_files(tmp_path)  # the clip still holds every frame the recorder took
    assert [p.name for p in clips] == ["e1-7-track1.avi"] and counters["clips"] == 1
    assert 0 < video_frames(clips[0]) <= recorder.recorded and not said


@pytest.mark.slow
def test_run_writes_a_clip_per_object(detector_bundle: Path, demo_clip: Path,
                                      tmp_path: Path) -> None:
    events, clips = tmp_path / "events.jsonl", tmp_path / "clips"
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--events", events,
                     "--clips", f"{clips}?pre=1&post=0.5&max_disk=200M")
    assert result.returncode == 0, result.stderr
    assert "clips: " in result.stdout
    written = [json.loads(line) for line in events.read_text().splitlines()]
    named = {e["clip"] for e in written}
    assert None not in named
    files = {p.name for p in clip_files(clips)}
    assert files == named and len(files) >= 3
    assert not [p for p in clips.iterdir() if p.name.startswith(".")]
    for path in clip_files(clips):
        assert video_frames(path) >= 3 and cv2.VideoCapture(str(path)).read()[0]
