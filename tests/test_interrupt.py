"""Ctrl-C at any moment of any command: it ends within 2 s with exit 130 and one line
("interrupted"), its child processes are gone, and nothing is half-made or replaced.

Each test starts the real `edgekit` command, waits for a moment named by its progress (or for
its output to start), and sends SIGINT to that process alone, as a test harness or `kill -INT`
does (a terminal's Ctrl-C also reaches the children, which is easier).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
from conftest import LENET

from edgekit.helpers.interrupt import descendants

LIMIT_S = 2.0


class Running:
    """A command in a subprocess whose stderr is read as it comes."""

    def __init__(self, *args: str | Path, env: dict | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgekit", *map(str, args)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.out: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((self.process.stderr, self.lines),
                                              (self.process.stdout, self.out))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                raise AssertionError(f"ended (exit {self.process.returncode}) before {text!r}: "
                                     f"{self.lines[-3:]}")
            time.sleep(0.02)
        raise AssertionError(f"{text!r} never came: {self.lines[-3:]}")

    def interrupt(self) -> tuple[int, float, list[int]]:
        """SIGINT; (exit code, seconds to exit, descendants that were alive at the signal)."""
        children = descendants(self.process.pid)
        start = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        seconds = time.monotonic() - start
        for reader in self._readers:
            reader.join(timeout=10)
        return self.process.returncode, seconds, children


def alive(pids: list[int]) -> list[int]:
    """The pids still running (a zombie waiting for init to reap it is gone)."""
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(pid)
    return found


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_interrupted(run: Running, code: int, seconds: float, children: list[int]) -> None:
    errors = [line for line in run.lines if line.strip() and not line.startswith("  ")]
    assert code == 130, run.lines[-5:]
    assert seconds <= LIMIT_S, f"took {seconds:.2f} s"
    assert errors == ["interrupted"], run.lines[-5:]
    assert not alive(children), f"children left: {alive(children)}"


def test_the_watchdog_ends_a_command_python_cannot_interrupt(tmp_path: Path) -> None:
    """Where KeyboardInterrupt cannot be raised (here: code that defers it for 30 s, as a
    runtime busy in C++ does), the watchdog removes the temporary files, kills the children
    and exits 130 after its grace period."""
    partial = tmp_path / ".bundle.partial"
    code = f"""
import subprocess, sys, time
from pathlib import Path
from edgekit.helpers import interrupt
interrupt.install()
Path({str(partial)!r}).mkdir()
interrupt.remember({str(partial)!r})
child = subprocess.Popen(["sleep", "60"])
with interrupt.deferred():
    print(child.pid, flush=True)
    time.sleep(30)
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    child = int(process.stdout.readline())
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and err.strip() == "interrupted"
    assert time.monotonic() - start <= LIMIT_S
    assert not partial.exists() and not alive([child])


def test_a_folder_still_being_written_is_removed(tmp_path: Path) -> None:
    """The hard exit removes a temporary folder while another thread keeps writing files into
    it (a runtime's C++ serialising a model ignores Ctrl-C): once removed, nothing is left at
    its path or beside it. Removing it in place left the files written meanwhile."""
    import threading

    from edgekit.helpers import interrupt

    partial = tmp_path / ".bundle.partial-x"
    partial.mkdir()
    (partial / "model.tflite").write_bytes(b"x" * 1000)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            try:
                (partial / f"model_{n % 50}.xml").write_bytes(b"<net/>" * 200)
            except OSError:
                pass
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.05)
    try:
        interrupt._remove(partial)
    finally:
        stop.set()
        writer.join()
    assert list(tmp_path.iterdir()) == []


def test_what_the_main_thread_says_after_the_hard_exit_began_is_not_shown(
        tmp_path: Path) -> None:
    """A runtime that ignores Ctrl-C goes on, and fails on the folder the hard exit removed
    ("writing .../validation.npz failed: No such file or directory", once in CI): that error
    is not the command's outcome, so the user sees "interrupted" alone."""
    partial = tmp_path / ".bundle.partial"
    code = f"""
import sys, time
from pathlib import Path
from edgekit.helpers import interrupt
interrupt.install()
partial = Path({str(partial)!r})
partial.mkdir()
interrupt.remember(partial)
with interrupt.deferred():  # Ctrl-C held off, as by a runtime busy in C++
    print("ready", flush=True)
    while partial.exists():
        pass
    print("error: writing validation.npz failed", flush=True)
    print("error: writing validation.npz failed", file=sys.stderr, flush=True)
    time.sleep(30)
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert (out.strip(), err.strip()) == ("", "interrupted")
    assert not partial.exists()


@pytest.mark.parametrize("error", ["ConversionError('exporting the Keras model failed')",
                                   "SystemError('Objects/listobject.c:338: bad argument')"])
def test_an_error_after_ctrl_c_is_reported_as_the_interrupt(error: str) -> None:
    """TensorFlow turns a KeyboardInterrupt into a SystemError (once, in a rerun of the
    convert moments: "exporting the Keras model as a SavedModel failed: Objects/listobject.c:
    338: bad argument to internal function", exit 1): once Ctrl-C came, the command says
    "interrupted" and exits 130."""
    code = f"""
import sys
from edgekit.helpers import interrupt
from edgekit.cli.app import cli, main
from edgekit.errors import ConversionError

@cli.command("boom")
def boom() -> None:
    interrupt._seen()  # what the signal handler records
    raise {error}

sys.argv = ["edgekit", "boom"]
main()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr.strip()) == (130, "interrupted")


