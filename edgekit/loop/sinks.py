"""Where results go: an annotated video, JSON lines, a window, a segmenter's masks, the raw
outputs. Each takes any task's results (``Item.result``: it draws itself and says itself in
JSON), so every sink works for every task.

Files are written under a hidden name beside the target and renamed into place when the sink
closes, which it always does (end of the source, an error, Ctrl-C), so the video's index is
written and both files are complete and readable up to the last frame processed; an earlier
file at that path stays until then. A write that fails (a full disk, a read-only folder) ends
the run with one line naming the file and the cause, and leaves nothing half-written: the
video is read back when it closes (OpenCV's writer only warns when a frame cannot be written).
"""
from __future__ import annotations

import errno
import json
import os
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError, WriteFailed
from edgekit.helpers import interrupt
from edgekit.helpers.output_files import PendingFile, check_folder, write_probe
from edgekit.loop.pipeline import Item, LoopStats
from edgekit.tasks.draw import annotate

VIDEO_SUFFIXES = (".avi", ".mp4")
SPACE_CHECK_S = 1.0  # how often the video sink checks the disk still has room


def overlay_lines(stats: LoopStats, backend: str) -> list[str]:
    """The text drawn on each frame: FPS, end-to-end latency and per-stage milliseconds, each
    once there is something to show (no "0.0 FPS" before the first frames are done)."""
    recent = stats.latency_ns.recent()
    head = [backend]
    if stats.frames >= 2:
        head.append(f"{stats.running_fps():.1f} FPS")
    if recent:
        head.append(f"end-to-end {statistics.median(recent) / 1e6:.1f} ms")
    else:
        head.append("measuring...")
    stages = "  ".join(f"{_SHORT.get(name, name)} {ms:.1f}" for name, ms in stats.recent().items())
    return ["  ".join(head), f"{stages} ms" if stages else ""]


_SHORT = {"capture": "cap", "preprocess": "pre", "infer": "infer", "postprocess": "post",
          "sink": "sink"}


def drawn(item: Item, lines: list[str]) -> Any:
    """The frame with its result drawn on it and ``lines`` in a panel."""
    if item.result is None:
        return annotate(item.frame.image, [], lines)
    return item.result.draw(item.frame.image, lines)


class Sink(ABC):
    @abstractmethod
    def write(self, item: Item, stats: LoopStats) -> None:
        """Take one finished frame (its task's result in ``item.result``)."""

    def close(self) -> None:
        """Flush and finish; safe to call twice. Raises WriteFailed if the file is not whole."""

    @property
    def written(self) -> Path | None:
        """The file this sink put in place, once closed (None if it wrote none)."""
        return None


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class VideoSink(Sink):
    """Frames with boxes, labels, FPS and per-stage ms, as an MJPG .avi (or mp4v .mp4)."""

    def __init__(self, path: Path, fps: float | None, backend: str) -> None:
        """``path`` ends in .avi (MJPG) or .mp4 (mp4v): ``outputs.check`` says so first."""
        self.path, self.fps, self.backend = path, fps or 15.0, backend
        self._file = PendingFile(path, "--save")
        self._writer: Any = None
        self._next_check = 0.0
        self._closed = False
        self.frames = 0

    def write(self, item: Item, stats: LoopStats) -> None:
        import cv2

        image = drawn(item, overlay_lines(stats, self.backend))
        if self._writer is None:
            fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self._file.tmp), cv2.VideoWriter_fourcc(*fourcc),
                                           self.fps, (width, height))
            if not self._writer.isOpened():
                self._abandon()
                raise self._file.failure("OpenCV cannot open a video writer for it")
        self._writer.write(image)
        self.frames += 1
        now = time.monotonic()
        if now >= self._next_check:  # OpenCV only warns when a frame cannot be written
            self._next_check = now + SPACE_CHECK_S
            if self._file.disk_full():
                self._abandon()
                raise self._file.failure(_disk_full())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            self._file.discard()
            return
        self._writer.release()
        self._writer = None
        found = video_frames(self._file.tmp)
        if found != self.frames:
            problem = _folder_problem(self._file)
            raise self._file.failure(problem or f"the video holds {found} of the {self.frames} "
                                                "frames written (OpenCV's writer failed)")
        self._file.commit()

    def _abandon(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._file.discard()

    @property
    def written(self) -> Path | None:
        return self.path if self._file.committed else None


def video_frames(path: Path) -> int:
    """The frame count a video file's header and index declare (0 if it cannot be opened)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()


def _folder_problem(file: PendingFile) -> OSError | None:
    """Why writing beside ``file`` fails now, if it does (full disk, read-only...)."""
    if file.disk_full():
        return _disk_full()
    return write_probe(file.tmp.parent)


class JsonlSink(Sink):
    """One JSON line per frame: the task's result (detections in frame pixels, top-k
    classes, class shares, output summaries) and the stage timings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending = PendingFile(path, "--save (JSON lines)")
        try:
            self._file = open(self._pending.tmp, "w")
        except OSError as exc:
            raise self._pending.failure(exc) from None
        self._failed = False
        self.frames = 0

    def write(self, item: Item, stats: LoopStats) -> None:
        line = {
            "frame": item.frame.index,
            **({"image": item.frame.name} if item.frame.name else {}),
            **(item.result.record() if item.result is not None else {}),
            "timings_ms": {k: round(v / 1e6, 3) for k, v in item.timings_ns.items()},
            "latency_ms": round((time.perf_counter_ns() - item.frame.captured_ns) / 1e6, 3),
        }
        try:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        except OSError as exc:
            self._fail()
            raise self._pending.failure(exc) from None
        self.frames += 1

    def close(self) -> None:
        if self._failed or self._file.closed:
            return
        try:
            self._file.close()
        except OSError as exc:
            self._fail()
            raise self._pending.failure(exc) from None
        self._pending.commit()

    def _fail(self) -> None:
        self._failed = True
        try:
            self._file.close()
        except OSError:
            pass  # the buffer could not be written either: the file is discarded
        self._pending.discard()

    @property
    def written(self) -> Path | None:
        return self.path if self._pending.committed else None


