"""Event clips: the frames around each tracked object, one .avi (MJPG) per object.

Every frame is JPEG-encoded into a ring buffer holding the last ``pre_s`` seconds, on the
recorder's own thread (the loop only hands it the frame; when the recorder falls behind, the
frame is skipped for clips and counted in ``skipped_frames``, the loop never waits). The raw
frames waiting for the recorder are bounded in bytes (``BACKLOG_BYTES``), not only in number: a
slow recorder on a loaded machine holds at most that much memory, whatever the frame size. A
``new`` event starts a clip with that pre-roll; the track's ``end`` event ends it ``post_s``
seconds later. A clip is written under a hidden temporary name and renamed when complete
(``outputs.PendingFile``), so the folder never shows a partial clip; the oldest clips are
deleted so that the folder's clips, with those being written, fit ``max_disk`` (checked at each
frame while clips are written, and when one is complete); when the clips being written alone
would not fit, the oldest of them is discarded and said once. A clip that cannot be written (a
full disk) is discarded and said once; the loop goes on."""
from __future__ import annotations

import collections
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import UsageError, WriteFailed
from edgekit.events.rules import Event
from edgekit.events.settings import ClipOptions
from edgekit.helpers.output_files import PendingFile, cause, free_bytes, write_probe
from edgekit.loop.pipeline import Item

JPEG_QUALITY = 80
BACKLOG = 64  # messages waiting for the recorder (frames beyond it are skipped)
BACKLOG_BYTES = 4 << 20  # raw frames waiting for the recorder, at most (one always may wait)
WRITER_BUFFER = 256 << 10  # OpenCV's AVI writer reaches the disk in steps of this size
RETAIN_EVERY_S = 0.0  # while clips are being written, how often the quota is checked: each frame
FLAG = "--clips"


