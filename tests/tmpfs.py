"""A small tmpfs for tests of a full disk or a read-only folder (root only; skips otherwise)."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def tmpfs_problem() -> str | None:
    """Why a tmpfs cannot be mounted here, or None."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a tmpfs (a full disk, a read-only folder) needs root"
    return None


@contextmanager
def tmpfs(folder: Path, size_kb: int = 600) -> Iterator[Path]:
    """A fresh tmpfs of ``size_kb`` at ``folder``, unmounted afterwards."""
    problem = tmpfs_problem()
    if problem:
        pytest.skip(problem)
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                              str(folder)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def read_only(folder: Path) -> None:
    """Remount a tmpfs from ``tmpfs`` read-only (what it holds stays readable)."""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def fill(folder: Path, leave_kb: int) -> None:
    """Fill a tmpfs until about ``leave_kb`` is free."""
    st = os.statvfs(folder)
    free = st.f_bfree * st.f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave_kb * 1024))