def close_all(sinks: list[Sink]) -> WriteFailed | None:
    """Close every sink, even when one fails; the first failure is returned. A signal to stop
    (another Ctrl-C, SIGTERM) waits until the files are in place (``interrupt.saving``)."""
    first = None
    with interrupt.saving():
        for sink in sinks:
            try:
                sink.close()
            except WriteFailed as exc:
                first = first or exc
    return first


def window_available() -> tuple[bool, str]:
    """Whether this OpenCV can open a window here, and if not, why."""
    import cv2

    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return False, ("this OpenCV is the headless build (opencv-python-headless) and cannot "
                       "open a window: use --save OUT.avi, or replace it with opencv-python")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display here (DISPLAY is not set): use --save OUT.avi"
    return True, ""


class WindowSink(Sink):
    """A live window; q or Esc stops the loop."""

    def __init__(self, backend: str, on_quit: Any) -> None:
        ok, why = window_available()
        if not ok:
            raise UsageError(f"show: {why}", param="show")
        self.backend, self.on_quit = backend, on_quit

    def write(self, item: Item, stats: LoopStats) -> None:
        import cv2

        cv2.imshow("edgekit", drawn(item, overlay_lines(stats, self.backend)))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.on_quit()

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


def frame_stem(index: int, name: str) -> str:
    """A file name stem for a frame: the source image's own stem, else its number."""
    if name:
        return Path(name).stem or f"frame_{index:06d}"
    return f"frame_{index:06d}"


def check_mask_folder(folder: Path, inputs: Sequence[str | Path | None] = ()) -> None:
    """``--save DIR/`` (the masks) is a folder (that exists or can be made) outside what is read and
    outside any bundle (``outputs.check_folder``)."""
    check_folder("--save (masks)", folder, inputs)


class MaskSink(Sink):
    """A segmenter's class-id mask per frame, as an 8-bit PNG at the frame's size, named
    after the source image (a folder) or the frame number (a video or camera). Each file is
    written aside and renamed into place: a mask file is whole or absent."""

    def __init__(self, folder: Path) -> None:
        check_mask_folder(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteFailed(f"--save (masks) {folder}: cannot make the folder: "
                              f"{exc.strerror or exc}") from None
        self.folder = folder
        self.frames = 0

    def write(self, item: Item, stats: LoopStats) -> None:
        import cv2

        mask = getattr(item.result, "mask", None)
        if mask is None:
            return
        target = PendingFile(self.folder / f"{frame_stem(item.frame.index, item.frame.name)}"
                                           ".png", "--save (masks)")
        try:
            ok, data = cv2.imencode(".png", mask)
            if not ok:
                raise target.failure("OpenCV could not encode the mask as PNG")
            target.tmp.write_bytes(data.tobytes())
        except OSError as exc:
            raise target.failure(exc) from None
        target.commit()
        self.frames += 1

    @property
    def written(self) -> Path | None:
        return self.folder if self.frames else None


class RawOutputsSink(Sink):
    """Every frame's outputs, as they came from the model (Keras order), into one .npz:
    ``frame{N}_out{I}`` arrays. Written entry by entry (memory does not grow with the run),
    aside, and renamed into place when the loop ends."""

    def __init__(self, path: Path) -> None:
        import zipfile

        self.path = path
        self._pending = PendingFile(path, "--save (raw outputs)")
        try:
            self._zip = zipfile.ZipFile(self._pending.tmp, "w", zipfile.ZIP_STORED,
                                        allowZip64=True)
        except OSError as exc:
            raise self._pending.failure(exc) from None
        self._closed = False
        self.frames = 0

    def write(self, item: Item, stats: LoopStats) -> None:
        import numpy as np

        try:
            for i, array in enumerate(item.outputs or ()):
                with self._zip.open(f"frame{item.frame.index}_out{i}.npy", "w",
                                    force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asarray(array), allow_pickle=False)
        except OSError as exc:
            self._abandon()
            raise self._pending.failure(exc) from None
        self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._zip.close()
        except OSError as exc:
            raise self._pending.failure(exc) from None  # failure() discards the file
        self._pending.commit()

    def _abandon(self) -> None:
        self._closed = True
        try:
            self._zip.close()
        except OSError:
            pass
        self._pending.discard()

    @property
    def written(self) -> Path | None:
        return self.path if self._pending.committed else None
