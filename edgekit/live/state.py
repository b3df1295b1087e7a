"""What the loop hands the live view, and how: the newest frame and the figures.

The loop's sink stage (``ServeSink``) runs on the loop's thread and must stay cheap; the
server's threads read what it leaves, safely:

- ``FrameHub``: the loop offers a frame (a reference, no copy) only while a viewer waits for
  one and at most ``max_fps`` times a second; one encoder thread draws the task's result
  (boxes, top-k bars, a mask) and encodes it to JPEG once; every waiting viewer gets those
  bytes. Each viewer takes the newest frame when it is ready for one: nothing queues, a slow
  viewer skips frames, a stalled one asks for none.
- ``Figures``: latency histograms and counters (for /metrics) kept as frames finish, and the
  figures of ``edgekit run --json`` (for /stats.json) taken on the loop's thread when a
  request asks for them, at most every ``STATS_MAX_AGE_S``, so they agree with each other.
  Whether frames still come (``liveness``) is worked out when a request asks, on its own
  thread: a loop whose source froze takes no figures, and must not look as if it ran.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.loop.pipeline import Item, LoopStats
from edgekit.loop.sinks import Sink, drawn, overlay_lines

STREAM_FPS = 30.0  # at most this many frames a second are encoded for viewers
JPEG_QUALITY = 80
STATS_MAX_AGE_S = 1.0  # /stats.json figures are at most this old (the page asks every 1 s)
STATS_WAIT_S = 1.0  # how long a request waits for the loop to take fresh figures
PENDING_MAX = 256  # frames whose timings wait to be counted into the histograms at once
END_TO_END = "end to end"
MAX_CLASS_SERIES = 50  # /metrics: per-class series kept apart; the rest count as one
OTHER_CLASSES = "(other)"
STALL_AFTER_S = 2.0  # no frame for this long (or three frame intervals, if longer): stalled
FPS_WINDOW_S = 5.0  # the recent FPS counts the frames of the last few seconds
BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Encoded:
    """One annotated frame as JPEG: ``seq`` counts encodes, ``frame`` is the loop's index."""

    seq: int
    jpeg: bytes
    frame: int


NOTHING = Encoded(0, b"", -1)


class FrameHub:
    """The newest annotated frame as JPEG: encoded once, on demand, never queued."""

    def __init__(self, max_fps: float = STREAM_FPS, quality: int = JPEG_QUALITY) -> None:
        self.interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self.quality = quality
        self.encoded = 0  # frames encoded so far
        self.encode_cpu_ns = 0  # the encoder thread's CPU time for them (boxes drawn + JPEG)
        self._cond = threading.Condition()
        self._raw: tuple[Item, list[str]] | None = None
        self._raw_seq = 0
        self._newest = NOTHING
        self._waiting = 0
        self._offered_at = -math.inf
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def wanted(self) -> bool:
        """Whether the loop should hand over this frame: a viewer waits and it is time."""
        return self._waiting > 0 and time.monotonic() - self._offered_at >= self.interval

    def offer(self, item: Item, lines: list[str]) -> None:
        """The loop's newest frame (a reference: the loop makes a new array per frame) and
        its result."""
        with self._cond:
            self._raw = (item, lines)
            self._raw_seq += 1
            self._offered_at = time.monotonic()
            self._cond.notify_all()

    def wait(self, after: int, timeout: float) -> Encoded | None:
        """The newest JPEG once it is newer than encode ``after``; None on timeout or close."""
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._newest.seq > after or self._closed, timeout)
            finally:
                self._waiting -= 1
            return self._newest if self._newest.seq > after else None

    def latest(self, timeout: float) -> Encoded | None:
        """A fresh frame if the loop gives one within ``timeout``, else the last one, if any."""
        newest = self._newest
        return self.wait(newest.seq, timeout) or (newest if newest.seq else None)

    def encode_forever(self) -> None:
        """The encoder thread: each frame offered is drawn and encoded once."""
        import cv2

        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._raw is not None or self._closed)
                if self._closed:
                    return
                (item, lines), seq = self._raw, self._raw_seq
                self._raw = None
            started = time.thread_time_ns()
            ok, data = cv2.imencode(".jpg", drawn(item, lines), params)
            if not ok:
                continue
            with self._cond:
                self._newest = Encoded(seq, data.tobytes(), item.frame.index)
                self.encoded += 1
                self.encode_cpu_ns += time.thread_time_ns() - started
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# --- figures: /stats.json and /metrics -------------------------------------------------------

