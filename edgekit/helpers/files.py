"""Files a command reads: refused up front when they are not plain files, read in bounded
prefixes.

A character device or a FIFO (``/dev/zero``, ``/dev/null``, a named pipe) is not a file a
person means as data: reading one "whole" grows without end or blocks, and reading nothing
from ``/dev/null`` silently means "no labels". ``refuse_special`` turns such a path into one
line before anything reads it; ``read_head`` reads a bounded prefix (a header, a probe) and
``read_small`` a whole file only up to a size that fits what it should hold.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from edgekit.errors import EdgekitError, InvalidData

V4L2_MAJOR = 81  # Linux's video4linux character devices (/dev/video*): cameras
_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISBLK, "a block device"))


def special_kind(path: str | Path) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder (following links):
    "a character device", "a FIFO (named pipe)", ...; None for a file, a folder, or a path
    that does not exist."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((name for test, name in _KINDS if test(mode)), None)


def is_camera_device(path: str | Path) -> bool:
    """Whether ``path`` is a video4linux camera device (``/dev/video0``)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == V4L2_MAJOR


def refuse_special(path: str | Path, what: str,
                   error: type[EdgekitError] = InvalidData) -> None:
    """Raise ``error`` when ``path`` is a device, FIFO or socket: ``what`` names the role
    ("--source", "labels:"; may be empty) in the one line."""
    kind = special_kind(path)
    if kind is not None:
        raise error(f"{what + ' ' if what else ''}{path} is {kind}, not a regular file: give "
                    "a file (a device or a pipe never ends, or gives nothing)")


def read_head(path: str | Path, limit: int) -> bytes:
    """At most the first ``limit`` bytes of a file (OSError as ``open`` raises it)."""
    with open(path, "rb") as f:
        return f.read(limit)


def read_small(path: str | Path, limit: int, what: str) -> bytes:
    """A whole file of at most ``limit`` bytes: InvalidData for a device, a FIFO or a larger
    file (``what`` names its role); OSError as ``open`` raises it."""
    refuse_special(path, what)
    data = read_head(path, limit + 1)
    if len(data) > limit:
        raise InvalidData(f"{what} {path} is larger than {limit // (1024 * 1024)} MB, far "
                          "more than such a file holds: is it the right file?")
    return data
