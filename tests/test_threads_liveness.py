"""Issue 20, round two: one backend shared by threads, a stream that freezes, validation
folders whose sorted order the model contradicts, TFLite runtimes that hang or are not one."""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from live_view import get, running_view, wait_for
from mjpeg import MjpegStream

from edgekit.backends import Concurrency, open_backend
from edgekit.errors import EdgekitError, SourceLost
from edgekit.live.state import Figures
from edgekit.loop.sources import STREAM_TIMEOUT_S, LiveSource

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


# --- liveness: a stream that freezes ---------------------------------------------------------

def test_the_recent_fps_falls_and_the_state_says_stalled_when_frames_stop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    figures = Figures()
    assert figures.liveness()["state"] == "starting"
    figures._done.extend(95.0 + 0.1 * i for i in range(50))  # 10 a second until 99.9
    now[0] = 99.95
    live = figures.liveness()
    assert live["state"] == "running" and live["fps_recent"] == pytest.approx(10, rel=0.01)
    falling = []
    for t in (100.5, 101.0, 101.5, 102.5, 105.0):
        now[0] = t
        falling.append(figures.liveness())
    assert [f["fps_recent"] for f in falling] == sorted((f["fps_recent"] for f in falling),
                                                        reverse=True)
    assert falling[0]["fps_recent"] < 9.5 and falling[-1]["fps_recent"] == 0
    assert [f["state"] for f in falling] == ["running"] * 3 + ["stalled"] * 2
    assert falling[-1]["since_frame_s"] == pytest.approx(5.1)
    assert figures.liveness(reconnecting=True)["state"] == "reconnecting"
    assert figures.liveness(running=False)["state"] == "ended"
    assert figures.recent_fps() == 0  # /metrics' edgekit_fps, the same figure


def test_a_slow_camera_is_not_called_stalled_between_its_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    figures = Figures()
    figures._done.extend([96.0, 97.0, 98.0, 99.0])  # 1 a second
    now[0] = 101.5  # 2.5 s since the last: within three of its intervals
    assert figures.liveness()["state"] == "running"
    now[0] = 102.5
    assert figures.liveness()["state"] == "stalled"


def test_a_frozen_stream_shows_as_stalled_within_seconds() -> None:
    """The camera's process stops and its connection stays open: /stats.json says so within
    seconds (state, seconds since the last frame, FPS falling), then that it reconnects; the
    page shows the state."""
    stream = MjpegStream(fps=10)
    source = LiveSource(stream.url, reconnect_delays=(0.5,) * 5, timeout_s=3.0)
    try:
        with running_view(camera=source) as run:
            def stats() -> dict:
                return json.loads(get(run.view.port, "/stats.json").body)

            assert wait_for(lambda: run.pipeline.stats.frames > 20)
            before = stats()
            assert before["state"] == "running" and before["fps_recent"] > 5
            assert before["since_frame_s"] < 1
            stream.freeze()
            frozen = time.monotonic()
            assert wait_for(lambda: stats()["state"] == "stalled", timeout=5)
            stalled = stats()
            assert time.monotonic() - frozen < 6
            assert stalled["since_frame_s"] >= 2
            assert stalled["fps_recent"] < 0.8 * before["fps_recent"]
            assert stalled["running"] is True  # the loop runs, waiting for frames
            # The read times out (3 s here): the stream has failed and is reopened.
            assert wait_for(lambda: stats()["state"] == "reconnecting", timeout=6)
            assert source.stats.reconnecting
            script = get(run.view.port, "/app.js").body.decode()
            assert "stalled: no frame for" in script and "s.state" in script
            source.close()  # ends the loop
    finally:
        stream.stop()


def test_a_frozen_stream_is_given_up_after_the_documented_tries() -> None:
    stream = MjpegStream(fps=20)
    source = LiveSource(stream.url, reconnect_delays=(0.05, 0.1, 0.2), timeout_s=1.0)
    try:
        assert source.read() is not None
        stream.freeze()
        started = time.perf_counter()
        with pytest.raises(SourceLost, match="did not come back after 3 reconnect attempts"):
            for _ in range(10**6):
                source.read()
        # one read that times out, then 3 tries, each its delay and at most one timeout
        assert time.perf_counter() - started < 1.0 + 3 * 1.0 + 0.35 + 3.0
    finally:
        source.close()
        stream.stop()