def test_a_second_ctrl_c_ends_it_at_once(tmp_path: Path) -> None:
    """A second Ctrl-C, later than REPEAT_S after the first (a sooner one is the same
    request), makes the hard exit without waiting for the grace period."""
    from edgekit.helpers.interrupt import REPEAT_S

    code = """
import time
from edgekit.helpers import interrupt
interrupt.GRACE_S = 20
interrupt.install()
with interrupt.deferred():
    print("ready", flush=True)
    time.sleep(30)
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.readline()
    process.send_signal(signal.SIGINT)
    time.sleep(REPEAT_S + 0.1)
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130 and time.monotonic() - start < 0.8


CONVERT_MOMENTS = ["loading", "exporting a batch-1 SavedModel", "tflite-int8: converting",
                   "onnx: converting", "openvino-fp32: converting",
                   "openvino-fp32: measuring fidelity", "checking which TFLite runtimes"]


@pytest.mark.slow
@pytest.mark.parametrize("moment", CONVERT_MOMENTS)
def test_convert(moment: str, lenet_bundle: Path, tmp_path: Path) -> None:
    """--force over a complete bundle: the old bundle stays whole, nothing is left beside it."""
    out = Path(shutil.copytree(lenet_bundle, tmp_path / "out" / "bundle"))
    before = tree(out.parent)
    temp = tmp_path / "tmp"
    temp.mkdir()
    run = Running("convert", LENET / "lenet5_digits.keras", "-o", out, "--force", "--formats",
                  "tflite-int8,onnx,openvino-fp32", env={"TMPDIR": str(temp)})
    run.wait_for(moment)
    time.sleep(0.2)  # into the step, not at its first line
    assert_interrupted(run, *run.interrupt())
    assert tree(out.parent) == before
    assert not [p.name for p in temp.iterdir() if p.name.startswith("edgekit")]


@pytest.mark.slow
def test_bench_mid_row(lenet_bundle: Path) -> None:
    run = Running("bench", lenet_bundle, "--backends", "openvino,onnxruntime", "--duration",
                  "30")
    run.wait_for(": running")
    time.sleep(1.0)  # the worker is loading or timing
    code, seconds, children = run.interrupt()
    assert children, "a worker process was running"
    assert_interrupted(run, code, seconds, children)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--capture", "pipeline=off"]], ids=["pipelined",
                                                                           "sequential"])
def test_run_keeps_equal_outputs(mode: list[str], detector_bundle: Path, demo_clip: Path,
                                 tmp_path: Path) -> None:
    """The loop's outputs are closed properly on Ctrl-C: the video and the JSONL hold the
    same frames (today they differed by one)."""
    video, lines = tmp_path / "o.avi", tmp_path / "o.jsonl"
    run = Running("run", detector_bundle, "--source", demo_clip, "--capture", "repeat=on", "--save",
                  video,
                  "--save", lines, *mode)
    deadline = time.monotonic() + 120
    while not any(p.read_bytes().count(b"\n") >= 120  # the JSONL being written
                  for p in tmp_path.glob(".o.partial-*.jsonl")):
        assert time.monotonic() < deadline and run.process.poll() is None, run.lines
        time.sleep(0.05)
    assert_interrupted(run, *run.interrupt())
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(records) > 90
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.avi", "o.jsonl"]


def longer_clip(clip: Path, out: Path, times: int) -> Path:
    """The clip ``times`` over, as one video."""
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 15, (width, height))
    for _ in range(times):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return out


@pytest.mark.slow
def test_compare_mid_backend(detector_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    clip = longer_clip(demo_clip, tmp_path / "long.avi", 10)
    run = Running("compare", detector_bundle, "--source", clip,
                  "--backends", "openvino,onnxruntime")
    run.wait_for("onnxruntime: running")
    time.sleep(0.5)
    assert_interrupted(run, *run.interrupt())


@pytest.mark.slow
def test_classify_many_images(lenet_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    cap = cv2.VideoCapture(str(demo_clip))
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), cap.read()[1])
    run = Running("classify", lenet_bundle, *[image] * 3000, "--json")
    time.sleep(1.5)
    assert run.process.poll() is None, "classify ended before Ctrl-C"
    assert_interrupted(run, *run.interrupt())
