"""`edgekit run --serve` end to end with the real detector: a second `edgekit run` reads the
stream, the Pi camera module through the Picamera2 stand-in, and each bad input in one line."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, assert_clean_error, run_cli
from live_view import get, wait_for
from mjpeg import MjpegStream

pytestmark = pytest.mark.slow

TOKEN = "cli-test-token-0123456789abcdef"
STANDINS = ROOT / "tests" / "standins"


@dataclass
class Served:
    process: subprocess.Popen
    url: str = ""
    stderr: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(re.search(r":(\d+)/", self.url)[1])

    def stats(self) -> dict:
        return json.loads(get(self.port, "/stats.json", {"Authorization": f"Bearer {TOKEN}"})
                          .body)


@contextmanager
def serving(*args: str | Path, env: dict | None = None) -> Iterator[Served]:
    """``edgekit run ... --serve`` in the background, until the block ends (then Ctrl-C)."""
    process = subprocess.Popen([sys.executable, "-m", "edgekit", "run", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    served = Served(process)

    def read() -> None:
        for line in process.stderr:
            served.stderr.append(line)
            found = re.match(r"live view: (http://\S+?/)", line)
            if found:
                served.url = found[1]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: served.url or process.poll() is not None, timeout=60)
        assert served.url, "".join(served.stderr)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        reader.join(timeout=5)


def test_a_second_run_reads_the_stream(detector_bundle: Path, demo_clip: Path,
                                       tmp_path: Path) -> None:
    camera = MjpegStream(fps=15, video=str(demo_clip))  # a camera that films the demo clip
    try:
        with serving(detector_bundle, "--source", camera.url, "--serve", "127.0.0.1:0",
                     env={"EDGEKIT_SERVE_TOKEN": TOKEN}) as served:
            assert wait_for(lambda: served.stats()["frames"] > 10, timeout=60)
            lines = tmp_path / "second.jsonl"
            second = run_cli("run", detector_bundle, "--source",
                             f"{served.url}stream.mjpg?token={TOKEN}", "--capture", "max_frames=30",
                             "--save", lines, "--json")
            assert second.returncode == 0, second.stderr
            report = json.loads(second.stdout)
            assert report["frames"] == 30 and report["source"].startswith("stream http://")
            found = [json.loads(line)["detections"] for line in lines.read_text().splitlines()]
            assert sum(map(len, found)) > 10  # digits still found in the annotated frames
            stats = served.stats()
            assert stats["frames"] > 30 and stats["running"] is True
            assert stats["latest"]["detections"], "the clip's digits are detected"
            assert stats["frames_encoded"] <= stats["frames"]
            assert TOKEN not in "".join(served.stderr)
    finally:
        camera.stop()
    assert served.process.returncode == 130  # Ctrl-C, as a person stops it
    assert "Traceback" not in "".join(served.stderr)


def test_the_camera_module_through_picamera2(detector_bundle: Path, demo_clip: Path,
                                             tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    env = {"PYTHONPATH": f"{STANDINS / 'picamera2'}{os.pathsep}{STANDINS / 'libcamera'}",
           "EDGEKIT_STANDIN_VIDEO": str(demo_clip), "EDGEKIT_STANDIN_LOG": str(log)}
    with serving(detector_bundle, "--source", "picamera2:0", "--serve", "0", env=env) as served:
        assert wait_for(lambda: served.stats()["frames"] > 20, timeout=60)
        stats = served.stats()
        assert stats["source"] == "camera module 0 (imx708) via Picamera2"
        assert stats["latest"] is not None
        snapshot = get(served.port, "/snapshot.jpg")
        image = cv2.imdecode(np.frombuffer(snapshot.body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (480, 640, 3)
    assert served.process.returncode == 130
    calls = [json.loads(line)["call"] for line in log.read_text().splitlines()]
    assert calls[:3] == ["open", "configure", "start"] and calls[-1] == "close"


def _privileged_run(args: list[str]) -> subprocess.CompletedProcess | None:
    """``edgekit run`` without the right to bind ports below 1024, or None where that cannot
    be arranged (root here keeps CAP_NET_BIND_SERVICE unless setpriv drops it)."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 80:
        return None
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            return None
        prefix = ["setpriv", "--inh-caps=-net_bind_service",
                  "--bounding-set=-net_bind_service", "--"]
    return subprocess.run(prefix + [sys.executable, "-m", "edgekit", "run", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_bad_input_is_one_line(detector_bundle: Path, demo_clip: Path) -> None:
    run = ["run", detector_bundle, "--source", demo_clip]
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = run_cli(*run, "--serve", str(port))
        assert_clean_error(result, f"--serve 127.0.0.1:{port}: the port is in use",
                           "choose another port")
        assert result.returncode == 1
    finally:
        taken.close()
    for bad in ("80800", "pi:http", ":8080", "1.2.3.4:"):
        result = run_cli(*run, "--serve", bad)
        assert_clean_error(result, "give PORT or HOST:PORT")
        assert result.returncode == 2
    result = run_cli(*run, "--serve", "0.0.0.0:8080")
    assert_clean_error(result, "can be reached from other machines, so it needs a token",
                       "set EDGEKIT_SERVE_TOKEN", "ssh -L 8080:127.0.0.1:8080")
    assert result.returncode == 2
    assert_clean_error(run_cli(*run, "--serve", "8080", env={"EDGEKIT_SERVE_TOKEN": "short"}),
                       "at least 16")
    moved = run_cli(*run, "--token", TOKEN)
    assert_clean_error(moved, "--token is now $EDGEKIT_SERVE_TOKEN")
    assert moved.returncode == 2 and TOKEN not in moved.stderr
    result = run_cli("run", detector_bundle, "--source", "picamera2")
    assert_clean_error(result, "--source picamera2: Picamera2 is not installed",
                       "sudo apt install -y python3-picamera2")
    assert result.returncode == 1
    assert_clean_error(run_cli("run", detector_bundle, "--source", "picamera2:x"),
                       "picamera2:N")
    denied = _privileged_run([str(detector_bundle), "--source", str(demo_clip), "--serve", "80"])
    if denied is not None:
        assert_clean_error(denied, "--serve 127.0.0.1:80: ports below 1024 need root or the "
                                   "CAP_NET_BIND_SERVICE capability", "such as 8080")


def test_the_token_from_the_environment(detector_bundle: Path, demo_clip: Path) -> None:
    """Beyond loopback with EDGEKIT_SERVE_TOKEN (what the deployed service does): it runs, the
    token stays off the command line and out of what is printed."""
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--serve", "0.0.0.0:0",
                     "--capture", "max_frames=5", env={"EDGEKIT_SERVE_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert re.search(r"live view: http://\S+:\d+/; open it once with \?token=TOKEN",
                     result.stderr)
    assert TOKEN not in result.stderr + result.stdout
