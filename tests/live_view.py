"""Helpers for the live-view tests: a paced loop feeding a LiveView, and plain HTTP clients.

The loop is the real Pipeline and the real ServeSink with a synthetic camera and stand-in
stages (the loop's own logic is what these tests are about); tests/test_serve_cli.py runs the
real detector through ``edgekit run --serve``.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgekit.live.server import LiveView, ServeOptions, serve_options
from edgekit.live.state import ServeSink
from edgekit.loop.pipeline import Item, LoopStats, Pipeline, Stage
from edgekit.loop.sources import Frame, Source
from edgekit.tasks.detection import Detection, DetectionsResult


class PacedCamera(Source):
    """A live source at ``fps``: a square moving over noise (``noise`` makes big JPEGs)."""

    live = True
    description = "paced test camera"

    def __init__(self, fps: float = 60.0, size: tuple[int, int] = (320, 240),
                 noise: bool = False) -> None:
        super().__init__()
        self.fps, self.size, self.noise = fps, size, noise
        self._next = time.monotonic()
        self._index = 0
        self._rng = np.random.default_rng(0)

    def read(self) -> Frame | None:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1 / self.fps, time.monotonic())
        width, height = self.size
        image = (self._rng.integers(0, 256, (height, width, 3), np.uint8) if self.noise
                 else np.full((height, width, 3), 90, np.uint8))
        x = (self._index * 5) % (width - 40)
        image[height // 2 - 20:height // 2 + 20, x:x + 40] = (255, 80, 0)
        self._index += 1
        self.stats.decoded += 1
        return Frame(self._index - 1, image, time.perf_counter_ns())


FAKE_MODEL = SimpleNamespace(
    backend=SimpleNamespace(name="fake", describe=lambda: "fake (test stages, device CPU)",
                            device="CPU", runtime="test stages"),
    artifact=Path("bundle/model_int8.tflite"), format="tflite-int8", task="detection")


def _stages(sink: ServeSink, stats: LoopStats) -> list[Stage]:
    def postprocess(item: Item) -> None:
        seven = [Detection("seven", 7, 0.91, (10.0, 20.0, 60.0, 80.0))]
        item.result = DetectionsResult(seven, seven)

    return [Stage("preprocess", lambda item: None), Stage("infer", lambda item: None),
            Stage("postprocess", postprocess),
            Stage("sink", lambda item: sink.write(item, stats))]


@dataclass
class Running:
    view: LiveView
    pipeline: Pipeline
    base: str  # http://127.0.0.1:PORT


@contextmanager
def running_view(options: ServeOptions | None = None, camera: Source | None = None
                 ) -> Iterator[Running]:
    """A LiveView fed by a pipeline in a thread until the block ends."""
    view = LiveView(options or serve_options("127.0.0.1:0"))
    camera = camera or PacedCamera()
    sink = ServeSink(view, camera, FAKE_MODEL)
    stats = LoopStats()
    pipeline = Pipeline(camera, _stages(sink, stats), stats=stats)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    try:
        yield Running(view, pipeline, f"http://127.0.0.1:{view.port}")
    finally:
        pipeline.stop()
        thread.join(timeout=5)
        sink.close()
        view.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def get(port: int, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


class StreamReader:
    """A /stream.mjpg client that reads parts (JPEG bytes) one by one."""

    def __init__(self, port: int, path: str = "/stream.mjpg",
                 headers: dict[str, str] | None = None, receive_buffer: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.settimeout(10)
        if receive_buffer:  # a slow link: little room for what the server sends ahead
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(("127.0.0.1", port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n"
                          .encode())
        self.file = self.sock.makefile("rb")
        self.status_line = self.file.readline().decode()
        self.frame = -1
        self.headers = {}
        while (line := self.file.readline().decode().strip()):
            name, _, value = line.partition(":")
            self.headers[name.lower()] = value.strip()

    def part(self) -> bytes:
        """The next frame's JPEG bytes."""
        line = self.file.readline()
        while line.strip() == b"":
            line = self.file.readline()
        assert line.strip() == b"--edgekit-frame", line
        length = None
        while (line := self.file.readline().strip()):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            if name.lower() == "x-edgekit-frame":
                self.frame = int(value)  # the loop's frame index of this part
        body = self.file.read(length)
        assert self.file.read(2) == b"\r\n"
        return body

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def wait_for(condition, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False
