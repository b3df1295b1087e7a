"""What a skipped test says when a Debian package it needs is not installed."""

from __future__ import annotations

import os

NO_SYSTEM_PACKAGES = "EDGEKIT_NO_SYSTEM_PACKAGES"  # =1: `make test` installs no Debian package


def install_hint(*packages: str) -> str:
    """How to get ``packages``, and why they are missing when the user chose so."""
    hint = f"apt-get install {' '.join(packages)} (as root, `make setup-tests` does)"
    if os.environ.get(NO_SYSTEM_PACKAGES) == "1":
        return f"not installed, as {NO_SYSTEM_PACKAGES}=1 asks: {hint}"
    return hint
