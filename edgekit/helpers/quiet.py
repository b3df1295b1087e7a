"""Keep what native libraries print on file descriptor 2 off the user's console.

TensorFlow, LiteRT, OpenVINO and libedgetpu write log lines straight to fd 2
from C++. ``captured_stderr`` points fd 2 at a buffer while Python's own
``sys.stderr`` (progress lines, warnings) keeps writing to the console.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _writes_to_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture native writes to fd 2 (and unraisable-exception noise) into a list.

    The list receives the captured text when the block ends, so a caller can
    put it into an error message instead of onto the console. Nests safely.
    """
    captured: list[str] = []
    saved_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    sys.stderr.flush()
    console_fd = os.dup(2)
    saved_stream = sys.stderr
    console = None
    if _writes_to_fd2(sys.stderr):  # keep Python's stderr on the console
        console = os.fdopen(os.dup(console_fd), "w", buffering=1, encoding="utf-8",
                            errors="replace")
        sys.stderr = console
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            if console is not None:
                console.flush()
                sys.stderr = saved_stream
                console.close()
            os.dup2(console_fd, 2)
            os.close(console_fd)
            sys.unraisablehook = saved_hook
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))
