"""Files a command writes: checked before anything is read, written aside, renamed into place.

``check`` refuses, before a command reads anything, an output path that is one of its inputs
(``--save clip.avi`` over ``--source clip.avi``), the same as another output, a folder, in a
folder that does not exist or cannot be written, or with an extension nothing can write.

``PendingFile`` is one output being written under a hidden name beside its target
(``.NAME.partial.EXT``): ``commit`` renames it into place, so a reader never sees half a
file and an earlier file at that path stays until the new one is complete; ``discard``
removes it. A hard exit on Ctrl-C removes it too. ``write_error`` turns the OSError of a
failed write into one line naming the path and the cause.
"""
from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgekit import interrupt
from edgekit.errors import UsageError, WriteFailed

FULL_BYTES = 64 * 1024  # a file system with less free space than this is full


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
        for source in read:
            if same_file(path, source):
                raise UsageError(f"{option} {path} is also an input of this command; writing "
                                 "it would replace what is being read: choose another file")
        for other_option, other in seen:
            if same_file(path, other):
                raise UsageError(f"{option} and {other_option} are the same file ({path}); "
                                 "give each output its own path")
        seen.append((option, path))
        if path.is_dir():
            raise UsageError(f"{option} {path} is a folder; give a file name, e.g. "
                             f"{path / ('out' + (allowed[0] if allowed else ''))}")
        folder = path.parent
        if not folder.is_dir():
            raise UsageError(f"{option} {path}: the folder {folder} does not exist")
        problem = write_probe(folder)
        if problem is not None:
            raise WriteFailed(f"{option} {path}: cannot write in {folder}: {cause(problem)}")


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


class PendingFile:
    """A file written aside under a hidden name and renamed over its target when complete."""

    def __init__(self, path: Path, option: str) -> None:
        self.path, self.option = Path(path), option
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
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

    def discard(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.tmp.unlink()
        except OSError:
            pass
        interrupt.forget(self.tmp)
