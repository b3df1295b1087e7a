"""The pipelined loop's own logic, and every kind of source, with real files and streams."""
from __future__ import annotations

import random
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg import MjpegStream

from edgekit.errors import InvalidData, UsageError
from edgekit.helpers.stats import Latency, Samples
from edgekit.loop.pipeline import Item, LoopStats, Pipeline, Stage
from edgekit.loop.sources import (
    Frame,
    ImageFolder,
    LiveSource,
    Source,
    SourceLost,
    VideoFile,
    open_source,
)


class Counter(Source):
    """Numbered blank frames, as fast as asked: for the pipeline's own logic."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count, self.next = count, 0

    def read(self) -> Frame | None:
        if self.next >= self.count:
            return None
        self.next += 1
        return Frame(self.next - 1, np.zeros((2, 2, 3), np.uint8), time.perf_counter_ns())


def _jittery(name: str, seen: dict[int, list[str]] | None = None) -> Stage:
    rng = random.Random(name)

    def run(item: Item) -> None:
        time.sleep(rng.random() * 0.002)
        if seen is not None:
            seen.setdefault(item.frame.index, []).append(name)
    return Stage(name, run)


@pytest.mark.parametrize("pipelined", [True, False])
def test_results_in_frame_order_with_every_stage_timed(pipelined: bool) -> None:
    seen: dict[int, list[str]] = {}
    stages = [_jittery(n, seen) for n in ("preprocess", "infer", "postprocess", "sink")]
    done: list[Item] = []
    stats = Pipeline(Counter(40), stages, pipelined=pipelined).run(on_result=done.append)
    assert [i.frame.index for i in done] == list(range(40))
    assert all(seen[i.frame.index] == ["preprocess", "infer", "postprocess", "sink"]
               for i in done)
    assert stats.frames == 40 and stats.fps > 0 and stats.pipelined == pipelined
    for item in done:
        assert set(item.timings_ns) == {"capture", "preprocess", "infer", "postprocess", "sink"}
        assert item.latency_ns >= sum(item.timings_ns.values()) - item.timings_ns["capture"]
    assert stats.stage("infer").count == 40 and stats.end_to_end().p50 > 0


@pytest.mark.parametrize("pipelined", [True, False])
def test_max_frames_and_stop(pipelined: bool) -> None:
    stats = Pipeline(Counter(100), [_jittery("infer")], pipelined=pipelined).run(max_frames=7)
    assert stats.frames == 7
    # stop() from a stage: the frames already captured finish, no new one is taken.
    pipeline: Pipeline | None = None

    def stop_at_ten(item: Item) -> None:
        if item.frame.index == 10:
            pipeline.stop()

    pipeline = Pipeline(Counter(10_000), [Stage("infer", stop_at_ten), _jittery("sink")],
                        pipelined=pipelined, queue_size=2)
    done: list[Item] = []
    stats = pipeline.run(on_result=done.append)
    assert 11 <= stats.frames <= 11 + 2 * 2 + 1, stats.frames  # what was in flight finishes
    assert [i.frame.index for i in done] == list(range(stats.frames))


def test_a_pipeline_takes_its_stages_at_construction() -> None:
    figures = LoopStats()
    pipeline = Pipeline(Counter(3), [_jittery("sink")], pipelined=False, stats=figures)
    assert pipeline.run() is figures and figures.frames == 3 and not figures.pipelined
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline(Counter(3), [])


@pytest.mark.parametrize("failing", ["infer", "sink"])
def test_a_failing_stage_stops_the_loop_and_raises(failing: str) -> None:
    def boom(item: Item) -> None:
        if item.frame.index == 5:
            raise RuntimeError(f"{failing} broke")

    stages = [Stage(n, boom if n == failing else (lambda item: None))
              for n in ("preprocess", "infer", "postprocess", "sink")]
    pipeline = Pipeline(Counter(10_000), stages)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=f"{failing} broke"):
        pipeline.run()
    assert time.perf_counter() - start < 5
    assert pipeline.stats.frames == 5  # the frames ahead of the failed one all finished


@pytest.fixture(scope="module")
def numbered_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames whose grey level encodes the frame number, MJPG."""
    path = tmp_path_factory.mktemp("clips") / "numbered.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), i * 8, np.uint8))
    writer.release()
    return path


def _read_all(source: Source) -> list[Frame]:
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    return frames


def test_video_file_every_frame_in_order(numbered_clip: Path) -> None:
    with VideoFile(numbered_clip) as source:
        frames = _read_all(source)
    assert [f.index for f in frames] == list(range(30))
    assert [round(f.image.mean() / 8) for f in frames] == list(range(30))
    assert source.stats.decode_failures == 0 and source.stats.uncertain_from is None


