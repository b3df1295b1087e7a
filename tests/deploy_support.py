"""Helpers for deploy tests and scripts/bench_deploy.py: profiles for this machine, ssh args.

The loopback SSH server runs on this machine, so a deploy to it needs a profile for this
machine's architecture: a built-in profile copied with ``arch`` changed (the packages stay
the same: tflite-runtime 2.14.0 has x86-64 wheels too). That is also how a user adds a target.
"""
from __future__ import annotations

import hashlib
import json
import sysconfig
from pathlib import Path

from sshd import SshServer

ROOT = Path(__file__).resolve().parent.parent
HERE = sysconfig.get_platform().split("-", 1)[1]  # this machine's platform: x86_64


def local_profile(folder: Path, name: str = "loopback-cpu", base: str = "rpi4-cpu",
                  edits: dict[str, str] | None = None) -> Path:
    """A copy of built-in profile ``base`` for this machine, with text ``edits``; its path."""
    text = (ROOT / "targets" / f"{base}.toml").read_text()
    text = text.replace('arch = "aarch64"', f'arch = "{HERE}"')
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def ssh_args(server: SshServer, **replace: Path) -> list[str]:
    """--host/--port/--identity/--known-hosts for ``server`` (``replace``: other files)."""
    return ["--host", server.destination, "--ssh", f"port={server.port}",
            "--ssh", "identity=" + str(replace.get("identity", server.identity_file)),
            "--ssh", "known_hosts=" + str(replace.get("known_hosts", server.known_hosts_file))]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_files(release: Path) -> dict[str, str]:
    """path -> sha256 recorded in a release's release.json."""
    data = json.loads((release / "release.json").read_text())
    return {f["path"]: f["sha256"] for f in data["files"]}


def intact(release: Path) -> bool:
    """Whether every file of a release still has the bytes release.json records."""
    return all(sha256(release / p) == h for p, h in release_files(release).items())
