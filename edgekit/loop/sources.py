"""Where frames come from: a camera, a video file, a folder of images, a stream URL, a
Raspberry Pi camera module (``picamera2[:N]``, see picamera.py).

A file or a folder is processed whole, every frame, in order; frames that fail to
decode are skipped and counted. A live source (camera, stream) is read by its own
grabber thread that keeps only the newest frame: frames the loop is too slow to
take are dropped and counted, never queued. A live source that stops delivering
is reconnected with back-off (``RECONNECT_DELAYS_S``: five tries, 0.25 to 4 s apart);
if it does not come back, ``read`` raises ``SourceLost`` and the loop ends cleanly
with what it has written. A stream URL that sends nothing for ``STREAM_TIMEOUT_S``
(its camera hung, the connection still open) has failed as one that closed has:
OpenCV's FFmpeg reader is opened with that timeout for connecting and for each
read, not its default 30 s. A file or folder
can be repeated (``--capture repeat=on``): it starts again from its first frame each time it
ends, so the loop runs until stopped, like a camera (a demo, a deployed service).
"""
from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InvalidData, SourceLost, UsageError
from edgekit.helpers.files import is_camera_device, read_head, refuse_special
from edgekit.helpers.text import redact
from edgekit.loop.picamera import Picamera2Capture, camera_number, is_imx500, is_picamera2
from edgekit.preprocess import check_pixels, list_images

MAX_CONSECUTIVE_FAILURES = 8  # a file that fails this many reads in a row has ended
RECONNECT_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0)
STREAM_TIMEOUT_S = 5.0  # a stream that answers nothing for this long (to open, or a frame)
AVI_HEAD_BYTES = 4096  # an AVI's stream headers, where its codec is named


@dataclass
class Frame:
    """One captured frame: its position in the source and when it was captured."""

    index: int
    image: np.ndarray
    captured_ns: int
    name: str = ""
    sensor: Any = None  # --source imx500: the sensor's outputs for it (loop/imx500.py)


@dataclass
class SourceStats:
    decoded: int = 0
    decode_failures: int = 0
    dropped: int = 0  # live sources: frames replaced before the loop took them
    reconnects: int = 0
    reconnecting: bool = False  # a live source is being reopened now
    expected: int | None = None  # frames a file says it holds
    uncertain_from: int | None = None  # after a mid-file decode failure, positions may be off


class Source(ABC):
    """A stream of frames. ``read`` returns None at the end."""

    live: bool = False
    description: str = ""
    fps: float | None = None

    def __init__(self) -> None:
        self.stats = SourceStats()

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when the source has ended."""

    def wait_turn(self) -> None:
        """Wait until the next frame is due (a paced file, ``--capture realtime``); untimed."""

    def close(self) -> None:
        """Release the device or file."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _capture(target: int | str, timeout_s: float = STREAM_TIMEOUT_S) -> Any:
    """An OpenCV capture (or a camera module's) for ``target``; a stream URL with
    ``timeout_s`` to connect and for every read."""
    import cv2

    if isinstance(target, str) and is_picamera2(target):
        return Picamera2Capture(target)
    if isinstance(target, int):
        return cv2.VideoCapture(target, cv2.CAP_ANY)
    if "://" in target and cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        ms = int(timeout_s * 1000)
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    return cv2.VideoCapture(target)


def avi_fourcc(path: Path) -> str | None:
    """The video codec FOURCC an AVI file declares (to name it when OpenCV cannot decode it)."""
    try:
        head = read_head(path, AVI_HEAD_BYTES)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    at = head.find(b"vids")
    return head[at + 4:at + 8].decode("latin-1") if at >= 0 else None


