"""The device's deploy lock: who holds it, and the check every change makes."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time

from .files import Failure, base_dir

LOCK_FILE = "lock"
LOCK_GRACE = 1.0  # seconds a refused lock is retried anyway (a status check holds it briefly)


def lock_file(base):
    return os.path.join(base, LOCK_FILE)


def read_owner(path):
    """The lock's owner record (JSON), or None when it is empty or unreadable."""
    try:
        with open(path) as f:
            text = f.read()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def try_flock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def lock_holder(base):
    """The owner record of the deploy holding the lock now, or None when nobody does."""
    path = lock_file(base)
    if not os.path.isfile(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        if try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return read_owner(path) or {}
    finally:
        os.close(fd)


def describe_holder(owner):
    """Who holds the lock, for a person: what, from where, since when."""
    if not owner:
        return "a process that has not said who it is yet"
    since = owner.get("since_epoch")
    ago = f", {time.time() - since:.0f} s ago" if since else ""
    return (f"{owner.get('what', 'a deploy')} from {owner.get('workstation', '?')} "
            f"(pid {owner.get('workstation_pid', '?')}, user {owner.get('user', '?')}), started "
            f"{owner.get('since', '?')}{ago}; its session here is pid {owner.get('pid', '?')}")


def require_lock(payload):
    """Refuse to change anything unless this deploy (payload's token) holds the lock."""
    base = base_dir(payload)
    token = payload.get("lock")
    holder = lock_holder(base)
    if holder is None:
        raise Failure("this deploy no longer holds the device's lock (its ssh session ended or "
                      "went silent), so it stopped before changing anything more; deploy again",
                      code="lock_lost")
    if not token or holder.get("token") != token:
        raise Failure(f"another deploy holds this device's lock now: {describe_holder(holder)}",
                      code="locked", holder=holder)
