"""Where edgekit keeps its own files, and the user's settings.

- settings: ``$XDG_CONFIG_HOME/edgekit/config.toml`` (default ``~/.config/edgekit``), beside
  the user's device profiles in ``targets/``;
- caches: ``$XDG_CACHE_HOME/edgekit`` (default ``~/.cache/edgekit``; where the home folder
  does not exist, as Debian's ``/nonexistent`` for daemon users, a private folder of this
  user's under the temporary folder instead, with a note: nothing is made under a home that
  is not there);
- the checkout edgekit runs from, when it does (``make demo``'s examples, the targets/
  folder, the environments the Makefile builds beside it).

config.toml holds what cannot be found on its own; today one setting:

    [convert]
    # Pythons whose TFLite runtimes convert checks every .tflite against (a numpy<2
    # environment holding tflite-runtime 2.14, as most Raspberry Pis have)
    tflite_pythons = ["/home/me/legacy/bin/python"]
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # edgekit/, above helpers/
CONFIG_NAME = "config.toml"
TFLITE_PYTHONS_VAR = "EDGEKIT_TFLITE_PYTHONS"
LEGACY_VENV = ".venv-legacy"  # what `make setup` builds beside the checkout
IMX500_VENV = ".venv-imx500"  # what `make setup-imx500` (and `make setup-tests`) builds
IMX500_PYTHON_VAR = "EDGEKIT_IMX500_PYTHON"


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/edgekit`` (default ``~/.config/edgekit``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgekit"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgekit`` (default ``~/.cache/edgekit``); where the home folder does
    not exist, ``temporary_cache()``."""
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "edgekit"
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no passwd entry
        home = None
    if home is not None and home.is_dir():
        return home / ".cache" / "edgekit"
    return temporary_cache(home)


_temporary: dict[str, Path] = {}


def temporary_cache(home: Path | None) -> Path:
    """This user's own cache under the temporary folder (``edgekit-cache-UID``, mode 0700, and
    used only when this user owns it and no one else can write to it; otherwise a fresh folder
    for this process, removed at exit), said once on stderr."""
    if "path" in _temporary:
        return _temporary["path"]
    uid = os.getuid()
    folder = Path(tempfile.gettempdir()) / f"edgekit-cache-{uid}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
        private = stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077
    except OSError:
        private = False
    if not private:  # someone else's, or a link: not to be trusted with wheels
        folder = Path(tempfile.mkdtemp(prefix="edgekit-cache-"))
        atexit.register(shutil.rmtree, folder, True)
    _temporary["path"] = folder
    print(f"note: the home folder {home or '(none)'} does not exist, so edgekit caches in "
          f"{folder} (set XDG_CACHE_HOME to choose where)", file=sys.stderr)
    return folder


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


def imx500_python() -> tuple[Path | None, str]:
    """(The Python of the IMX500 toolchain's environment, where it came from): ``$EDGEKIT_
    IMX500_PYTHON``, else .venv-imx500 beside the checkout (found as .venv-legacy is); None
    when neither is there. Its TensorFlow 2.15/Keras 2 cannot live in edgekit's environment."""
    env = os.environ.get(IMX500_PYTHON_VAR)
    if env:
        return Path(env), f"${IMX500_PYTHON_VAR}"
    root = checkout_dir()
    python = root / IMX500_VENV / "bin" / "python" if root else None
    if python is not None and python.is_file():
        return python, f"{IMX500_VENV} beside the checkout"
    return None, ""
