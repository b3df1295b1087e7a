"""Ctrl-C, SIGTERM and SIGHUP end any command within two seconds, the same way.

``systemctl stop``, ``docker stop``, ``timeout`` and ``kill`` send SIGTERM; a closed terminal
sends SIGHUP (unless the command was started with it ignored, as ``nohup`` does). Each is one
request to stop, handled as one Ctrl-C: outputs completed and kept, children ended with the
command (with the process groups of those that lead their own, such as ansible-playbook;
on SIGTERM and SIGHUP they are first sent SIGINT, which a terminal's Ctrl-C gives them
itself, so pip and ssh clean up), temporary paths removed, one line ("interrupted",
"terminated", "hung up") and exit 128 + the signal's number (130, 143, 129).

Python turns a signal into KeyboardInterrupt only when the main thread next runs Python code,
so a runtime busy in C++ (TensorFlow's converter, OpenVINO compiling a model) can hold it off
for as long as it likes, and a runtime that catches it can turn it into its own error (the
artifact then looks "failed" when the user asked to stop). ``install`` (the CLI calls it)
adds:

- a watchdog thread woken by the signal itself, through ``signal.set_wakeup_fd`` (the C-level
  handler writes to it even while the main thread is in C++). If the command has not ended
  ``GRACE_S`` after the first signal, or at a second one (see below), it makes a hard exit: it
  removes the temporary paths registered with ``remember``, kills every child process, says
  the line and exits;
- ``interrupted()`` / ``check()``: whether a signal came, so code that catches a runtime's
  errors can re-raise the interrupt instead of reporting a failure;
- ``deferred()``: a few lines that must finish together (one frame to every sink, a bundle
  renamed into place) hold the interrupt off until they are done; a hard exit waits up to
  0.3 s for them;
- ``saving()``: outputs being finished and renamed into place (a video's index written, the
  JSON lines closed). It defers the interrupt like ``deferred()``, and a hard exit waits for it
  up to ``SAVE_WAIT_S`` before removing anything, so what was being saved is kept (renamed
  into place, it is no longer a temporary path); only a save still unfinished then is removed
  as half-made.

Only the first signal raises KeyboardInterrupt: the code that runs after it (closing the
outputs, ending the children) is not cut short by another. A second signal within
``REPEAT_S`` of the first (a double-tapped Ctrl-C, SIGTERM sent to a process and then to its
group) is the same request. A later one, or ``GRACE_S`` passing, is the hard exit above.

Without ``install`` (edgekit used as a library) Python's own behaviour stays.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

GRACE_S = 1.0  # after the first signal, how long the command has to end on its own
REPEAT_S = 0.5  # a second signal this soon after the first is the same request
SAVE_WAIT_S = 5.0  # how long a hard exit waits for outputs being saved (``saving()``)
EXIT_CODE = 128 + signal.SIGINT  # what shells report for Ctrl-C
LINES = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


class _State:
    installed = False
    count = 0  # signals received (seen by the Python-level handler or the watchdog)
    signum = signal.SIGINT  # the first one
    first_at: float | None = None
    raised = False  # the Python-level handler raised (or deferred) KeyboardInterrupt once
    deferring = 0  # nesting depth of deferred() in the main thread
    saving = 0  # saving() blocks running, in any thread
    pending = False  # the signal came while deferring
    console_fd = -1  # a copy of the original stderr (fd 2 may be captured later)
    paths: dict[Path, int] = {}  # temporary paths to remove on a hard exit
    lock = threading.Lock()
    leaving = threading.Lock()  # held by the thread that ends the process


def install() -> None:
    """Handle the signals as described above; call once, from the main thread."""
    if _State.installed or threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    _State.console_fd = os.dup(2)
    for signum in LINES:
        if signum == signal.SIGHUP and signal.getsignal(signum) is signal.SIG_IGN:
            continue  # started under nohup: hanging up is not a request to stop
        signal.signal(signum, _on_signal)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd,), name="edgekit-interrupt",
                     daemon=True).start()
    _State.installed = True


def interrupted() -> bool:
    """Whether a signal to stop came (with ``install``; always False without it)."""
    return _State.count > 0


def exit_code() -> int:
    """128 + the number of the first signal (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + _State.signum


def line() -> str:
    """The one line that says why the command ended: "interrupted", "terminated"..."""
    return LINES.get(_State.signum, "interrupted")


def check() -> None:
    """Raise KeyboardInterrupt if a signal came, e.g. after a runtime turned it into its own
    error (call it in an ``except`` that would otherwise report a failure)."""
    if interrupted():
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Run a block that must not be cut in two: the interrupt raises when it ends."""
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


@contextmanager
def saving() -> Iterator[None]:
    """Finish and keep outputs: deferred, and a hard exit waits for it (``SAVE_WAIT_S``)."""
    with _State.lock:
        _State.saving += 1
    try:
        with deferred():
            yield
    finally:
        with _State.lock:
            _State.saving -= 1


@contextmanager
def temporary_folder(prefix: str) -> Iterator[Path]:
    """A new folder in the system's temporary folder, removed when the block ends, and by a
    hard exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    remember(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        forget(folder)


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


def leave() -> NoReturn:
    """End the command as the signal asked: its line, its exit code, its children gone."""
    exit_now(exit_code(), line())


def exit_now(code: int = EXIT_CODE, message: str = "", tidy: bool = True) -> NoReturn:
    """Kill child processes and leave at once: no interpreter teardown (seconds with
    TensorFlow loaded) and no waiting on runtime threads. ``tidy`` first runs the atexit
    handlers (TensorFlow's remove its temporary files) and flushes the Python streams; the
    watchdog cannot (the main thread may hold their locks). When two threads leave at once
    (the main thread done, the watchdog's hard exit), the first one's line and code win."""
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
    _State.leaving.acquire()  # never released: this process ends here
    if message:
        _say(message)
    os._exit(code)


def kill_children() -> None:
    """SIGKILL every process descended from this one, and the process group of each that
    leads its own (ansible-playbook's workers, whoever their parent is by then); Linux /proc,
    elsewhere nothing."""
    pids = descendants(os.getpid())
    own = os.getpgrp()
    groups = set()
    for pid in pids:
        try:
            if os.getpgid(pid) == pid != own:
                groups.add(pid)
        except OSError:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _signal_children(signum: int) -> None:
    """Pass the request to stop on to every child, as a Ctrl-C in a terminal does (pip
    removes its temporary folders, ssh and ansible-playbook end their sessions)."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signum)
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


def _on_signal(signum: int, frame: object) -> None:
    """Python's handler: the first signal raises KeyboardInterrupt (or, in a deferred block,
    when it ends); later ones are the watchdog's to judge."""
    _seen(signum)
    if _State.raised:
        return
    _State.raised = True
    if _State.deferring:
        _State.pending = True
        return
    raise KeyboardInterrupt


def _seen(signum: int = signal.SIGINT) -> None:
    """Record a signal; the first one decides the line and the exit code."""
    with _State.lock:
        if _State.first_at is None:
            _State.first_at = time.monotonic()
            _State.signum = signum
        _State.count = max(_State.count, 1)


def _watch(read_fd: int) -> None:
    """The watchdog: the first signal starts the grace period; a later one, ``REPEAT_S``
    after the first was read, is the hard exit."""
    first_read: float | None = None
    while True:
        try:
            data = os.read(read_fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        now = time.monotonic()
        for signum in data:
            if signum not in LINES:
                continue
            if first_read is None:
                first_read = now
                _seen(signum)
                if signum != signal.SIGINT:  # a terminal's Ctrl-C reaches them by itself
                    _signal_children(signal.SIGINT)
                threading.Thread(target=_deadline, name="edgekit-interrupt-deadline",
                                 daemon=True).start()
            elif now - first_read >= REPEAT_S:
                _hard_exit()


def _deadline() -> None:
    assert _State.first_at is not None
    time.sleep(max(0.0, _State.first_at + GRACE_S - time.monotonic()))
    _hard_exit()


def _hard_exit() -> None:
    """The command did not end in time: remove what it was making, end its children, leave."""
    _settle()
    kill_children()  # first: a child may be writing into a temporary folder
    _silence()  # the main thread runs on meanwhile: its errors about the paths removed
    with _State.lock:
        paths = list(_State.paths)
    for path in paths:
        _remove(path)
    exit_now(exit_code(), line(), tidy=False)


def _settle() -> None:
    """Let the main thread finish what must not be cut: outputs being saved (up to
    ``SAVE_WAIT_S``: they are then renamed into place and no longer temporary), a deferred
    block such as a rename (up to 0.3 s)."""
    start = time.monotonic()
    while True:
        waited = time.monotonic() - start
        if not (_State.saving and waited < SAVE_WAIT_S or _State.deferring and waited < 0.3):
            return
        time.sleep(0.01)


def _silence() -> None:
    """Point stdout and stderr at /dev/null: whatever the main thread still prints (an error
    about a folder the hard exit removed) is not the command's outcome. The line ("interrupted")
    goes to the copy of stderr taken at ``install``."""
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