def test_truncated_video_completes_and_counts(numbered_clip: Path, tmp_path: Path) -> None:
    data = numbered_clip.read_bytes()
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: starts[20] + 100])  # ends inside frame 20
    with open_source(cut) as source:
        frames = _read_all(source)
    assert 18 <= len(frames) <= 20
    assert source.stats.decode_failures == 30 - len(frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [round(f.image.mean() / 8) for f in frames] == list(range(len(frames)))


def test_corrupt_frames_are_skipped_and_counted(numbered_clip: Path, tmp_path: Path) -> None:
    data = bytearray(numbered_clip.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    for k in range(starts[10] + 2, starts[10] + 300):  # wipe frame 10's JPEG data
        data[k] = 0
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    with open_source(bad) as source:
        frames = _read_all(source)
    assert 20 <= len(frames) < 30 and source.stats.decode_failures == 30 - len(frames)
    assert source.stats.uncertain_from == 10
    assert [round(f.image.mean() / 8) for f in frames][:10] == list(range(10))


def test_unsupported_codec_and_missing_paths(numbered_clip: Path, tmp_path: Path) -> None:
    patched = tmp_path / "codec.avi"
    patched.write_bytes(numbered_clip.read_bytes().replace(b"MJPG", b"XV00", 2))
    with pytest.raises(InvalidData, match="codec 'XV00'"):
        open_source(patched)
    with pytest.raises(InvalidData, match="no such file or folder"):
        open_source(tmp_path / "nothing.avi")
    (tmp_path / "notes.avi").write_text("not a video")
    with pytest.raises(InvalidData, match="cannot read it"):
        open_source(tmp_path / "notes.avi")


def test_no_camera_at_an_index() -> None:
    if Path("/dev/video7").exists():
        pytest.skip("this machine has a /dev/video7")
    with pytest.raises(InvalidData, match=r"no camera at index 7 \(/dev/video7 does not exist\)"):
        open_source("7")


def test_repeat_plays_a_file_or_folder_again_with_indices_counting_on(
        numbered_clip: Path, tmp_path: Path) -> None:
    with open_source(numbered_clip, repeat=True) as source:
        frames = [source.read() for _ in range(75)]
    assert [f.index for f in frames] == list(range(75))
    assert [round(f.image.mean() / 8) for f in frames] == [i % 30 for i in range(75)]
    assert source.passes == 3 and source.stats.decoded == 75 and source.stats.expected is None
    assert source.description == "video file numbered.avi, 30 frames, repeated"
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((10, 10, 3), i, np.uint8))
    (tmp_path / "2.jpg").write_bytes(b"\xff\xd8 broken")
    with open_source(tmp_path, repeat=True) as folder:
        names = [folder.read().name for _ in range(5)]
    assert names == ["0.png", "1.png", "0.png", "1.png", "0.png"]
    assert folder.stats.decode_failures == 2  # the broken file, once per finished pass
    for live in ("0", "rtsp://camera.invalid/stream"):
        with pytest.raises(UsageError, match="^repeat loops a video file or a folder"):
            open_source(live, repeat=True)


def test_image_folder_skips_unreadable_files(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((10, 10, 3), i, np.uint8))
    (tmp_path / "1b.jpg").write_bytes(b"\xff\xd8 broken")
    source = ImageFolder(tmp_path)
    frames = _read_all(source)
    assert [f.name for f in frames] == ["0.png", "1.png", "2.png"]
    assert source.stats.decode_failures == 1 and source.stats.expected == 4


def test_live_source_drops_stale_frames_instead_of_queueing() -> None:
    stream = MjpegStream(fps=60)
    try:
        source = LiveSource(stream.url)
        taken = []
        for _ in range(10):
            frame = source.read()
            taken.append(frame.index)
            time.sleep(0.1)  # a slow loop: ~6 frames arrive per frame taken
        source.close()
    finally:
        stream.stop()
    assert source.stats.dropped >= 20
    assert all(b - a > 1 for a, b in zip(taken, taken[1:]))  # always the newest frame


def test_live_source_that_vanishes_is_retried_then_lost() -> None:
    stream = MjpegStream(fps=30)
    source = LiveSource(stream.url, reconnect_delays=(0.05, 0.1, 0.2))
    assert source.read() is not None
    stream.stop()
    start = time.perf_counter()
    with pytest.raises(SourceLost, match="did not come back after 3 reconnect attempts"):
        for _ in range(1000):
            source.read()
    assert time.perf_counter() - start < 10
    source.close()


def test_frames_captured_before_a_lost_camera_still_finish() -> None:
    class Vanishing(Counter):
        def read(self) -> Frame | None:
            if self.next == 12:
                raise SourceLost("camera gone")
            return super().read()

    done: list[Item] = []
    slow = Stage("infer", lambda item: time.sleep(0.005))
    with pytest.raises(SourceLost):
        Pipeline(Vanishing(100), [slow, Stage("sink", lambda item: None)]).run(
            on_result=done.append)
    assert [i.frame.index for i in done] == list(range(12))


def test_repeat_stops_on_a_source_that_never_decodes(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    source = open_source(tmp_path, repeat=True)
    assert source.read() is None  # not an endless loop


def test_loop_statistics_stay_bounded_in_memory() -> None:
    """A loop that runs for days keeps a fixed number of samples; count, min, max and mean
    stay exact and percentiles come from a uniform sample."""
    samples = Samples(capacity=1000)
    values = np.random.default_rng(0).integers(1_000, 2_000_000, 50_000)
    for v in values:
        samples.add(int(v))
    assert len(samples.values()) == 1000 and samples.count == 50_000
    exact, kept = Latency.from_ns(values), Latency.from_samples(samples)
    assert (kept.count, kept.min, kept.max) == (exact.count, exact.min, exact.max)
    assert kept.mean == pytest.approx(exact.mean)
    assert kept.p50 == pytest.approx(exact.p50, rel=0.1)
    assert samples.recent() == [int(v) for v in values[-30:]]
