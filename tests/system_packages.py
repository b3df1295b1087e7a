"""What a skipped test says when a Debian package it needs is not installed, and what a failed
test that drives a system tool says about that tool's version."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

NO_SYSTEM_PACKAGES = "EDGEKIT_NO_SYSTEM_PACKAGES"  # =1: `make test` installs no Debian package


def install_hint(*packages: str) -> str:
    """How to get ``packages``, and why they are missing when the user chose so."""
    hint = f"apt-get install {' '.join(packages)} (as root, `make setup-tests` does)"
    if os.environ.get(NO_SYSTEM_PACKAGES) == "1":
        return f"not installed, as {NO_SYSTEM_PACKAGES}=1 asks: {hint}"
    return hint


# The system tools that tests drive, and how each tells its version. A test that drives one says
# so with ``@pytest.mark.system_tools("chromium", ...)`` (the ``pi`` and ``systemd`` marks name
# theirs too): when it fails, its report gets a "system tools" section with each version, so the
# next drift of a Debian package (issue 26: Chromium 150 and the page's CSP) is named in one line.
VERSION_COMMANDS: dict[str, list[str]] = {
    "chromium": ["chromium", "--version"],
    "playwright": [sys.executable, "-c", "import importlib.metadata as m; "
                   "print('playwright', m.version('playwright'))"],
    "systemd-nspawn": ["systemd-nspawn", "--version"],
    "mmdebstrap": ["mmdebstrap", "--version"],
    "qemu-aarch64-static": ["qemu-aarch64-static", "--version"],
    "openssh": ["ssh", "-V"],
    "unshare": ["unshare", "--version"],
    "mosquitto": ["mosquitto", "-h"],
    "ansible": [str(Path(sys.executable).parent / "ansible"), "--version"],
}
MARK_TOOLS: dict[str, tuple[str, ...]] = {
    "pi": ("qemu-aarch64-static", "mmdebstrap", "openssh"),
    "systemd": ("systemd-nspawn", "mmdebstrap", "openssh"),
}


@functools.cache
def tool_version(name: str) -> str:
    """The first line ``name`` gives about its version, or why there is none."""
    command = VERSION_COMMANDS.get(name, [name, "--version"])
    if shutil.which(command[0]) is None:
        return f"{name}: not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{name}: no version ({error})"
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return f"{name}: {lines[0] if lines else f'no version (exit {done.returncode})'}"


def tools_of(markers: list) -> list[str]:
    """The system tools a test's marks name, in order, once each."""
    names: list[str] = []
    for mark in markers:
        names += list(mark.args) if mark.name == "system_tools" else MARK_TOOLS.get(mark.name, ())
    return list(dict.fromkeys(names))