def test_a_stream_that_freezes_with_the_defaults_fails_its_read_within_the_timeout() -> None:
    """With the defaults, a frozen stream counts as a failure after STREAM_TIMEOUT_S (not
    FFmpeg's 30 s): the source starts reconnecting."""
    stream = MjpegStream(fps=20)
    source = LiveSource(stream.url)
    try:
        assert source.read() is not None
        stream.freeze()
        frozen = time.monotonic()
        assert wait_for(lambda: source.stats.reconnecting, timeout=STREAM_TIMEOUT_S + 3)
        assert time.monotonic() - frozen > STREAM_TIMEOUT_S - 1
    finally:
        stream.stop()
        source.close()


# --- TFLite runtimes that hang, are not a Python, or have no runtime -------------------------

def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_each_skipped_runtime_is_said_and_a_hanging_one_is_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from edgekit.convert import runtimes

    pid = tmp_path / "sleep.pid"
    hang = _script(tmp_path / "hang", f"sleep 1000 & echo $! > {pid}; wait\n")
    not_python = _script(tmp_path / "hello", "echo hello\n")
    empty = _script(tmp_path / "bare", "echo '[]'\n")  # answers: no runtime there
    data = tmp_path / "notes.txt"
    data.write_text("not a program\n")
    missing = tmp_path / "gone" / "python"
    monkeypatch.setenv("EDGEKIT_TFLITE_PYTHONS",
                       os.pathsep.join([hang, not_python, empty, str(data), str(missing)]))
    monkeypatch.setattr(runtimes, "FIND_TIMEOUT_S", 2)
    said: list[str] = []
    started = time.monotonic()
    found = runtimes.find_runtimes(said.append)
    assert time.monotonic() - started < 15
    assert [python for python, _, _ in found] == [sys.executable]  # this one still checked
    assert len(said) == 5, said
    why = {line.split(" not checked: ")[0].split("TFLite runtimes in ")[1].split(" (from")[0]:
           line.split(" not checked: ")[1] for line in said}
    assert why[hang] == "no answer within 2 s (it hangs)"
    assert why[not_python].startswith("not a Python that answers (exit 0")
    assert why[empty].startswith("it has no TFLite runtime")
    assert why[str(data)].startswith("cannot be run (Permission denied")
    assert why[str(missing)] == "no such file"
    assert all("(from $EDGEKIT_TFLITE_PYTHONS)" in line for line in said)
    sleeper = int(pid.read_text())
    assert wait_for(lambda: not Path(f"/proc/{sleeper}").exists() or
                    Path(f"/proc/{sleeper}/stat").read_text().split()[2] == "Z", timeout=5), \
        "the hanging Python's child was left running"


