"""Every artifact is checked against its bundle's manifest before it loads
(edgekit/bundle/integrity.py): a changed or missing file is refused with what to do; the verdict
is cached by the file's size, times and inode, so a second run does not hash again, and any
change is seen."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgekit.bundle import integrity
from edgekit.bundle.manifest import read_manifest
from edgekit.errors import InvalidModel
from edgekit.model import load_model


@pytest.fixture
def bundle(lenet_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(integrity, "_loaded", None)
    return Path(shutil.copytree(lenet_bundle, tmp_path / "bundle"))


def _record(bundle: Path, fmt: str = "tflite-int8"):
    artifact = read_manifest(bundle).artifact(fmt)
    return bundle / artifact.file, artifact.files[artifact.file]


def test_a_good_file_is_hashed_once_then_taken_from_the_cache(bundle: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    path, record = _record(bundle)
    assert integrity.compare_file(path, record).problem == ""
    cached = json.loads(integrity.cache_path().read_text())
    assert cached[str(path.resolve())]
    monkeypatch.setattr(integrity, "_loaded", None)  # a new process: read from disk
    monkeypatch.setattr(integrity, "sha256_file", lambda p: pytest.fail("hashed again"))
    assert integrity.compare_file(path, record).problem == ""


def test_a_change_of_the_same_size_and_mtime_is_still_seen(bundle: Path) -> None:
    path, record = _record(bundle)
    assert integrity.compare_file(path, record).problem == ""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime put back; ctime moves
    assert integrity.compare_file(path, record).problem == "sha256 differs"
    with pytest.raises(InvalidModel, match="does not match the bundle's manifest.*verify"):
        load_model(bundle)


def test_missing_and_resized_files(bundle: Path) -> None:
    path, record = _record(bundle)
    path.write_bytes(path.read_bytes() + b"x")
    assert integrity.compare_file(path, record).problem.startswith("size differs")
    path.unlink()
    assert integrity.compare_file(path, record).problem == "missing"
    with pytest.raises(InvalidModel, match="is missing"):
        load_model(bundle)


def test_verify_always_hashes(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekit.bundle.verify import check_files

    path, record = _record(bundle)
    integrity.compare_file(path, record)  # cached now
    calls = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: calls.append(p) or real(p))
    assert all(c.ok for c in check_files(bundle))
    assert path in calls


def test_an_unwritable_cache_only_costs_hashing(bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(blocker / "cache"))
    path, record = _record(bundle)
    assert integrity.compare_file(path, record).problem == ""
