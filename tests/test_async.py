"""Several inferences in flight: Backend.start on the real CPU runtimes, the default wrapper,
the loop's infer stage holding N frames in order, queue wait and --realtime pacing."""
from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.backends import (
    Backend,
    BackendStatus,
    Concurrency,
    Pending,
    backend_class,
    open_backend,
    register,
)
from edgekit.backends.base import cpu_count, shared_threads
from edgekit.bundle.tensors import TensorInfo
from edgekit.errors import InferenceError, UsageError
from edgekit.loop.pipeline import Item, Pipeline, Stage
from edgekit.loop.sources import Frame, Source, paced

ARTIFACTS = [("tflite", "lenet5_digits_fp32.tflite"), ("onnxruntime", "lenet5_digits.onnx"),
             ("openvino", "lenet5_digits_fp32.xml")]


def _inputs(shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    return [np.random.default_rng(i).random(shape, dtype=np.float32) for i in range(count)]


@pytest.mark.parametrize("backend,name", ARTIFACTS)
def test_requests_in_flight_give_infers_results_in_order(lenet_bundle: Path, backend: str,
                                                         name: str) -> None:
    with open_backend(backend, lenet_bundle / name, threads=1) as sync:
        xs = _inputs(sync.inputs[0].shape, 9)
        expected = [sync.infer(x)[0] for x in xs]
    with open_backend(backend, lenet_bundle / name,
                      concurrency=Concurrency("throughput", 3)) as b:
        assert b.requests == 3 and "throughput mode, 3 requests" in b.describe()
        pending = [b.start(x) for x in xs]
        for x in xs:
            x[:] = np.nan  # start copied its inputs: the caller may reuse its arrays
        got = [p.result()[0] for p in pending]
        assert all(p.done() and p.done_ns >= p.started_ns for p in pending)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.parametrize("backend,name", ARTIFACTS[:2])
def test_one_runtime_per_request_with_the_threads_shared_out(
        lenet_bundle: Path, backend: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[str] = set()
    cls = backend_class(backend)
    run_on = cls._run_on

    def spy(self, runtime, inputs):
        seen.add(threading.current_thread().name)
        return run_on(self, runtime, inputs)
    monkeypatch.setattr(cls, "_run_on", spy)
    with open_backend(backend, lenet_bundle / name, threads=4,
                      concurrency=Concurrency("throughput", 2)) as b:
        assert b.threads_per_request == 2 and "threads 2 per request" in b.describe()
        for p in [b.start(x) for x in _inputs(b.inputs[0].shape, 6)]:
            p.result()
    assert seen == {f"edgekit-{backend}-request-0", f"edgekit-{backend}-request-1"}


def test_openvino_throughput_defaults_to_its_optimal_requests(lenet_bundle: Path) -> None:
    with open_backend("openvino", lenet_bundle / "lenet5_digits_fp32.xml",
                      concurrency=Concurrency("throughput")) as b:
        optimal = int(b._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        assert b.requests == optimal >= 1
        assert b.streams == int(b._compiled.get_property("NUM_STREAMS"))
        assert str(b._compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    with open_backend("openvino", lenet_bundle / "lenet5_digits_fp32.xml",
                      concurrency=Concurrency("throughput", 2, streams=2)) as b:
        assert b.streams == 2 and b.requests == 2 and "2 streams" in b.describe()
    with open_backend("openvino", lenet_bundle / "lenet5_digits_fp32.xml") as b:
        assert b.requests == 1 and b._slots == []
        assert str(b._compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"


def test_openvino_requests_in_flight_end_cleanly(lenet_bundle: Path) -> None:
    """Opening, using and dropping OpenVINO with requests in flight never hangs the process
    (AsyncInferQueue's Python callbacks deadlocked against the teardown at exit)."""
    code = f"""
import numpy as np
from edgekit.backends import Concurrency, open_backend
for i in range(15):
    b = open_backend("openvino", {str(lenet_bundle / "lenet5_digits_fp32.xml")!r},
                     concurrency=Concurrency("throughput", 3))
    pending = [b.start(np.zeros(b.inputs[0].shape, np.float32)) for _ in range(7)]
    if i % 2:
        b.close()  # with results not collected: close waits for them
    else:
        [p.result() for p in pending]
    del b, pending
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_failing_request_raises_from_result(coral: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, runtime, inputs):
        raise InferenceError("the runtime failed")
    monkeypatch.setattr(backend_class("tflite"), "_run_on", broken)
    with open_backend("tflite", coral / "mobilenet_v1_0.25_128_quant.tflite",
                      concurrency=Concurrency("throughput", 2)) as b:
        pending = b.start(np.zeros(b.inputs[0].shape, np.uint8))
        with pytest.raises(InferenceError, match="the runtime failed"):
            pending.result()


class Doubler(Backend):
    """A backend with no asynchronous path of its own: start is the default wrapper."""

    name = "doubler"
    suffixes = (".npy",)

    def __init__(self, model, *, device=None, threads=None):
        super().__init__(model, device=device, threads=threads)
        self.inputs = self.outputs = (TensorInfo("x", (1, 3), "float32"),)
        self.runtime = "doubler 1"
        self.calls = 0

    @classmethod
    def probe(cls) -> BackendStatus:
        return BackendStatus("doubler", True)

    def _invoke(self, inputs):
        self.calls += 1
        return [inputs[0] * 2]


def test_the_default_wrapper_runs_at_once_one_request(tmp_path: Path) -> None:
    register("doubler", Doubler)
    model = tmp_path / "m.npy"
    np.save(model, np.zeros((1, 3), np.float32))
    with open_backend("doubler", model, concurrency=Concurrency("throughput", 4)) as b:
        assert b.requests == 1 and b.concurrency.requests == 4
        pending = b.start(np.ones((1, 3), np.float32))
        assert pending.done() and b.calls == 1  # ran at once, on this thread
        np.testing.assert_array_equal(pending.result()[0], np.full((1, 3), 2.0))
        with pytest.raises(UsageError, match="has no execution streams"):
            open_backend("doubler", model, concurrency=Concurrency("throughput", 2, 2))


def test_threads_are_shared_out_between_requests() -> None:
    assert shared_threads(None, 1) is None and shared_threads(3, 1) == 3
    assert shared_threads(4, 2) == 2 and shared_threads(3, 4) == 1
    assert shared_threads(None, 2) == max(1, cpu_count() // 2)


class Counter(Source):
    def __init__(self, count: int, fps: float | None = None) -> None:
        super().__init__()
        self.count, self.next, self.fps = count, 0, fps

    def read(self) -> Frame | None:
        if self.next >= self.count:
            return None
        self.next += 1
        return Frame(self.next - 1, np.zeros((2, 2, 3), np.uint8), time.perf_counter_ns())


def _later(item: Item) -> Pending:
    """An inference that completes on another thread after a random while (out of order)."""
    pending = Pending(lambda raw: raw).waiting()
    value = item.frame.index
    threading.Timer(random.random() * 0.01, pending.complete, [[np.array([value])]]).start()
    return pending


def _end(item: Item, pending: Pending) -> None:
    item.outputs = pending.result()


def test_frames_in_flight_come_out_in_frame_order() -> None:
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def begin(item: Item) -> Pending:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        return _later(item)

    def end(item: Item, pending: Pending) -> None:
        _end(item, pending)
        with lock:
            in_flight[0] -= 1

    stage = Stage("infer", lambda item: None, begin, end, depth=3)
    done: list[Item] = []
    stats = Pipeline(Counter(40), [stage, Stage("sink", lambda item: None)],
                     queue_size=4).run(on_result=done.append)
    assert [i.frame.index for i in done] == list(range(40))
    assert [int(i.outputs[0][0]) for i in done] == list(range(40))
    assert 1 <= most[0] <= 3 and stats.stage("infer").count == 40


def test_a_failed_inference_in_flight_stops_the_loop() -> None:
    def end(item: Item, pending: Pending) -> None:
        if item.frame.index == 5:
            raise InferenceError("frame 5 failed")
        _end(item, pending)

    done: list[Item] = []
    stage = Stage("infer", lambda item: None, _later, end, depth=2)
    with pytest.raises(InferenceError, match="frame 5"):
        Pipeline(Counter(50), [stage, Stage("sink", lambda item: None)]).run(
            on_result=done.append)
    assert [i.frame.index for i in done] == list(range(5))


def test_queue_wait_is_end_to_end_less_the_stages() -> None:
    done: list[Item] = []
    stats = Pipeline(Counter(10), [Stage("infer", lambda item: time.sleep(0.002)),
                                   Stage("sink", lambda item: None)]).run(on_result=done.append)
    waits = sorted(i.latency_ns - i.timings_ns["infer"] - i.timings_ns["sink"] for i in done)
    assert stats.queue_wait().count == 10
    assert stats.queue_wait().max == pytest.approx(waits[-1] / 1e6, rel=1e-6)
    assert "queue_wait_ms" in stats.to_dict()


def test_paced_source_delivers_at_its_frame_rate() -> None:
    source = paced(Counter(6, fps=100.0), "counter", None)
    assert source.fps == 100.0 and "paced at 100 FPS" in source.description
    times = []
    while (frame := source.read()) is not None:
        times.append(frame.captured_ns)
    assert len(times) == 6
    assert times[-1] - times[0] >= 5 * 10_000_000  # frame k no earlier than k / fps
    assert paced(Counter(2), "folder", 25.0).fps == 25.0
    with pytest.raises(UsageError, match="no frame rate of its own.*`realtime` 30"):
        paced(Counter(2), "folder", None)


def test_the_pipelined_loop_leaves_a_core_to_the_other_stages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipelined with one request and no --threads, the runtime gets every core but one;
    what the user asked, the sequential loop and several requests keep their threads."""
    import edgekit.loop.run as run

    monkeypatch.setattr(run, "cpu_count", lambda: 4)
    assert run.loop_threads(None, pipelined=True) == 3
    assert run.loop_threads(2, pipelined=True) == 2
    assert run.loop_threads(None, pipelined=False) is None
    assert run.loop_threads(None, pipelined=True, requests=2) is None
    monkeypatch.setattr(run, "cpu_count", lambda: 1)
    assert run.loop_threads(None, pipelined=True) is None
