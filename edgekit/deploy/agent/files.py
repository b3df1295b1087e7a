"""Paths, release records and small file helpers every device command shares."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

INCOMING = ".incoming-"
RELEASE_FILE = "release.json"
VENV_MARK = ".edgekit-venv.json"
UNIT_DIR = os.path.join(".config", "systemd", "user")
MARGIN = 1 << 20  # bytes kept free beyond what the copy needs


class Failure(Exception):
    """A step that cannot go on; ``fields`` travel with the message."""

    def __init__(self, message, **fields):
        super().__init__(message)
        self.fields = fields


def home():
    return os.path.expanduser("~")


def base_dir(payload):
    return os.path.join(home(), payload.get("base", "edgekit"))


def releases_dir(base):
    return os.path.join(base, "releases")


def for_scp(path):
    """A path as scp should name it: relative to the login folder when it lies inside it."""
    rel = os.path.relpath(path, home())
    return path if rel.startswith("..") else rel


def safe_relative(path):
    parts = path.split("/")
    if path.startswith("/") or not path or any(p in ("", ".", "..") for p in parts):
        raise Failure(f"refusing the file name {path!r}: not a plain relative path")
    return os.path.join(*parts)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def free_bytes(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def remove_tree(path):
    """rmtree that also removes read-only files and a dangling link."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return
    if not os.path.exists(path):
        return

    def retry(func, target, _info):
        os.chmod(os.path.dirname(target), 0o755)
        func(target)

    shutil.rmtree(path, onerror=retry)


def read_json(path):
    """A JSON file the agent or the service wrote, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_release(path):
    return read_json(os.path.join(path, RELEASE_FILE))


def current_id(base):
    link = os.path.join(base, "current")
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link).rstrip("/"))


def list_releases(base):
    folder = releases_dir(base)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    current = current_id(base)
    found = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(folder, name)
        info = read_release(path) or {}
        found.append({
            "id": name, "complete": bool(info), "current": name == current,
            "created": info.get("created", ""), "target": info.get("target", ""),
            "bundle": info.get("bundle", ""), "formats": info.get("formats", []),
            "venv": info.get("venv", ""), "edgekit": info.get("edgekit", ""),
            "bytes": sum(f["size"] for f in info.get("files", [])),
        })
    return found


def list_venvs(base):
    folder = os.path.join(base, "venvs")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [{"key": n, "complete": os.path.isfile(os.path.join(folder, n, VENV_MARK))}
            for n in names if os.path.isdir(os.path.join(folder, n))]


def unit_path(name):
    return os.path.join(home(), UNIT_DIR, name)


def incoming_dir(base, release):
    return os.path.join(releases_dir(base), INCOMING + release)


def check_tree(root, files):
    """Problems with ``files`` (path, sha256, size) under ``root``; extra files count too."""
    problems = []
    expected = set()
    for f in files:
        path = os.path.join(root, safe_relative(f["path"]))
        expected.add(os.path.normpath(path))
        if not os.path.isfile(path):
            problems.append(f"{f['path']}: missing")
        elif os.path.getsize(path) != f["size"]:
            size = os.path.getsize(path)
            problems.append(f"{f['path']}: {size} bytes, expected {f['size']}")
        elif sha256_of(path) != f["sha256"]:
            problems.append(f"{f['path']}: sha256 differs")
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in names:
            path = os.path.normpath(os.path.join(folder, name))
            if path not in expected and name != RELEASE_FILE:
                problems.append(f"{os.path.relpath(path, root)}: not part of the release")
    return problems


def write_file(path, text):
    """Write ``text`` to ``path`` through a temporary file, flushed to disk, then renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def tail(text, lines=8):
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def run_text(argv, env=None, timeout=60):
    """(exit code, stdout and stderr as text) of a short command; 127 when it is missing."""
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, timeout=timeout)
    except OSError as exc:
        return 127, str(exc)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} timed out after {timeout} s"
    return result.returncode, result.stdout.decode("utf-8", "replace").strip()


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
