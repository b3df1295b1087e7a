"""Ctrl-C ends any command within two seconds: exit 130, children gone, nothing half-made.

Python turns SIGINT into KeyboardInterrupt only when the main thread next runs Python code,
so a runtime busy in C++ (TensorFlow's converter, OpenVINO compiling a model) can hold it off
for as long as it likes, and a runtime that catches it can turn it into its own error (the
artifact then looks "failed" when the user asked to stop). ``install`` (the CLI calls it)
adds three things:

- a watchdog thread woken by the signal itself, through ``signal.set_wakeup_fd`` (the C-level
  handler writes to it even while the main thread is in C++). If the command has not ended
  ``GRACE_S`` after Ctrl-C, or at a second Ctrl-C, it removes the temporary paths registered
  with ``remember``, kills every child process, says "interrupted" and exits with 130;
- ``interrupted()`` / ``check()``: whether Ctrl-C came, so code that catches a runtime's
  errors can re-raise the interrupt instead of reporting a failure;
- ``deferred()``: a few lines that must finish together (one frame to every sink, a bundle
  renamed into place) hold Ctrl-C off until they are done.

Without ``install`` (edgekit used as a library) Python's own behaviour stays.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GRACE_S = 1.0  # after Ctrl-C, how long the command has to end on its own
EXIT_CODE = 130  # 128 + SIGINT, what shells report for Ctrl-C


class _State:
    installed = False
    count = 0  # Ctrl-Cs received (seen by the Python-level handler or the watchdog)
    first_at: float | None = None
    deferring = 0  # nesting depth of deferred() in the main thread
    pending = False  # Ctrl-C came while deferring
    console_fd = -1  # a copy of the original stderr (fd 2 may be captured later)
    paths: dict[Path, int] = {}  # temporary paths to remove on a hard exit
    lock = threading.Lock()


def install() -> None:
    """Handle Ctrl-C as described above; call once, from the main thread."""
    if _State.installed or threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    _State.console_fd = os.dup(2)
    signal.signal(signal.SIGINT, _on_sigint)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd,), name="edgekit-interrupt",
                     daemon=True).start()
    _State.installed = True


def interrupted() -> bool:
    """Whether Ctrl-C came (with ``install``; always False without it)."""
    return _State.count > 0


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came, e.g. after a runtime turned it into its own
    error (call it in an ``except`` that would otherwise report a failure)."""
    if interrupted():
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Run a block that must not be cut in two: Ctrl-C raises when it ends."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _State.deferring += 1
    try:
        yield
    finally:
        if main:
            _State.deferring -= 1
            if _State.deferring == 0 and _State.pending:
                _State.pending = False
                raise KeyboardInterrupt


def remember(path: str | Path) -> None:
    """Register a temporary file or folder that a hard exit removes, until ``forget`` (the
    code that made it removes or renames it when it ends normally)."""
    with _State.lock:
        _State.paths[Path(path)] = _State.paths.get(Path(path), 0) + 1


def forget(path: str | Path) -> None:
    with _State.lock:
        left = _State.paths.get(Path(path), 0) - 1
        if left > 0:
            _State.paths[Path(path)] = left
        else:
            _State.paths.pop(Path(path), None)


def exit_now(code: int = EXIT_CODE, message: str = "", tidy: bool = True) -> None:
    """Kill child processes and leave at once: no interpreter teardown (seconds with
    TensorFlow loaded) and no waiting on runtime threads. ``tidy`` first runs the atexit
    handlers (TensorFlow's remove its temporary files) and flushes the Python streams; the
    watchdog cannot (the main thread may hold their locks)."""
    if tidy:
        import atexit

        run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
        if run_exitfuncs is not None:
            run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    kill_children()
    if message:
        _say(message)
    os._exit(code)


def kill_children() -> None:
    """SIGKILL every process descended from this one (Linux /proc; elsewhere nothing)."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def descendants(root: int) -> list[int]:
    """Every process whose parent chain leads to ``root`` (Linux /proc; elsewhere none)."""
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    parent_of: dict[int, int] = {}
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            parent_of[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], {root}
    while frontier:
        children = [pid for pid, parent in parent_of.items() if parent in frontier]
        found += children
        frontier = set(children)
    return found


def _on_sigint(signum: int, frame: object) -> None:
    _seen()
    if _State.deferring:
        _State.pending = True
        return
    raise KeyboardInterrupt


def _seen() -> None:
    with _State.lock:
        if _State.first_at is None:
            _State.first_at = time.monotonic()
        _State.count = max(_State.count, 1)


def _watch(read_fd: int) -> None:
    signals = 0
    while True:
        try:
            data = os.read(read_fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        before = signals
        signals += data.count(signal.SIGINT)
        if signals == before:
            continue
        _seen()
        if signals > 1:
            _hard_exit()
        threading.Thread(target=_deadline, name="edgekit-interrupt-deadline",
                         daemon=True).start()


def _deadline() -> None:
    assert _State.first_at is not None
    time.sleep(max(0.0, _State.first_at + GRACE_S - time.monotonic()))
    _hard_exit()


def _hard_exit() -> None:
    """The command did not end in time: remove what it was making, end its children, leave."""
    settle = time.monotonic() + 0.3  # let a deferred block (a rename) finish
    while _State.deferring and time.monotonic() < settle:
        time.sleep(0.01)
    kill_children()  # first: a child may be writing into a temporary folder
    _silence()  # the main thread runs on meanwhile: its errors about the paths removed
    with _State.lock:
        paths = list(_State.paths)
    for path in paths:
        _remove(path)
    exit_now(EXIT_CODE, "interrupted", tidy=False)


def _silence() -> None:
    """Point stdout and stderr at /dev/null: whatever the main thread still prints (an error
    about a folder the hard exit removed) is not the command's outcome. "interrupted" goes to
    the copy of stderr taken at ``install``."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def _remove(path: Path) -> None:
    """Remove a temporary file or folder that the main thread may still be writing into (a
    runtime's C++ code does not stop for Ctrl-C). A folder is first renamed aside, so no new
    file can be opened at its old path, then removed until it is gone (a file that was already
    open can still appear in it for a moment)."""
    try:
        if not path.is_dir() or path.is_symlink():
            path.unlink(missing_ok=True)
            return
        doomed = path.with_name(f".{path.name}.removing-{os.getpid()}")
        os.rename(path, doomed)
    except OSError:
        doomed = path
    deadline = time.monotonic() + 0.5
    while doomed.exists() and time.monotonic() < deadline:
        shutil.rmtree(doomed, ignore_errors=True)
        if doomed.exists():
            time.sleep(0.02)


def _say(text: str) -> None:
    fd = _State.console_fd if _State.console_fd >= 0 else 2
    try:
        os.write(fd, (text + "\n").encode())
    except OSError:
        pass