@pytest.mark.slow
def test_convert_says_which_runtimes_it_skipped(tmp_path: Path) -> None:
    from conftest import LENET, run_cli

    hang = _script(tmp_path / "hang", "sleep 1000\n")
    not_python = _script(tmp_path / "hello", "echo hello\n")
    started = time.monotonic()
    result = run_cli("convert", LENET / "lenet5_digits.keras", "-o", tmp_path / "bundle",
                     "--formats", "tflite-fp32",
                     env={"EDGEKIT_TFLITE_PYTHONS": f"{hang}:{not_python}"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 240
    for path, why in ((hang, "no answer within 30 s"), (not_python, "not a Python")):
        line = f"TFLite runtimes in {path} (from $EDGEKIT_TFLITE_PYTHONS) not checked: {why}"
        assert line in result.stderr and f"warning: {line}" in result.stdout


# --- validation folders whose sorted order the model contradicts -----------------------------

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _answers(truth: np.ndarray, right: float, seed: int = 0) -> np.ndarray:
    """A model's top-1 answers: ``truth`` for a share ``right`` of the samples, else random."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(truth)) < right, truth, rng.integers(0, 10, len(truth)))


def test_one_to_one_finds_the_assignment_that_explains_the_answers() -> None:
    from edgekit.data.datacheck import one_to_one

    counts = np.array([[0, 9, 1], [8, 0, 0], [1, 0, 7]])
    assert one_to_one(counts) == [1, 0, 2]
    assert one_to_one(np.eye(4, dtype=int) * 5) == [0, 1, 2, 3]


def test_labels_in_sorted_order_that_the_model_contradicts_are_refused() -> None:
    from edgekit.data.datacheck import check_folder_order

    names = sorted(WORDS)  # eight, five, four, nine, one, seven, six, three, two, zero
    digit = np.repeat(np.arange(10), 6)  # what each image shows
    assumed = np.array([names.index(WORDS[d]) for d in digit])  # its folder's sorted position
    with pytest.raises(EdgekitError) as refused:
        check_folder_order(names, assumed, _answers(digit, 0.95), "val/")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("val/: ")
    assert "eight=0, five=1" in message and "zero -> 0, one -> 1" in message
    assert "eight -> 8, nine -> 9" in message and "--labels FILE" in message
    assert "zero, one, two, three, four, five, six, seven, eight, nine)" in message


def test_labels_the_model_agrees_with_or_cannot_judge_are_kept() -> None:
    from edgekit.data.datacheck import check_folder_order

    names = [f"c{i}" for i in range(10)]
    truth = np.repeat(np.arange(10), 6)
    check_folder_order(names, truth, _answers(truth, 0.95), "val/")  # the sorted order holds
    check_folder_order(names, truth, _answers(truth, 0.3, seed=1), "val/")  # a weak model
    check_folder_order(names, truth, _answers(truth, 0.0, seed=2), "val/")  # guesses
    check_folder_order(names, truth, np.full(len(truth), -1), "val/")  # NaN scores


@pytest.mark.slow
def test_convert_refuses_folder_names_the_model_contradicts(tmp_path: Path) -> None:
    """A model without a card or labels, validation folders named zero..nine: their sorted
    order is not the model's; convert says so, and with --labels in its order it scores."""
    import shutil

    import cv2
    from conftest import LENET, assert_clean_error, run_cli

    bare = tmp_path / "bare.keras"
    shutil.copy(LENET / "lenet5_digits.keras", bare)
    val = np.load(LENET / "val.npz")
    for digit, word in enumerate(WORDS):
        (tmp_path / "val" / word).mkdir(parents=True)
        for i in np.flatnonzero(val["y"] == digit)[:6]:
            cv2.imwrite(str(tmp_path / "val" / word / f"{i}.png"),
                        np.rint(val["x"][i, ..., 0] * 255).astype(np.uint8))
    common = ["--val", tmp_path / "val", "--formats", "tflite-fp32"]
    refused = run_cli("convert", bare, "-o", tmp_path / "out", *common)
    assert_clean_error(refused, "contradict", "eight=0", "zero -> 0", "--labels")
    assert not (tmp_path / "out").exists()
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(WORDS) + "\n")
    scored = run_cli("convert", bare, "-o", tmp_path / "out", *common, "--labels", labels,
                     "--json", "-q")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["validation"]["keras_accuracy"] > 0.9


@pytest.mark.slow
def test_a_run_on_a_frozen_stream_shows_it_stalled_then_ends_in_one_line(
        detector_bundle: Path, tmp_path: Path) -> None:
    """`edgekit run --serve` on a camera whose process stops: the live view says stalled within
    seconds, and the run ends after the documented tries (about 40 s), keeping what it wrote."""
    import re
    import subprocess

    stream = MjpegStream(fps=10)
    jsonl = tmp_path / "frames.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "run", str(detector_bundle), "--source", stream.url,
         "--serve", "127.0.0.1:0", "--save", str(jsonl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        def port() -> int | None:
            found = re.search(r"live view: http://\S+?:(\d+)/", "".join(lines))
            return int(found[1]) if found else None

        assert wait_for(lambda: port() or process.poll() is not None, timeout=90), lines
        assert port(), "".join(lines)

        def stats() -> dict:
            return json.loads(get(port(), "/stats.json").body)

        assert wait_for(lambda: stats()["frames"] > 20, timeout=90)
        assert stats()["state"] == "running"
        stream.freeze()
        frozen = time.monotonic()
        assert wait_for(lambda: stats()["state"] in ("stalled", "reconnecting"), timeout=8)
        assert time.monotonic() - frozen < 8
        process.wait(timeout=120)
        took = time.monotonic() - frozen
    finally:
        stream.stop()
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    errors = [line for line in lines if line.startswith("error: ")]
    assert process.returncode == 1 and len(errors) == 1, "".join(lines)
    assert "did not come back after 5 reconnect attempts" in errors[0]
    assert "Traceback" not in "".join(lines)
    assert 5 + 7 < took < 60, took  # the read timeout, the five tries: not 188 s
    assert len(jsonl.read_text().splitlines()) > 20  # what it wrote is kept
