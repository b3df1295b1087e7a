"""Issue 20, round two: one backend shared by threads, a stream that freezes, validation
folders whose sorted order the model contradicts, TFLite runtimes that hang or are not one."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgekit.backends import Concurrency, open_backend
from edgekit.errors import EdgekitError

# --- one backend, several threads ------------------------------------------------------------

ARTIFACTS = [("tflite", "lenet5_digits_fp32.tflite"), ("tflite", "lenet5_digits_int8.tflite"),
             ("onnxruntime", "lenet5_digits.onnx"), ("openvino", "lenet5_digits_fp32.xml")]
THREADS = 4
ROUNDS = 150  # inferences per thread


def _distinct_inputs(infer: Callable[[np.ndarray], list[np.ndarray]], shape: tuple[int, ...],
                     count: int = 16) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` inputs and their single-threaded outputs, no two outputs alike (a swapped
    answer then always shows)."""
    rng = np.random.default_rng(0)
    inputs, outputs = [], []
    while len(inputs) < count:
        x = rng.random(shape, dtype=np.float32)
        y = [o.copy() for o in infer(x)]
        if all(not np.allclose(y[0], seen[0], atol=1e-4) for seen in outputs):
            inputs.append(x)
            outputs.append(y)
    return inputs, outputs


def _hammer(call: Callable[[np.ndarray], list[np.ndarray]], inputs: list[np.ndarray],
            expected: list[list[np.ndarray]]) -> list[str]:
    """THREADS threads, each feeding its own share of ``inputs`` ROUNDS times through
    ``call``; what went wrong (another input's output, or an error)."""
    wrong: list[str] = []
    start = threading.Barrier(THREADS)

    def work(k: int) -> None:
        mine = list(range(k, len(inputs), THREADS))
        start.wait()
        for n in range(ROUNDS):
            i = mine[n % len(mine)]
            try:
                got = call(inputs[i])
            except Exception as exc:  # a busy runtime's error is as wrong as a swapped answer
                wrong.append(f"thread {k}, input {i}: {type(exc).__name__}: {exc}")
                continue
            if not all(np.allclose(g, e, atol=1e-5) for g, e in zip(got, expected[i])):
                wrong.append(f"thread {k}, input {i}: another input's output")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wrong


@pytest.mark.parametrize("backend,name", ARTIFACTS)
def test_one_backend_shared_by_threads_answers_each_its_own(lenet_bundle: Path, backend: str,
                                                            name: str) -> None:
    with open_backend(backend, lenet_bundle / name) as b:
        inputs, expected = _distinct_inputs(b.infer, b.inputs[0].shape)
        wrong = _hammer(b.infer, inputs, expected)
    assert not wrong, f"{len(wrong)} of {THREADS * ROUNDS} wrong, e.g. {wrong[:3]}"


@pytest.mark.parametrize("backend,name", ARTIFACTS)
@pytest.mark.parametrize("requests", [1, 2])
def test_start_from_several_threads_answers_each_its_own(lenet_bundle: Path, backend: str,
                                                         name: str, requests: int) -> None:
    """``start`` (one request: the default wrapper; two: a request pool or OpenVINO's infer
    requests) from several threads, mixed with ``infer`` on the same backend."""
    with open_backend(backend, lenet_bundle / name,
                      concurrency=Concurrency("latency", requests)) as b:
        inputs, expected = _distinct_inputs(b.infer, b.inputs[0].shape)
        calls = iter(range(10**9))

        def call(x: np.ndarray) -> list[np.ndarray]:  # every other call through start
            return b.start(x).result() if next(calls) % 2 else b.infer(x)
        wrong = _hammer(call, inputs, expected)
    assert not wrong, f"{len(wrong)} of {THREADS * ROUNDS} wrong, e.g. {wrong[:3]}"


def test_edgetpu_backend_shares_the_same_lock(lenet_bundle: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The Edge TPU backend up to the device: its interpreter with no delegate (no Coral here)
    on the CPU int8 model, through the same infer path, from several threads."""
    from edgekit.backends.edgetpu import EdgeTPUBackend

    monkeypatch.setattr(EdgeTPUBackend, "_check_model", lambda self, info: None)
    monkeypatch.setattr(EdgeTPUBackend, "_delegates", lambda self: [])
    with EdgeTPUBackend(lenet_bundle / "lenet5_digits_int8.tflite") as b:
        inputs, expected = _distinct_inputs(b.infer, b.inputs[0].shape)
        wrong = _hammer(b.infer, inputs, expected)
    assert not wrong, f"{len(wrong)} of {THREADS * ROUNDS} wrong, e.g. {wrong[:3]}"


def test_close_from_another_thread_waits_for_the_inference(lenet_bundle: Path) -> None:
    """A backend closed while threads use it: each call gives its own answer or says the
    backend was closed; none crashes in the runtime."""
    b = open_backend("openvino", lenet_bundle / "lenet5_digits_fp32.xml")
    inputs, expected = _distinct_inputs(b.infer, b.inputs[0].shape)
    outcomes: list[str] = []

    def work(k: int) -> None:
        for n in range(400):
            i = (k + n * THREADS) % len(inputs)
            try:
                got = b.infer(inputs[i])
            except EdgekitError as exc:
                outcomes.append("closed" if "was closed" in str(exc) else f"error: {exc}")
                return
            outcomes.append("ok" if np.allclose(got[0], expected[i][0], atol=1e-5) else "wrong")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    b.close()
    for thread in threads:
        thread.join()
    assert set(outcomes) <= {"ok", "closed"}, [o for o in outcomes if o not in ("ok", "closed")]
