"""The pipelined loop: capture -> preprocess -> infer -> postprocess -> sink.

Each stage runs in its own thread and hands frames on through a bounded queue,
so the stages overlap (the runtimes and OpenCV release the GIL) while results
stay in frame order (one worker per stage, FIFO queues). Every stage is timed
with ``perf_counter_ns``; end-to-end latency runs from capture to the sink.
``pipelined=False`` runs the same stages one after another, for comparison.

A stage that can hold several frames at once (the infer stage with ``--requests N``:
``Stage.begin``/``Stage.end`` around a ``Backend.start``) gets two threads: one starts
frames while fewer than ``depth`` are in flight, the other collects them in the order
started and hands them on, so results stay in frame order.

End-to-end latency is split into the stages' own time and the time frames waited in the
queues between them (``LoopStats.queue_ns``): a file read as fast as possible queues
frames in front of the slowest stage, a source paced at its frame rate does not.

A failure in any stage stops the capture, lets the frames already in flight
finish and is raised to the caller. Ctrl-C stops at once: the frame being written
reaches every sink (the sink stage defers the interrupt), frames still in flight are
dropped, and the workers end within a fraction of a second.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.backends.base import Pending
from edgekit.helpers import interrupt
from edgekit.helpers.limits import MAX_QUEUE, whole
from edgekit.helpers.stats import Latency, Samples
from edgekit.loop.sources import Frame, Source
from edgekit.preprocess import Transform
from edgekit.tasks.base import FrameResult

STAGES = ("capture", "preprocess", "infer", "postprocess", "sink")
_END = object()


@dataclass
class Item:
    """One frame's journey through the loop: each stage fills in its fields."""

    frame: Frame
    timings_ns: dict[str, int] = field(default_factory=dict)  # stage name -> its time
    tensor: np.ndarray | None = None  # preprocess: the model's input
    transform: Transform | None = None  # preprocess: how frame pixels map onto the input
    outputs: list[np.ndarray] | None = None  # infer: the model's outputs, in Keras's order
    result: FrameResult | None = None  # postprocess: the task's result for this frame
    done_ns: int = 0

    @property
    def latency_ns(self) -> int:
        """End to end: from the frame's capture (its timestamp) to the end of the sink."""
        return self.done_ns - self.frame.captured_ns


@dataclass
class Stage:
    """A named step: ``run(item)`` fills in the item's fields.

    ``begin(item)`` and ``end(item, pending)``, when given, split ``run`` around an
    inference in flight: the pipelined loop keeps up to ``depth`` frames begun at once.
    The stage's time is then the inference's own, from its start to its completion."""

    name: str
    run: Callable[[Item], None]
    begin: Callable[[Item], Pending] | None = None
    end: Callable[[Item, Pending], None] | None = None
    depth: int = 1


@dataclass
class LoopStats:
    """What a run measured, in memory that does not grow with the run's length."""

    frames: int = 0
    wall_s: float = 0.0
    stage_ns: dict[str, Samples] = field(default_factory=dict)
    latency_ns: Samples = field(default_factory=Samples)  # end to end, capture to sink
    queue_ns: Samples = field(default_factory=Samples)  # end to end less the stages' own time
    dropped: int = 0
    decode_failures: int = 0
    reconnects: int = 0
    pipelined: bool = True
    started_ns: int = 0

    def running_fps(self) -> float:
        """Frames per second so far (while the loop runs)."""
        elapsed = (time.perf_counter_ns() - self.started_ns) / 1e9
        return self.frames / elapsed if self.started_ns and elapsed > 0 else 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def stage(self, name: str) -> Latency:
        samples = self.stage_ns.get(name)
        return Latency.from_samples(samples) if samples else Latency.from_ns(())

    def end_to_end(self) -> Latency:
        return Latency.from_samples(self.latency_ns)

    def queue_wait(self) -> Latency:
        """Per frame, the time it spent waiting between stages (end to end less its stages)."""
        return Latency.from_samples(self.queue_ns)

    def record(self, item: Item) -> None:
        self.frames += 1
        for name, ns in item.timings_ns.items():
            self.stage_ns.setdefault(name, Samples()).add(ns)
        latency = item.latency_ns  # from the end of capture (the frame's timestamp)
        self.latency_ns.add(latency)
        own = sum(ns for name, ns in item.timings_ns.items() if name != "capture")
        self.queue_ns.add(max(0, latency - own))

    def recent(self) -> dict[str, float]:
        """Median milliseconds of the last frames per stage (for on-frame display)."""
        import statistics

        return {name: statistics.median(ns.recent()) / 1e6
                for name, ns in self.stage_ns.items() if ns.count}

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "wall_s": self.wall_s, "fps": self.fps,
            "pipelined": self.pipelined, "dropped": self.dropped,
            "decode_failures": self.decode_failures, "reconnects": self.reconnects,
            "stages_ms": {name: self.stage(name).to_dict() for name in self.stage_ns},
            "end_to_end_ms": self.end_to_end().to_dict(),
            "queue_wait_ms": self.queue_wait().to_dict(),
        }


