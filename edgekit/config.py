"""Where edgekit keeps its own files, and the user's settings.

- settings: ``$XDG_CONFIG_HOME/edgekit/config.toml`` (default ``~/.config/edgekit``), beside
  the user's device profiles in ``targets/``;
- caches: ``$XDG_CACHE_HOME/edgekit`` (default ``~/.cache/edgekit``);
- the checkout edgekit runs from, when it does (``make demo``'s examples, the targets/
  folder, the environments the Makefile builds beside it).

config.toml holds what cannot be found on its own; today one setting:

    [convert]
    # Pythons whose TFLite runtimes convert checks every .tflite against (a numpy<2
    # environment holding tflite-runtime 2.14, as most Raspberry Pis have)
    tflite_pythons = ["/home/me/legacy/bin/python"]
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_NAME = "config.toml"
TFLITE_PYTHONS_VAR = "EDGEKIT_TFLITE_PYTHONS"
LEGACY_VENV = ".venv-legacy"  # what `make setup` builds beside the checkout


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/edgekit`` (default ``~/.config/edgekit``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgekit"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgekit`` (default ``~/.cache/edgekit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit"


def checkout_dir() -> Path | None:
    """The repository checkout edgekit runs from, or None for an installed wheel."""
    root = PACKAGE_DIR.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"edgekit"', pyproject.read_text(),
                                         re.MULTILINE):
        return root
    return None


def settings() -> dict[str, Any]:
    """config.toml as a dict ({} when there is none); a broken file is a UsageError naming it."""
    path = config_dir() / CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a readable TOML file ({exc}); fix or remove it") from None
    return data


def tflite_pythons() -> tuple[list[str], str]:
    """(Pythons with TFLite runtimes to check artifacts against, where that list came from),
    this Python not included. In order: ``$EDGEKIT_TFLITE_PYTHONS`` (os.pathsep-separated),
    else ``[convert] tflite_pythons`` in config.toml, else the checkout's .venv-legacy."""
    env = os.environ.get(TFLITE_PYTHONS_VAR)
    if env is not None:
        return [p for p in env.split(os.pathsep) if p], f"${TFLITE_PYTHONS_VAR}"
    listed = settings().get("convert", {}).get("tflite_pythons")
    if listed is not None:
        path = config_dir() / CONFIG_NAME
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise UsageError(f"{path}: [convert] tflite_pythons takes a list of paths, e.g. "
                             '["/home/me/legacy/bin/python"]')
        return [os.path.expanduser(p) for p in listed], str(path)
    root = checkout_dir()
    legacy = root / LEGACY_VENV / "bin" / "python" if root else None
    if legacy is not None and legacy.is_file():
        return [str(legacy)], f"{LEGACY_VENV} beside the checkout"
    return [], ""