class VideoFile(Source):
    """Every frame of a video file, in order; undecodable frames are skipped and counted."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import cv2

        self.path = path
        self._cap = _capture(str(path))
        if not self._cap.isOpened():
            fourcc = avi_fourcc(path)
            why = (f"its codec {fourcc!r} is not one OpenCV's FFmpeg decodes" if fourcc
                   else "it is not a video OpenCV can open (unsupported codec or container, "
                        "or a damaged header)")
            raise InvalidData(f"{path}: cannot read it: {why}; re-encode it (e.g. ffmpeg -i "
                              f"{path.name} -c:v mjpeg out.avi) or give a folder of images")
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.stats.expected = count if count > 0 else None
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        self.description = f"video file {path.name}" + (f", {count} frames" if count > 0 else "")
        self._position = 0

    def read(self) -> Frame | None:
        # OpenCV's FFmpeg reader skips undecodable packets on its own, and neither its
        # CAP_PROP_POS_FRAMES nor CAP_PROP_POS_MSEC counts them (measured on a damaged MJPG):
        # after the first failure the true frame number is unknowable, which stats record.
        failures = 0
        first_failure = None
        while failures < MAX_CONSECUTIVE_FAILURES:
            ok, image = self._cap.read()
            index = self._position
            self._position += 1
            if ok and image is not None:
                self.stats.decoded += 1
                if first_failure is not None and self.stats.uncertain_from is None:
                    self.stats.uncertain_from = first_failure  # frames went missing mid-file
                return Frame(index, image, time.perf_counter_ns())
            failures += 1
            first_failure = index if first_failure is None else first_failure
        self._account_end()
        return None

    def _account_end(self) -> None:
        """At the end: frames the file declares but that never decoded count as failures."""
        if self.stats.expected is not None:
            self.stats.decode_failures = max(0, self.stats.expected - self.stats.decoded)

    def close(self) -> None:
        self._cap.release()


def folder_images(path: Path) -> list[Path]:
    """The images of a source folder, sorted: its own, else those of its sub-folders (a
    labelled folder: one sub-folder per class, named by label or class id), by sub-folder."""
    files = list_images(path)
    if files:
        return files
    return [f for sub in sorted(p for p in path.iterdir() if p.is_dir())
            for f in list_images(sub)]


class ImageFolder(Source):
    """Every image in a folder (or in its class sub-folders), sorted by name; unreadable files
    are skipped and counted. A frame's name is the file's, with its sub-folder in front."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._files = folder_images(path) if path.is_dir() else [path]
        if not self._files:
            raise InvalidData(f"{path}: no image files in it (.png, .jpg, .bmp, ...)")
        self.stats.expected = len(self._files)
        self._next = 0
        self.description = f"{len(self._files)} image(s) in {path.name}"

    def read(self) -> Frame | None:
        import cv2

        while self._next < len(self._files):
            index, file = self._next, self._files[self._next]
            self._next += 1
            try:
                check_pixels(file)  # a small file can declare a gigantic image
                image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            except InvalidData:
                image = None
            if image is None:
                self.stats.decode_failures += 1
                continue
            self.stats.decoded += 1
            name = file.name if file.parent == self.path or not self.path.is_dir() else \
                f"{file.parent.name}/{file.name}"
            return Frame(index, image, time.perf_counter_ns(), name=name)
        return None