def check_queue_size(size: int) -> int:
    """Frames between two stages: 1 to MAX_QUEUE (each holds a whole frame), else UsageError."""
    return whole(size, "queue_size (frames between two stages)", high=MAX_QUEUE,
                 why="each place holds a whole camera frame")


class Pipeline:
    """Run ``stages`` on every frame of ``source``, pipelined or one after another.

    ``stats``: where the run's figures go (give one when a stage shows them while the loop
    runs, as the sinks do); a fresh one otherwise.
    """

    def __init__(self, source: Source, stages: Sequence[Stage], *, queue_size: int = 2,
                 pipelined: bool = True, stats: LoopStats | None = None) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage after capture")
        self.source = source
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.queue_size = check_queue_size(queue_size)
        self.pipelined = pipelined
        self.stats = stats if stats is not None else LoopStats()
        self.stats.pipelined = pipelined
        self._stop = threading.Event()
        self._abort = threading.Event()  # Ctrl-C: no frame in flight is finished
        self._error: BaseException | None = None
        self._failed_at = sys.maxsize  # frame index where a stage failed

    def stop(self) -> None:
        """Ask the loop to finish: no new frames are captured."""
        self._stop.set()

    def run(self, max_frames: int | None = None,
            on_result: Callable[[Item], None] | None = None) -> LoopStats:
        """Run until the source ends, ``max_frames`` frames are done, or ``stop()``."""
        start = time.perf_counter()
        self.stats.started_ns = time.perf_counter_ns()
        try:
            if self.pipelined:
                self._run_pipelined(max_frames, on_result)
            else:
                self._run_sequential(max_frames, on_result)
        finally:
            self.stats.wall_s = time.perf_counter() - start
            s = self.source.stats
            self.stats.dropped, self.stats.decode_failures = s.dropped, s.decode_failures
            self.stats.reconnects = s.reconnects
        return self.stats

    def _capture(self) -> Item | None:
        self.source.wait_turn()
        start = time.perf_counter_ns()
        frame = self.source.read()
        if frame is None:
            return None
        item = Item(frame)
        item.timings_ns["capture"] = time.perf_counter_ns() - start
        return item

    @staticmethod
    def _apply(stage: Stage, item: Item) -> None:
        start = time.perf_counter_ns()
        stage.run(item)
        # a stage may time itself (the IMX500's infer: the sensor's own DNN time)
        item.timings_ns.setdefault(stage.name, time.perf_counter_ns() - start)

    def _finish(self, item: Item, on_result: Callable[[Item], None] | None) -> None:
        item.done_ns = time.perf_counter_ns()
        self.stats.record(item)
        if on_result is not None:
            on_result(item)

    def _run_sequential(self, max_frames: int | None,
                        on_result: Callable[[Item], None] | None) -> None:
        done = 0
        while not self._stop.is_set() and (max_frames is None or done < max_frames):
            item = self._capture()
            if item is None:
                return
            for stage in self.stages[:-1]:
                self._apply(stage, item)
            with interrupt.deferred():  # Ctrl-C: this frame reaches every sink or none
                for stage in self.stages[-1:]:
                    self._apply(stage, item)
                self._finish(item, on_result)
            done += 1

    def _run_pipelined(self, max_frames: int | None,
                       on_result: Callable[[Item], None] | None) -> None:
        queues = [queue.Queue(self.queue_size) for _ in self.stages]
        threads = [threading.Thread(target=self._capture_worker, args=(queues[0], max_frames),
                                    name="edgekit-capture", daemon=True)]
        for i, stage in enumerate(self.stages[:-1]):
            if stage.begin is not None and stage.end is not None and stage.depth > 1:
                threads += self._in_flight_workers(stage, queues[i], queues[i + 1])
                continue
            threads.append(threading.Thread(target=self._stage_worker,
                                            args=(stage, queues[i], queues[i + 1]),
                                            name=f"edgekit-{stage.name}", daemon=True))
        for thread in threads:
            thread.start()
        last = self.stages[-1]
        try:
            while True:  # the last stage runs here, so Ctrl-C lands in this thread
                try:
                    item = queues[-1].get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                if self._keeps(item):
                    try:
                        with interrupt.deferred():  # Ctrl-C: every sink gets it, or none
                            self._apply(last, item)
                            self._finish(item, on_result)
                    except KeyboardInterrupt:
                        raise
                    except BaseException as exc:
                        self._fail(exc, item)
        except BaseException:  # Ctrl-C: the workers drop what they hold and end at once
            self._abort.set()
            self._stop.set()
            for thread in threads:
                thread.join(timeout=1)
            raise
        for thread in threads:
            thread.join(timeout=5)
        if self._error is not None:
            raise self._error

    def _fail(self, exc: BaseException, item: Item | None = None) -> None:
        """Record the first failure; ``item`` None means capture failed (after every frame)."""
        if self._error is None:
            self._error = exc
            self._failed_at = item.frame.index if item is not None else sys.maxsize
        self._stop.set()

    def _keeps(self, item: Item) -> bool:
        """After a failure, frames ahead of the failed one still finish; later ones are dropped."""
        return self._error is None or item.frame.index < self._failed_at

    def _capture_worker(self, out: queue.Queue, max_frames: int | None) -> None:
        done = 0
        try:
            while not self._stop.is_set() and (max_frames is None or done < max_frames):
                item = self._capture()
                if item is None:
                    break
                self._put(out, item)
                done += 1
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._put(out, _END, force=True)

    def _stage_worker(self, stage: Stage, inbox: queue.Queue, out: queue.Queue) -> None:
        while not self._abort.is_set():
            try:
                item = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                self._put(out, _END, force=True)
                return
            if not self._keeps(item):
                continue  # a stage failed on an earlier frame: this one is dropped
            try:
                self._apply(stage, item)
            except BaseException as exc:
                self._fail(exc, item)
                continue
            self._put(out, item)

    def _in_flight_workers(self, stage: Stage, inbox: queue.Queue,
                           out: queue.Queue) -> list[threading.Thread]:
        """Two threads for a stage with frames in flight: one begins each frame once one of
        ``depth`` slots is free, the other ends them in the order begun."""
        slots = threading.Semaphore(stage.depth)
        begun: queue.SimpleQueue = queue.SimpleQueue()

        def start() -> None:
            while not self._abort.is_set():
                if not slots.acquire(timeout=0.1):
                    continue
                item = _END
                while not self._abort.is_set():
                    try:
                        item = inbox.get(timeout=0.1)
                        break
                    except queue.Empty:
                        continue
                if item is _END or self._abort.is_set():
                    begun.put((_END, None))
                    return
                if not self._keeps(item):
                    slots.release()
                    continue
                try:
                    begun.put((item, stage.begin(item)))
                except BaseException as exc:
                    slots.release()
                    self._fail(exc, item)

        def finish() -> None:
            while not self._abort.is_set():
                try:
                    item, pending = begun.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    self._put(out, _END, force=True)
                    return
                try:
                    stage.end(item, pending)
                    item.timings_ns[stage.name] = pending.done_ns - pending.started_ns
                except BaseException as exc:
                    self._fail(exc, item)
                    continue
                finally:
                    slots.release()
                if self._keeps(item):
                    self._put(out, item)

        return [threading.Thread(target=start, name=f"edgekit-{stage.name}-start", daemon=True),
                threading.Thread(target=finish, name=f"edgekit-{stage.name}-end", daemon=True)]

    def _put(self, q: queue.Queue, item: object, force: bool = False) -> None:
        """Put, but give up on a frame (not on the end marker) once the loop is stopping, and on
        anything once it is aborted (Ctrl-C)."""
        while not self._abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set() and not force:
                    return