def clip_files(folder: Path) -> list[Path]:
    """The finished clips in ``folder``, oldest first (hidden partial files are not clips)."""
    try:
        found = [p for p in folder.glob("*.avi") if not p.name.startswith(".")]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def check_clip_folder(folder: Path) -> None:
    """The folder exists (or can be made) and takes a file now: else one line, before the run."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteFailed(f"{FLAG} {folder}: cannot make the folder: {cause(exc)}") from None
    if not folder.is_dir():
        raise UsageError(f"{FLAG} {folder}: that is a file; give a folder")
    problem = write_probe(folder)
    if problem is not None:
        raise WriteFailed(f"{FLAG} {folder}: cannot write there: {cause(problem)}")


class _Clip:
    """One clip being written: its pending file, its writer, when it stops."""

    def __init__(self, folder: Path, name: str) -> None:
        self.file = PendingFile(folder / name, FLAG)
        self.writer: Any = None
        self.frames = 0
        self.until: float | None = None  # the capture time after which it is complete

    def write(self, image: Any, fps: float) -> None:
        import cv2

        if self.writer is None:
            height, width = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.file.tmp), cv2.VideoWriter_fourcc(*"MJPG"),
                                          fps, (width, height))
        self.writer.write(image)
        self.frames += 1


class ClipRecorder:
    """The ring buffer, the clips being written and the retention, on one thread."""

    def __init__(self, options: ClipOptions, fps: float | None,
                 say: Callable[[str], None] | None = None) -> None:
        self.folder = Path(options.folder)
        self.options = options
        self.fps = fps or 15.0
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        if options.max_disk <= 0:
            raise UsageError(f"max_disk must be more than 0 bytes, not {options.max_disk}",
                             param="max_disk")
        check_clip_folder(self.folder)
        self.written = 0
        self.deleted = 0
        self.skipped_frames = 0
        self.failed = 0
        self.last_error = ""
        self._said: set[str] = set()
        self._names: dict[int, str] = {}  # track -> its clip's name (the loop's thread)
        self._ring: collections.deque[tuple[float, bytes]] = collections.deque()
        self._clips: dict[str, _Clip] = {}
        self._next_retain = 0.0
        self._frame_bytes = 0  # the last frame's size as JPEG: what a clip grows by
        self._queue: queue.Queue = queue.Queue(BACKLOG)
        self._backlog = 0  # bytes of raw frames in the queue
        self._backlog_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="edgekit-clips", daemon=True)
        self._thread.start()

    # the loop's thread: hand over, never wait
    def frame(self, item: Item) -> None:
        captured = time.time() - (time.perf_counter_ns() - item.frame.captured_ns) / 1e9
        image = item.frame.image
        size = int(getattr(image, "nbytes", 0))
        with self._backlog_lock:
            if self._backlog and self._backlog + size > BACKLOG_BYTES:
                self.skipped_frames += 1
                return
            self._backlog += size
        self._hand(("frame", captured, image, size))

    def event(self, event: Event) -> None:
        """Name the event's clip (a ``new`` starts one, an ``end`` ends it)."""
        if event.type == "new":
            self._names[event.track_id] = f"{event.id}-{event.label}-track{event.track_id}.avi"
        event.clip = self._names.get(event.track_id)
        if event.type == "end":
            self._names.pop(event.track_id, None)
        if event.clip is not None:
            self._hand(("event", event.type, event.clip, event.time))

    def _hand(self, message: tuple) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            if message[0] == "frame":
                self._taken(message[3])
                self.skipped_frames += 1
            else:  # an event must reach the recorder: it is rare, wait for room
                self._queue.put(message)

    def close(self) -> None:
        """Finish every clip with the frames it has (the run ended), then stop."""
        if self._thread.is_alive():
            self._queue.put(("close",))
            self._thread.join()

    def counters(self) -> dict[str, Any]:
        sizes = [p.stat().st_size for p in clip_files(self.folder)]
        return {"destination": str(self.folder), "clips": self.written,
                "deleted": self.deleted, "bytes": sum(sizes), "failed": self.failed,
                "skipped_frames": self.skipped_frames, "last_error": self.last_error}

    # the recorder's thread
    def _work(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message[0] == "close":
                    for name in list(self._clips):
                        self._finish(name)
                    return
                if message[0] == "frame":
                    self._taken(message[3])
                    self._frame(message[1], message[2])
                else:
                    self._event(*message[1:])
            except Exception as exc:  # a clip's failure never ends the loop
                self._problem(f"{type(exc).__name__}: {exc}")

    def _taken(self, size: int) -> None:
        """A frame left the queue (taken by the recorder, or skipped): its bytes are free."""
        with self._backlog_lock:
            self._backlog -= size

    def _frame(self, captured: float, image: Any) -> None:
        import cv2

        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            self._ring.append((captured, data.tobytes()))
            self._frame_bytes = len(data)
        while self._ring and self._ring[0][0] < captured - self.options.pre_s:
            self._ring.popleft()
        for name, clip in list(self._clips.items()):
            if clip.until is not None and captured > clip.until:
                self._finish(name)
            else:
                self._write(name, clip, image)
        if self._clips and time.monotonic() >= self._next_retain:
            self._next_retain = time.monotonic() + RETAIN_EVERY_S
            self._retain()  # the clips being written count too

    def _write(self, name: str, clip: _Clip, image: Any) -> None:
        try:
            clip.write(image, self.fps)
        except (OSError, cv2_error()) as exc:
            self._drop(name, clip, str(exc))

    def _event(self, kind: str, name: str, at: float) -> None:
        import cv2

        if kind == "new" and name not in self._clips:
            clip = _Clip(self.folder, name)
            self._clips[name] = clip
            self._retain(coming=sum(1 for captured, _ in self._ring if captured <= at))
            if name not in self._clips:
                return  # the pre-roll alone does not fit (said by _retain)
            for captured, data in list(self._ring):  # the pre-roll, then live frames
                if captured <= at:
                    self._write(name, clip, cv2.imdecode(np.frombuffer(data, np.uint8),
                                                         cv2.IMREAD_COLOR))
        elif kind == "end" and name in self._clips:
            self._clips[name].until = at + self.options.post_s

    def _finish(self, name: str) -> None:
        from edgekit.loop.sinks import video_frames

        clip = self._clips.pop(name)
        if clip.writer is None:
            clip.file.discard()
            return
        clip.writer.release()
        if video_frames(clip.file.tmp) != clip.frames:
            free = free_bytes(self.folder)
            why = "the disk is full" if free is not None and free < (1 << 20) else \
                cause(write_probe(self.folder)) if write_probe(self.folder) else \
                "OpenCV's writer failed"
            self._drop(name, clip, why)
            return
        size = clip.file.tmp.stat().st_size
        if size > self.options.max_disk:
            self._drop(name, clip, f"the clip is {size / 1e6:.1f} MB, more than max_disk "
                                   f"({self.options.max_disk / 1e6:.1f} MB): raise max_disk "
                                   "or shorten pre/post")
            return
        try:
            clip.file.commit()
        except WriteFailed as exc:
            self._problem(str(exc))
            self.failed += 1
            return
        self.written += 1
        self._retain()

    def _per_frame(self, clip: _Clip) -> float:
        """What a frame adds to a clip: its own average so far, else 1.5 ring JPEGs (the
        writer's quality is higher than the ring's)."""
        size = _size(clip.file.tmp)
        return size / clip.frames if clip.frames and size else 1.5 * self._frame_bytes

    def _retain(self, coming: int = 0) -> None:
        """Delete the oldest clips until the folder's clips, with those being written, fit
        ``max_disk``, with room for ``coming`` more frames (a pre-roll) and for each clip being
        written, its next frame or what its writer holds before it writes (the larger)."""
        clips = clip_files(self.folder)
        total = sum(p.stat().st_size for p in clips) + sum(
            _size(c.file.tmp) for c in self._clips.values())
        limit = self.options.max_disk - sum(max(WRITER_BUFFER, 2 * self._per_frame(c))
                                            for c in self._clips.values()) \
            - coming * 1.5 * self._frame_bytes
        for oldest in clips:
            if total <= limit:
                break
            size = oldest.stat().st_size
            try:
                os.unlink(oldest)
            except OSError as exc:
                self._problem(f"cannot delete {oldest.name} for max_disk: {cause(exc)}")
                break
            total -= size
            self.deleted += 1
        while total > limit and self._clips:  # the clips being written alone
            name, clip = next(iter(self._clips.items()))
            total -= _size(clip.file.tmp)
            self._drop(name, clip, "the clips being written at once take more than max_disk "
                                   f"({self.options.max_disk / 1e6:.1f} MB): raise max_disk "
                                   "or shorten pre/post")

    def _drop(self, name: str, clip: _Clip, why: str) -> None:
        if clip.writer is not None:
            clip.writer.release()
            clip.writer = None
        clip.file.discard()
        self._clips.pop(name, None)
        self.failed += 1
        self._problem(f"{name} not kept: {why}")

    def _problem(self, line: str) -> None:
        self.last_error = line
        key = line.split(":", 1)[-1].strip()[:40]
        if key not in self._said:
            self._said.add(key)
            self.say(f"clips: {line}; the loop goes on")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def cv2_error() -> type:
    import cv2

    return cv2.error