class Histogram:
    """Counts per latency bucket (Prometheus style), for a run of any length."""

    def __init__(self, bounds_s: Sequence[float] = BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        self.bounds_ns = np.array([int(b * 1e9) for b in bounds_s], np.int64)
        self.counts = np.zeros(len(bounds_s) + 1, np.int64)  # the last: above every bound
        self.total_ns = 0
        self.count = 0

    def observe(self, samples_ns: Sequence[int]) -> None:
        """Add samples (in a batch: one numpy pass, not a Python loop per frame)."""
        values = np.asarray(samples_ns, np.int64)
        # searchsorted(left): the first bound >= the value, as Prometheus' le ("<=") counts.
        self.counts += np.bincount(np.searchsorted(self.bounds_ns, values),
                                   minlength=len(self.counts))
        self.total_ns += int(values.sum())
        self.count += len(values)

    def copy(self) -> Histogram:
        other = Histogram(self.bounds_s)
        other.counts, other.total_ns, other.count = self.counts.copy(), self.total_ns, self.count
        return other


def finite(value: Any) -> Any:
    """JSON without NaN (which browsers' JSON.parse refuses): None instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class Figures:
    """What the sink measured, handed safely from the loop's thread to the server's."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.stages: dict[str, Histogram] = {}
        self.end_to_end = Histogram()
        self.frames = 0
        self._pending: dict[str, list[int]] = {}  # timings not yet in the histograms
        self._done: deque[float] = deque(maxlen=60)  # when recent frames finished
        self._latency: deque[int] = deque(maxlen=30)  # end to end, recent frames
        self._snapshot: dict[str, Any] = {}
        self._taken_at = -math.inf
        self._started = time.monotonic()
        self.wanted = False  # read by the loop without the lock: a hint, set under it
        self.classes: dict[str, int] = {}  # frames that showed each class (MAX_CLASS_SERIES)

    def add(self, item: Item) -> None:
        """A finished frame (every stage timed, ``done_ns`` set; one that never finished, as
        when a later sink failed on it, is left out). Its timings are kept aside and counted
        into the histograms a few hundred at a time, or when /metrics asks."""
        if not item.done_ns:
            return
        with self._cond:
            for name, ns in item.timings_ns.items():
                self._pending.setdefault(name, []).append(ns)
            self._pending.setdefault(END_TO_END, []).append(item.latency_ns)
            self._latency.append(item.latency_ns)
            self.frames += 1
            self._count_classes(item)
            self._done.append(time.monotonic())
            if len(self._pending[END_TO_END]) >= PENDING_MAX:
                self._fold()

    def _count_classes(self, item: Item) -> None:
        """Frames per class shown (the lock held): the first ``MAX_CLASS_SERIES`` classes by
        name, the rest together as ``OTHER_CLASSES``, so /metrics stays small."""
        if item.result is None:
            return
        for name in item.result.label_counts():
            key = name if name in self.classes or len(self.classes) < MAX_CLASS_SERIES \
                else OTHER_CLASSES
            self.classes[key] = self.classes.get(key, 0) + 1

    def class_frames(self) -> dict[str, int]:
        with self._cond:
            return dict(self.classes)

    def _fold(self) -> None:
        """Count the pending timings into the histograms (the lock held)."""
        for name, values in self._pending.items():
            hist = self.end_to_end if name == END_TO_END else \
                self.stages.setdefault(name, Histogram())
            hist.observe(values)
        self._pending = {}

    def recent_fps(self) -> float:
        """Frames a second over the last few seconds, up to now: it falls as soon as frames
        come later than they did, and is 0 after ``FPS_WINDOW_S`` without one."""
        return _recent_fps(self._recent_done(), time.monotonic())

    def _recent_done(self) -> list[float]:
        with self._cond:
            return list(self._done)

    def liveness(self, running: bool = True, reconnecting: bool = False) -> dict[str, Any]:
        """Whether frames still come, as of now: ``state`` ("starting", "running", "stalled",
        "reconnecting" or "ended"), ``since_frame_s`` (since the last frame reached the sink,
        or since the start) and ``fps_recent``."""
        done, now = self._recent_done(), time.monotonic()
        since = now - (done[-1] if done else self._started)
        if not running:
            state = "ended"
        elif reconnecting:
            state = "reconnecting"
        elif since > _stall_after(done):
            state = "stalled"
        else:
            state = "running" if done else "starting"
        return {"state": state, "since_frame_s": round(since, 2),
                "fps_recent": _recent_fps(done, now)}

    def recent_latency_ms(self) -> float | None:
        with self._cond:
            recent = sorted(self._latency)
        return recent[len(recent) // 2] / 1e6 if recent else None

    def histograms(self) -> tuple[int, dict[str, Histogram], Histogram]:
        with self._cond:
            self._fold()
            return (self.frames, {k: v.copy() for k, v in self.stages.items()},
                    self.end_to_end.copy())

    def publish(self, snapshot: dict[str, Any]) -> None:
        with self._cond:
            self._snapshot, self._taken_at, self.wanted = snapshot, time.monotonic(), False
            self._cond.notify_all()

    def snapshot(self, max_age: float = STATS_MAX_AGE_S,
                 wait: float = STATS_WAIT_S) -> dict[str, Any]:
        """Figures at most ``max_age`` old, asked of the loop; the last ones if it is silent."""
        with self._cond:
            asked = time.monotonic()
            if asked - self._taken_at > max_age:
                self.wanted = True
                self._cond.wait_for(lambda: self._taken_at >= asked, wait)
            return self._snapshot


def _interval(done: Sequence[float]) -> float:
    """The mean time between the frames ``done`` (0 with fewer than two)."""
    return (done[-1] - done[0]) / (len(done) - 1) if len(done) > 1 else 0.0


def _stall_after(done: Sequence[float]) -> float:
    """How long without a frame counts as a stall: ``STALL_AFTER_S``, or three frame
    intervals of a slower source."""
    return max(STALL_AFTER_S, 3 * _interval(done))


def _recent_fps(done: Sequence[float], now: float) -> float:
    """FPS of the frames finished in the last ``FPS_WINDOW_S`` (times ``done``) as of ``now``:
    a frame later than the usual interval stretches the span, so the figure falls while the
    source is silent instead of holding its last value."""
    recent = [t for t in done if now - t <= FPS_WINDOW_S]
    if len(recent) < 2:
        return 0.0
    late = max(0.0, now - recent[-1] - _interval(recent))
    span = recent[-1] - recent[0] + late
    return (len(recent) - 1) / span if span > 0 else 0.0



class LiveState:
    """What the loop leaves for the live view to show: its frames, its figures, what runs, and
    the viewers' counters. The loop's thread writes it (through ``ServeSink``); the server's
    threads read it. It knows no server: ``edgekit.live.server.LiveView`` is one of these with
    an HTTP server around it."""

    def __init__(self, max_fps: float = STREAM_FPS, quality: int = JPEG_QUALITY) -> None:
        self.frames = FrameHub(max_fps, quality)
        self.figures = Figures()
        self.info: dict[str, Any] = {}  # what runs: source, artifact, backend, device
        self.source_stats: Any = None  # the source's live counters (dropped, decode failures)
        self.viewers = 0
        self.send_cpu_ns = 0  # the stream threads' CPU time, sending frames to viewers
        self.sink: Any = None  # the loop's ServeSink, once the loop runs
        self.more_metrics: list[Callable[[str], list[str]]] = []  # /metrics lines (backend)
        self._lock = threading.Lock()

    def joined(self, delta: int) -> None:
        with self._lock:
            self.viewers += delta

    def sent(self, cpu_ns: int) -> None:
        with self._lock:
            self.send_cpu_ns += cpu_ns

    def stats(self) -> dict[str, Any]:
        """/stats.json: the loop's figures (as ``edgekit run --json`` gives them), live."""
        figures = self.figures.snapshot() or {"frames": 0, "running": True}
        live = self.figures.liveness(figures.get("running", True),
                                     bool(getattr(self.source_stats, "reconnecting", False)))
        return finite({**self.info, **figures, **live, "viewers": self.viewers,
                        "frames_encoded": self.frames.encoded})


class ServeSink(Sink):
    """Hands the loop's frames and figures to the live view's state, cheaply, on the loop's
    thread."""

    def __init__(self, view: LiveState, source: Any, model: Any) -> None:
        backend = model.backend
        self.view, self.source = view, source
        self.name, self.task = backend.name, model.task
        artifact = str(model.artifact) if model.artifact else ""
        view.info.update({
            "source": source.description, "artifact": artifact,
            "artifact_name": artifact.rsplit("/", 1)[-1], "format": model.format or "",
            "backend": backend.describe(), "backend_name": backend.name,
            "device": str(getattr(backend, "device", "")),
            "runtime": str(getattr(backend, "runtime", "")), "task": model.task})
        view.source_stats = source.stats
        self._previous: Item | None = None
        self._stats: LoopStats | None = None
        self.cpu_ns = 0
        view.sink = self

    def write(self, item: Item, stats: LoopStats) -> None:
        started = time.thread_time_ns()
        if self._previous is not None:  # finished now: its sink time and latency are known
            self.view.figures.add(self._previous)
        self._previous, self._stats = item, stats
        if self.view.figures.wanted:
            self.view.figures.publish(self._snapshot(stats, item, running=True))
        if self.view.frames.wanted():
            self.view.frames.offer(item, overlay_lines(stats, self.name))
        self.cpu_ns += time.thread_time_ns() - started  # what the view costs the loop's thread

    def _snapshot(self, stats: LoopStats, item: Item | None, running: bool) -> dict[str, Any]:
        """The figures ``edgekit run --json`` prints, as they stand now."""
        figures = stats.to_dict()
        if running:  # these are only filled in when the loop ends
            wall = (time.perf_counter_ns() - stats.started_ns) / 1e9 if stats.started_ns else 0
            s = self.source.stats
            figures.update(wall_s=wall, fps=stats.running_fps(), dropped=s.dropped,
                           decode_failures=s.decode_failures, reconnects=s.reconnects)
        latest = {"frame": item.frame.index, "task": self.task,
                  **(item.result.record() if item.result is not None else {})} \
            if item is not None else None
        recent = {**stats.recent(), "end_to_end": self.view.figures.recent_latency_ms()}
        return {**figures, "running": running, "fps_recent": self.view.figures.recent_fps(),
                "recent_ms": recent, "latest": latest}

    def close(self) -> None:
        """The loop has ended: the last frame counts, and the final figures stay on show."""
        if self._previous is not None:
            self.view.figures.add(self._previous)
        if self._stats is not None:
            self.view.figures.publish(self._snapshot(self._stats, self._previous, running=False))
        self._previous = None
