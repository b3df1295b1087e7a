"""Files a command writes: checked before anything is read, written aside, renamed into place.

``check`` refuses, before a command reads anything, an output path that is one of its inputs
(``--save clip.avi`` over ``--source clip.avi``) or inside a folder it reads, the same as
another output, a file inside an edgekit bundle, a path another edgekit process is writing,
a folder, in a folder that does not exist or cannot be written, or with an extension nothing
can write.

``Claim`` is one process's hold on an output path while it writes it: an ``flock`` on a hidden
lock file beside the target (``.NAME.edgekit-lock``, holding the writer's pid), so a second
edgekit process writing the same path refuses in one line naming the first. The kernel
releases the lock when its process dies, however it dies.

``PendingFile`` is one output being written under a hidden name beside its target, unique to
the process (``.NAME.partial-PID-RANDOM.EXT``), under a ``Claim`` of the target: ``commit``
renames it into place, so a reader never sees half a file and an earlier file at that path
stays until the new one is complete; ``discard`` removes it. A hard exit on Ctrl-C removes it
too. ``cause`` turns the OSError of a failed write into words naming the cause.
"""
from __future__ import annotations

import errno
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from edgekit.errors import UsageError, WriteFailed
from edgekit.helpers import interrupt

try:
    import fcntl
except ImportError:  # not POSIX: no locking, the rest stands
    fcntl = None  # type: ignore[assignment]

FULL_BYTES = 64 * 1024  # a file system with less free space than this is full
BUNDLE_MANIFEST = "edgekit.json"  # manifest.MANIFEST_NAME (not imported: manifest is heavier)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (existing: by device and inode; else by full path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check(outputs: Mapping[str, Path | None], inputs: Sequence[str | Path | None] = (),
          suffixes: Mapping[str, Sequence[str]] | None = None) -> None:
    """Refuse bad output paths before anything is read or written (UsageError).

    ``outputs`` maps an option name (``--save``) to its path; ``inputs`` are the paths the
    command reads; ``suffixes`` the extensions an option can write (``{"--save": (".avi",
    ".mp4")}``).
    """
    given = {option: Path(path) for option, path in outputs.items() if path is not None}
    read = [Path(str(p)) for p in inputs if p is not None and str(p) and not _not_a_path(p)]
    seen: list[tuple[str, Path]] = []
    for option, path in given.items():
        allowed = (suffixes or {}).get(option)
        if allowed and path.suffix.lower() not in allowed:
            raise UsageError(f"{option} {path}: write a file ending in "
                             f"{' or '.join(allowed)} (not {path.suffix or 'a name without one'})")
        _refuse_reading(option, path, read)
        for other_option, other in seen:
            if same_file(path, other):
                raise UsageError(f"{option} and {other_option} are the same file ({path}); "
                                 "give each output its own path")
        seen.append((option, path))
        holder = writer_of(path)
        if holder is not None:
            raise UsageError(_busy(option, path, holder))
        if path.is_dir():
            raise UsageError(f"{option} {path} is a folder; give a file name, e.g. "
                             f"{path / ('out' + (allowed[0] if allowed else ''))}")
        folder = path.parent
        if not folder.is_dir():
            raise UsageError(f"{option} {path}: the folder {folder} does not exist")
        problem = write_probe(folder)
        if problem is not None:
            raise WriteFailed(f"{option} {path}: cannot write in {folder}: {cause(problem)}")


def _refuse_reading(option: str, path: Path, read: Sequence[Path]) -> None:
    """UsageError when writing ``path`` would change what is read: an input itself, a file of
    a bundle, or anything inside a folder that is an input."""
    for source in read:
        if same_file(path, source):
            raise UsageError(f"{option} {path} is also an input of this command; writing "
                             "it would replace what is being read: choose another file")
    refuse_bundle_file(option, path)
    for folder in read:
        if _inside(path, folder):
            raise UsageError(f"{option} {path} is inside {folder}, a folder this command "
                             "reads; writing there would change what is being read: "
                             "write it elsewhere")


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies inside the existing folder ``folder`` (at any depth)."""
    if not folder.is_dir():
        return False
    try:
        where = Path(os.path.abspath(path)).parent.resolve()
        return where == folder.resolve() or folder.resolve() in where.parents
    except (OSError, RuntimeError):
        return False


def bundle_holding(path: Path) -> Path | None:
    """The edgekit bundle folder ``path`` would be a file of, or None (a bundle is flat: its
    files, and only they, lie directly in the folder holding its manifest)."""
    folder = Path(os.path.abspath(path)).parent
    try:
        folder = folder.resolve()
    except (OSError, RuntimeError):
        pass
    return folder if (folder / BUNDLE_MANIFEST).is_file() else None


def refuse_bundle_file(option: str, path: Path) -> None:
    """UsageError when ``path`` lies inside an edgekit bundle (``bundle_holding``)."""
    bundle = bundle_holding(path)
    if bundle is not None:
        raise UsageError(f"{option} {path} is inside the edgekit bundle {bundle}; writing "
                         "there would change the bundle (its files are checked against its "
                         "manifest): write it elsewhere")


def check_folder(option: str, folder: Path, inputs: Sequence[str | Path | None] = ()) -> None:
    """Refuse an output folder (``--save DIR/``: the masks written into it) that is a file,
    an input, inside a bundle or inside a folder the command reads (UsageError)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder}: that is a file; give a folder")
    read = [Path(str(p)) for p in inputs if p is not None and str(p) and not _not_a_path(p)]
    _refuse_reading(option, folder / "x", read)


def _not_a_path(spec: object) -> bool:
    """Camera indexes and stream URLs are inputs but not files."""
    text = str(spec)
    return text.isdigit() or "://" in text


