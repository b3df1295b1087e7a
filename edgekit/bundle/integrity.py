"""Every artifact is checked against its bundle's manifest before it is loaded.

A bundle's manifest records each artifact file's sha256 and size. A file changed after
conversion (a bad copy, a disk error, an edit) would otherwise run and answer confidently
wrong; ``check_artifact`` refuses it with what to do. Hashing a large model on every run
would cost time, so a file's verdict is cached by its size, mtime, ctime and inode in
``~/.cache/edgekit/verified.json`` (``$XDG_CACHE_HOME``, or ``$EDGEKIT_CACHE_DIR``): any
change to the file changes one of them, and the file is hashed again. ``edgekit verify``
always hashes (``cached=False``).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bundle.manifest import Artifact, FileRecord
from edgekit.errors import InvalidModel
from edgekit.helpers.config import cache_dir

CACHE_NAME = "verified.json"
MAX_CACHED = 2000  # entries kept (the oldest go first)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Finding:
    """One file compared with its manifest record."""

    problem: str  # "" when it matches; else "missing", "size differs (...)", "sha256 differs"
    sha256: str = ""  # what the file hashes to (when it was hashed or cached)


def compare_file(path: Path, record: FileRecord, cached: bool = True) -> Finding:
    """Whether ``path`` is the file the manifest describes (size first, then sha256)."""
    try:
        st = path.stat()
    except OSError:
        return Finding("missing")
    if not path.is_file():
        return Finding("missing (not a file)")
    if st.st_size != record.size:
        return Finding(f"size differs ({st.st_size} bytes, manifest {record.size})")
    key = _stat_key(st)
    digest = _cache().get(str(path.resolve()), {}).get(key) if cached else None
    if digest is None:
        try:
            digest = sha256_file(path)
        except OSError as exc:
            return Finding(f"unreadable ({exc.strerror or exc})")
        _remember(path, key, digest)
    return Finding("" if digest == record.sha256 else "sha256 differs", digest)


def check_artifact(bundle: Path, artifact: Artifact) -> None:
    """Raise InvalidModel unless every file of ``artifact`` matches the manifest."""
    for name, record in artifact.files.items():
        finding = compare_file(bundle / name, record)
        if finding.problem == "missing":
            raise InvalidModel(f"{bundle / name} is missing ({artifact.format} in the bundle's "
                               "manifest); copy the whole bundle again, or convert again")
        if finding.problem:
            raise InvalidModel(f"{bundle / name} does not match the bundle's manifest "
                               f"({finding.problem}): it changed after conversion; convert the "
                               f"model again, or see what else changed with: edgekit verify "
                               f"{bundle}")


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def cache_path() -> Path:
    base = os.environ.get("EDGEKIT_CACHE_DIR")
    if base:
        return Path(base) / CACHE_NAME
    return cache_dir() / CACHE_NAME


_loaded: dict[str, dict[str, str]] | None = None


def _cache() -> dict[str, dict[str, str]]:
    global _loaded
    if _loaded is None:
        try:
            data: Any = json.loads(cache_path().read_text())
            _loaded = {k: v for k, v in data.items() if isinstance(v, dict)} \
                if isinstance(data, dict) else {}
        except (OSError, ValueError):
            _loaded = {}
    return _loaded


def _remember(path: Path, key: str, digest: str) -> None:
    """Record a verdict; the cache is best effort (a read-only home just means re-hashing)."""
    cache = _cache()
    cache.pop(str(path.resolve()), None)
    cache[str(path.resolve())] = {key: digest}
    while len(cache) > MAX_CACHED:
        cache.pop(next(iter(cache)))
    target = cache_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".verified-", dir=target.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(cache, f)
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass
