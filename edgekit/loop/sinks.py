"""Where results go: an annotated video, JSON lines, a window.

Files are written under a temporary name beside the target and renamed into
place when the sink closes, which it always does (end of the source, an error,
Ctrl-C), so the video's index is written and both files are complete and
readable up to the last frame processed.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError
from edgekit.loop.draw import annotate
from edgekit.loop.pipeline import Item, LoopStats


def overlay_lines(stats: LoopStats, backend: str) -> list[str]:
    """The text drawn on each frame: FPS, end-to-end latency and per-stage milliseconds."""
    e2e = statistics.median(stats.latency_ns[-30:]) / 1e6 if stats.latency_ns else 0.0
    stages = "  ".join(f"{_SHORT.get(name, name)} {ms:.1f}" for name, ms in stats.recent().items())
    return [f"{backend}  {stats.running_fps():.1f} FPS  end-to-end {e2e:.1f} ms",
            f"{stages} ms" if stages else ""]


_SHORT = {"capture": "cap", "preprocess": "pre", "infer": "infer", "postprocess": "post",
          "sink": "sink"}


class Sink(ABC):
    @abstractmethod
    def write(self, item: Item, stats: LoopStats) -> None:
        """Take one finished frame (detections in ``item.data["detections"]``)."""

    def close(self) -> None:
        """Flush and finish; safe to call twice."""


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial{path.suffix}")


class VideoSink(Sink):
    """Frames with boxes, labels, FPS and per-stage ms, as an MJPG .avi (or mp4v .mp4)."""

    def __init__(self, path: Path, fps: float | None, backend: str) -> None:
        if path.suffix.lower() not in (".avi", ".mp4"):
            raise UsageError(f"--save {path}: write an .avi (MJPG) or .mp4 (mp4v) file")
        if not path.parent.exists():
            raise UsageError(f"--save {path}: {path.parent} does not exist")
        self.path, self.fps, self.backend = path, fps or 15.0, backend
        self._tmp = _partial(path)
        self._writer: Any = None
        self.frames = 0

    def write(self, item: Item, stats: LoopStats) -> None:
        import cv2

        image = annotate(item.frame.image, item.data.get("detections", []),
                         overlay_lines(stats, self.backend))
        if self._writer is None:
            fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*fourcc),
                                           self.fps, (width, height))
            if not self._writer.isOpened():
                raise UsageError(f"--save {self.path}: OpenCV cannot write this video")
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.path)


class JsonlSink(Sink):
    """One JSON line per frame: detections in frame pixels and the stage timings."""

    def __init__(self, path: Path) -> None:
        if not path.parent.exists():
            raise UsageError(f"--jsonl {path}: {path.parent} does not exist")
        self.path = path
        self._tmp = _partial(path)
        self._file = open(self._tmp, "w")
        self.frames = 0

    def write(self, item: Item, stats: LoopStats) -> None:
        line = {
            "frame": item.frame.index,
            **({"image": item.frame.name} if item.frame.name else {}),
            "detections": [{"label": d.label, "class_id": d.class_id, "score": round(d.score, 4),
                            "box": [round(v, 1) for v in d.box]}
                           for d in item.data.get("detections", [])],
            "timings_ms": {k: round(v / 1e6, 3) for k, v in item.timings_ns.items()},
            "latency_ms": round((time.perf_counter_ns() - item.frame.captured_ns) / 1e6, 3),
        }
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        self.frames += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.replace(self._tmp, self.path)


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
            raise UsageError(f"--show: {why}")
        self.backend, self.on_quit = backend, on_quit

    def write(self, item: Item, stats: LoopStats) -> None:
        import cv2

        cv2.imshow("edgekit", annotate(item.frame.image, item.data.get("detections", []),
                                       overlay_lines(stats, self.backend)))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.on_quit()

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()