def write_probe(folder: Path) -> OSError | None:
    """Create, write and remove a small file in ``folder``: the error a real write gets now."""
    try:
        fd, name = tempfile.mkstemp(prefix=".edgekit-probe-", dir=folder)
    except OSError as exc:
        return exc
    try:
        os.write(fd, b"\0" * 4096)
        return None
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
        try:
            os.unlink(name)
        except OSError:
            pass


def normal_permissions(folder: Path) -> None:
    """Give a folder made by ``tempfile.mkdtemp`` (0700) the mode a plain ``mkdir`` would
    (0755 under the usual umask 022), before it is renamed into place as an output."""
    os.chmod(folder, 0o777 & ~_umask())


def _umask() -> int:
    """This process's umask, read without changing it (os.umask sets it, for every thread)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def cause(exc: OSError) -> str:
    """The reason of a failed write, in words a person acts on."""
    reason = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "the disk is full: free some space or write elsewhere",
            errno.EDQUOT: "your disk quota is used up",
            errno.EROFS: "the file system is mounted read-only: write elsewhere",
            errno.EACCES: "you may not write there: write elsewhere or fix its permissions",
            errno.EPERM: "you may not write there: write elsewhere or fix its permissions",
            errno.EISDIR: "a folder is in the way"}.get(exc.errno or 0)
    return f"{reason} ({hint})" if hint else reason


def free_bytes(folder: Path) -> int | None:
    """Bytes this process may still write on the file system holding ``folder``."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def lock_path(path: Path) -> Path:
    """The lock file that says who is writing ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.edgekit-lock")


def unique_name(path: Path, kind: str = "partial") -> Path:
    """A hidden name beside ``path`` no other process uses: ``.STEM.KIND-PID-RANDOM.EXT``."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
                          f"{path.suffix}")


def writer_of(path: Path) -> str | None:
    """Who else is writing ``path`` now: "pid N" (or "another process" when it has not
    written its pid yet); None when nobody is."""
    if fcntl is None:
        return None
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # no lock file: nobody
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd)
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)  # a lock file left by a killed process: free
        return None
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "another process"


def _busy(option: str, path: Path, holder: str) -> str:
    return (f"{option} {path}: another edgekit process ({holder}) is writing it now; wait for "
            "it to finish or choose another path")


class Claim:
    """This process's hold on an output path while it writes it (see the module's doc).

    UsageError when another process holds it. ``release`` (or the end of a ``with``) lets
    go and removes the lock file; a hard exit on Ctrl-C removes it too.
    """

    def __init__(self, path: Path, option: str) -> None:
        self.path, self.option = Path(path), option
        self.lock = lock_path(self.path)
        self._fd = -1
        if fcntl is not None:
            self._take()

    def _take(self) -> None:
        while True:
            try:
                fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                raise WriteFailed(f"{self.option} {self.path}: cannot write in "
                                  f"{self.lock.parent}: {cause(exc)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise UsageError(_busy(self.option, self.path, holder)) from None
            if self._current(fd):
                break
            os.close(fd)  # the holder removed the file between our open and our lock: again
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        interrupt.remember(self.lock)

    def _current(self, fd: int) -> bool:
        """Whether the file locked is still the one at the lock's path."""
        try:
            here = os.stat(self.lock, follow_symlinks=False)
        except OSError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.lock.unlink()  # while still held: no other process can hold this file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1
        interrupt.forget(self.lock)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


Identity = Optional[tuple[int, int, int]]  # device, inode, mtime of a path; None: nothing there


def identity(path: Path) -> Identity:
    """What is at ``path`` now (the path itself, not a link's target), to tell later whether
    it is still the same thing, unchanged: a folder's mtime moves when a file in it is added,
    removed or renamed."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def check_unchanged(path: Path, option: str, before: Identity) -> None:
    """WriteFailed unless ``path`` is still what it was when the command began (``before``):
    an output replaces only what its command was given to replace, never a folder a person
    (or another program) put there meanwhile."""
    now = identity(path)
    if now == before:
        return
    what = ("a file or folder was put there" if before is None else
            "what was there was removed" if now is None else
            "what was there was replaced or changed")
    raise WriteFailed(f"{option} {path}: {what} while this command ran; it is left as it "
                      "is and nothing was written there: look at it, then run the command "
                      "again")


class PendingFile:
    """A file written aside under a hidden name and renamed over its target when complete."""

    def __init__(self, path: Path, option: str) -> None:
        self.path, self.option = Path(path), option
        self.claim = Claim(self.path, option)
        self.tmp = unique_name(self.path)
        interrupt.remember(self.tmp)
        self.done = False  # committed or discarded
        self.committed = False

    def failure(self, exc: OSError | str) -> WriteFailed:
        """The one-line error for a write that failed; the pending file is removed."""
        self.discard()
        reason = cause(exc) if isinstance(exc, OSError) else exc
        kept = f"; the earlier {self.path.name} there is kept" if self.path.exists() else ""
        return WriteFailed(f"{self.option} {self.path}: writing it failed: {reason}; nothing "
                           f"was written there{kept}")

    def disk_full(self) -> bool:
        free = free_bytes(self.tmp.parent)
        return free is not None and free < FULL_BYTES

    def commit(self) -> None:
        """Rename the finished file over the target (raises WriteFailed)."""
        if self.done:
            return
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise self.failure(exc) from None
        self.done = self.committed = True
        interrupt.forget(self.tmp)
        self.claim.release()

    def discard(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.tmp.unlink()
        except OSError:
            pass
        interrupt.forget(self.tmp)
        self.claim.release()