class LiveSource(Source):
    """A camera or a stream: a grabber thread keeps only the newest frame."""

    live = True

    def __init__(self, target: int | str, reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS_S,
                 timeout_s: float = STREAM_TIMEOUT_S) -> None:
        super().__init__()
        import cv2

        self.target = target
        self.reconnect_delays = reconnect_delays
        self.timeout_s = timeout_s
        self._cap = _capture(target, timeout_s)
        # The one place a live source's description is made: every sink (the summary, --json,
        # the live view's page, /stats.json, /metrics) shows a stream URL without its secrets.
        self.description = getattr(self._cap, "description", None) or (
            f"camera {target}" if isinstance(target, int) else f"stream {redact(target)}")
        if not self._cap.isOpened():
            raise InvalidData(self._open_failure())
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._count = 0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab, name="edgekit-grabber", daemon=True)
        self._thread.start()

    def _open_failure(self) -> str:
        if getattr(self._cap, "error", ""):  # a camera module says why itself
            return self._cap.error
        if isinstance(self.target, int):
            device = Path(f"/dev/video{self.target}")
            where = "" if device.exists() else f" ({device} does not exist)"
            return (f"no camera at index {self.target}{where}: plug one in, check `ls /dev/video*`"
                    " and that your user is in the video group, or give a video file or folder")
        return (f"cannot open the stream {redact(self.target)}: check the URL and that it is "
                "serving")

    def _grab(self) -> None:
        """The grabber thread. It owns the capture, and releases it when it ends: a read or an
        open it is blocked in (up to ``timeout_s`` on a stream) never races a release."""
        try:
            self._grab_frames()
        finally:
            self._cap.release()

    def _grab_frames(self) -> None:
        while not self._stop.is_set():
            ok, image = self._cap.read()
            if not ok or image is None:
                if self._stop.is_set() or not self._reconnect():
                    return
                continue
            frame = Frame(self._count, image, time.perf_counter_ns())
            self._count += 1
            with self._cond:
                if self._latest is not None:
                    self.stats.dropped += 1  # the loop never took it: stale, so dropped
                self._latest = frame
                self.stats.decoded += 1
                self._cond.notify()

    def _reconnect(self) -> bool:
        started = time.perf_counter()
        self.stats.reconnecting = True
        try:
            for delay in self.reconnect_delays:
                if self._stop.wait(delay):
                    return False
                self._cap.release()
                self._cap = _capture(self.target, self.timeout_s)
                if self._stop.is_set():
                    return False
                if self._cap.isOpened():
                    ok, image = self._cap.read()
                    if ok and image is not None:
                        self.stats.reconnects += 1
                        return True
        finally:
            self.stats.reconnecting = False
        with self._cond:
            self._lost = (f"the {self.description} stopped delivering frames and did not come "
                          f"back after {len(self.reconnect_delays)} reconnect attempts over "
                          f"{time.perf_counter() - started:.1f} s")
            self._cond.notify_all()
        return False

    def read(self) -> Frame | None:
        with self._cond:
            while self._latest is None and self._lost is None and not self._stop.is_set():
                self._cond.wait(0.1)
            frame, self._latest = self._latest, None
            if frame is None and self._lost is not None:
                raise SourceLost(self._lost)
            return frame

    def close(self) -> None:
        """Stop the grabber (it releases the capture); wait for it as long as one blocked
        read or open can take, at least 5 s."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=max(5.0, self.timeout_s + 1))


class Repeating(Source):
    """A video file or image folder played again from its start each time it ends.

    Frame indices keep counting across passes (the loop needs them increasing); the stats
    add up over all passes. A source that yields no frame in a whole pass ends the loop
    rather than spinning."""

    def __init__(self, opener: Callable[[], Source]) -> None:
        super().__init__()
        self._opener = opener
        self._inner = opener()
        self.description = f"{self._inner.description}, repeated"
        self.fps = self._inner.fps
        self.passes = 1
        self._offset = 0  # frames before this pass
        self._size = 0  # positions read in this pass
        self._done = SourceStats()  # what the finished passes counted

    def read(self) -> Frame | None:
        frame = self._inner.read()
        if frame is None:
            if self._size == 0:
                return None  # nothing decodes: repeating would spin
            self._next_pass()
            frame = self._inner.read()
            if frame is None:
                return None
        self._size = max(self._size, frame.index + 1)
        frame.index += self._offset
        self._sum()
        return frame

    def _next_pass(self) -> None:
        self._inner.close()
        self._sum()
        self._done = SourceStats(self.stats.decoded, self.stats.decode_failures)
        self._offset += self._size
        self._size = 0
        self.passes += 1
        self._inner = self._opener()

    def _sum(self) -> None:
        inner = self._inner.stats
        self.stats.decoded = self._done.decoded + inner.decoded
        self.stats.decode_failures = self._done.decode_failures + inner.decode_failures

    def close(self) -> None:
        self._sum()
        self._inner.close()


class Paced(Source):
    """A file or folder delivered at ``fps`` frames per second, as a camera delivers them
    (``--capture realtime``): frame k is read no earlier than k / fps seconds after the first. A
    loop slower than that falls behind and catches up as fast as it can."""

    def __init__(self, inner: Source, fps: float) -> None:
        super().__init__()
        self._inner = inner
        self.stats = inner.stats
        self.fps = fps
        self.description = f"{inner.description}, paced at {fps:g} FPS"
        self._start_ns = 0
        self._count = 0

    def wait_turn(self) -> None:
        now = time.perf_counter_ns()
        if self._count == 0:
            self._start_ns = now
        due = self._start_ns + int(self._count * 1e9 / self.fps)
        if due > now:
            time.sleep((due - now) / 1e9)

    def read(self) -> Frame | None:
        self.wait_turn()  # a no-op when the loop waited already
        self._count += 1
        return self._inner.read()

    def close(self) -> None:
        self._inner.close()


def paced(source: Source, spec: str | int | Path, fps: float | None) -> Source:
    """``source`` paced at ``fps`` (None: its own frame rate) for ``realtime``. A folder of
    images has no frame rate of its own: it needs a number (UsageError)."""
    rate = fps or source.fps
    if rate is None:
        source.close()
        raise UsageError(f"realtime: {spec} has no frame rate of its own (a folder of images, "
                         "or a video that does not say); give one, e.g. `realtime` 30",
                         param="realtime")
    return Paced(source, rate)


FROM_ENVIRONMENT = "env:"  # --source env:NAME: the source is the value of NAME (a secret URL)
SOURCE_VARIABLE = "EDGEKIT_SOURCE"  # the one a deployed service's environment file holds


def from_environment(spec: str | int | Path) -> str | int | Path:
    """``env:NAME`` -> the value of the environment variable NAME (a stream URL with a password,
    kept off the command line: a service reads it from its 0600 environment file); any other
    source as it is. UsageError when NAME is not set."""
    text = str(spec)
    if not text.startswith(FROM_ENVIRONMENT):
        return spec
    name = text[len(FROM_ENVIRONMENT):]
    value = os.environ.get(name, "")
    if not value:
        raise UsageError(f"source {text}: the environment variable {name or '(none)'} is not "
                         f"set; set it to the camera's URL (a deployed service has it in its "
                         f"service.env: deploy it as a service again)", param="source")
    return value


def is_live(spec: str | int | Path) -> bool:
    """A camera index, a camera module or a stream URL: it runs until stopped (a file or a
    folder ends)."""
    text = str(spec)
    return text.isdigit() or "://" in text or is_picamera2(text) or is_camera_device(text) \
        or is_imx500(text)


def check_source(spec: str | int | Path) -> None:
    """Refuse a file or folder source that cannot give a frame (InvalidData), without opening
    a camera or stream (the loop opens those itself)."""
    if is_live(spec):
        return
    open_source(spec).close()


def open_source(spec: str | int | Path, repeat: bool = False) -> Source:
    """A camera index ("0"), a video file, an image folder or image, or a stream URL.

    ``repeat``: play a file or folder again each time it ends (UsageError for a live one)."""
    text = str(spec)
    if repeat:
        if is_live(text):
            raise UsageError(f"repeat loops a video file or a folder of images; `source` "
                             f"{redact(text)} is a camera or stream, which runs until stopped "
                             "anyway", param="repeat")
        return Repeating(lambda: open_source(spec))
    if text.isdigit():
        return LiveSource(int(text))
    if is_picamera2(text):
        camera_number(text)  # a malformed number is a usage error, before anything opens
        return LiveSource(text)
    if "://" in text:
        return LiveSource(text)
    if is_imx500(text):
        raise UsageError(f"source {text}: the IMX500 runs a bundle's imx500 artifact in the "
                         "sensor: edgekit run BUNDLE `source` imx500", param="source")
    path = Path(text)
    if not path.exists():
        raise InvalidData(f"--source {text}: no such file or folder (give a camera index such "
                          "as 0, a video file, a folder of images, or a stream URL)")
    if is_camera_device(path):
        return LiveSource(text)
    refuse_special(path, "--source")
    if path.is_dir():
        return ImageFolder(path)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"):
        return ImageFolder(path)
    return VideoFile(path)
