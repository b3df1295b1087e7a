"""The wheels a release ships: edgekit's own, built from this checkout, and with ``--offline``
the target's runtime packages, downloaded for the device's platform and Python.

Both are cached under ``$XDG_CACHE_HOME/edgekit/deploy`` (default ``~/.cache``): edgekit's
wheel by a hash of its source files, so an unchanged checkout ships a byte-identical wheel
(and the device reuses its environment), the offline wheels by their requirement set.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.deploy.targets import Target
from edgekit.errors import DeployError, UsageError
from edgekit.helpers import config, interrupt

Progress = Callable[[str], None]
# What a wheel is built from: the package, the device profiles and the build configuration.
SOURCE_ITEMS = ("edgekit", "targets", "pyproject.toml", "README.md", "setup.py", "MANIFEST.in",
                "LICENSE")
_SKIP = ("__pycache__", "_targets", "_examples")  # copies a wheel build makes
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def cache_dir() -> Path:
    return config.cache_dir() / "deploy"


def source_root() -> Path | None:
    """The checkout edgekit runs from, or None for an installed wheel."""
    return config.checkout_dir()


def source_files(root: Path) -> list[Path]:
    """The files a wheel is built from, sorted (relative to ``root``)."""
    found = []
    for item in SOURCE_ITEMS:
        path = root / item
        if path.is_file():
            found.append(Path(item))
        elif path.is_dir():
            for file in path.rglob("*"):
                rel = file.relative_to(root)
                if file.is_file() and not any(p in _SKIP for p in rel.parts) \
                        and file.suffix != ".pyc":
                    found.append(rel)
    return sorted(found)


def source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for rel in source_files(root):
        digest.update(str(rel).encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def wheel_command(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
            str(out), str(source)]


@dataclass(frozen=True)
class WheelPlan:
    """edgekit's wheel: where it is (or will be), and the command that builds it."""

    path: Path
    built: bool
    command: list[str]


def edgekit_wheel(progress: Progress, build: bool = True) -> WheelPlan:
    """edgekit's wheel for this checkout: cached, or built now (``build=False``: only planned)."""
    root = source_root()
    if root is None:
        raise UsageError("deploy ships edgekit as a wheel built from its source checkout, and "
                         "this edgekit is an installed package: run it from a checkout, or "
                         "pass `wheel` FILE (an edgekit wheel)")
    folder = cache_dir() / "wheels" / source_hash(root)[:16]
    cached = sorted(folder.glob("edgekit-*.whl"))
    command = wheel_command(root, folder)
    if cached:
        return WheelPlan(cached[0], True, command)
    if not build:
        from edgekit import __version__

        return WheelPlan(folder / f"edgekit-{__version__}-py3-none-any.whl", False, command)
    progress("building the edgekit wheel from this checkout (pip wheel --no-deps)")
    with tempfile.TemporaryDirectory(prefix="edgekit-wheel-") as tmp:
        source = Path(tmp) / "src"
        for rel in source_files(root):  # a clean copy: no stale build/ leftovers
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, source / rel)
        built = Path(tmp) / "out"
        _run(wheel_command(source, built), "building the edgekit wheel")
        wheels = sorted(built.glob("edgekit-*.whl"))
        if not wheels:
            raise DeployError("pip wheel finished without writing an edgekit wheel")
        staging = _staging(folder)
        shutil.copy2(wheels[0], staging / wheels[0].name)
        _publish(staging, folder)
    return WheelPlan(sorted(folder.glob("edgekit-*.whl"))[0], True, command)


def _staging(folder: Path) -> Path:
    """A fresh folder beside ``folder`` to fill before it takes its place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))


def _publish(staging: Path, folder: Path) -> None:
    """Rename the filled ``staging`` to ``folder`` (someone else's copy may have won)."""
    try:
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def _run(argv: list[str], what: str) -> None:
    """Run pip with its own temporary folder, removed afterwards: pip stopped by a signal
    leaves its build folders behind."""
    with interrupt.temporary_folder("edgekit-pip-") as tmp:
        result = subprocess.run(argv, capture_output=True, text=True, check=False,
                                env={**os.environ, "TMPDIR": str(tmp)})
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines()
                 if line.strip() and not line.startswith("WARNING: Location")]
        raise DeployError(f"{what} failed: {' | '.join(lines[-4:]) or 'no message'}")


@dataclass(frozen=True)
class WheelInfo:
    """What a wheel says about itself."""

    name: str
    version: str
    requires_python: str
    requires: tuple[str, ...]  # Requires-Dist without extras


def wheel_info(path: Path) -> WheelInfo:
    """Read METADATA from a wheel; UsageError when it is not a wheel."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            text = archive.read(name).decode("utf-8")
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise UsageError(f"{path}: not a wheel ({exc or 'no METADATA'})") from None
    fields: dict[str, list[str]] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value.strip())
    requires = tuple(r for r in fields.get("Requires-Dist", []) if "extra ==" not in r)
    return WheelInfo(fields.get("Name", [""])[0], fields.get("Version", [""])[0],
                     fields.get("Requires-Python", [""])[0], requires)


def checkout_info() -> WheelInfo:
    """What the checkout's pyproject.toml says the wheel will say (before it is built)."""
    from edgekit import __version__
    from edgekit.deploy.targets import tomllib

    root = source_root()
    if root is None:
        raise UsageError("not running from an edgekit checkout: pass `wheel` FILE")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return WheelInfo("edgekit", __version__, project.get("requires-python", ""),
                     tuple(project.get("dependencies", [])))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def merge_requirements(core: tuple[str, ...], target: Target) -> list[str]:
    """edgekit's own requirements minus the target's exclusions, plus the target's packages.

    Specifiers for one package are joined ("numpy>=1.23" + "numpy<2" -> "numpy>=1.23,<2").
    Environment markers are judged here for the target's Python and platform (pip download
    would judge them for the workstation's), so the device gets a plain list.
    """
    excluded = {canonical(n) for n in target.exclude}
    merged: dict[str, tuple[str, list[str]]] = {}
    for requirement in (*core, *target.packages):
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise UsageError(f"{target.path}: {requirement!r} is not a pip requirement")
        name, extras, spec, marker = match.groups()
        if canonical(name) in excluded:
            continue
        if marker and not marker_holds(marker.lstrip(";").strip(), target):
            continue
        head, specs = merged.get(canonical(name), (name + (extras or ""), []))
        merged[canonical(name)] = (head, specs + ([spec.strip()] if spec.strip() else []))
    return [head + ",".join(specs) for head, specs in merged.values()]


def marker_holds(marker: str, target: Target) -> bool:
    """Whether an environment marker ("python_version < '3.11'") is true on the target."""
    try:
        from packaging.markers import InvalidMarker, Marker
    except ImportError:  # pip always carries its own copy
        from pip._vendor.packaging.markers import InvalidMarker, Marker
    environment = {
        "python_version": target.python, "python_full_version": f"{target.python}.0",
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "platform_machine": target.arch, "platform_system": "Linux", "sys_platform": "linux",
        "os_name": "posix",
    }
    try:
        return Marker(marker).evaluate(environment)
    except InvalidMarker:
        raise UsageError(f"{target.path}: cannot read the marker {marker!r}") from None


def platform_tags(target: Target) -> list[str]:
    """Wheel platform tags the device accepts: manylinux up to its glibc, then plain linux."""
    minor = int(target.glibc.split(".")[1])
    arch = target.arch
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags + [f"linux_{arch}"]


def download_command(requirements: list[str], target: Target, dest: Path) -> list[str]:
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--dest", str(dest), "--python-version", target.python, "--implementation", "cp"]
    for tag in platform_tags(target):
        argv += ["--platform", tag]
    for url in target.extra_index_urls:
        argv += ["--extra-index-url", url]
    return argv + requirements


@dataclass(frozen=True)
class OfflinePlan:
    """The runtime wheels for ``--offline``: where they are cached and how they are fetched."""

    folder: Path
    wheels: tuple[Path, ...]
    command: list[str]


def offline_wheels(requirements: list[str], target: Target, progress: Progress,
                   download: bool = True) -> OfflinePlan:
    """The target's runtime wheels, from the cache or downloaded now for its platform."""
    key = hashlib.sha256(json.dumps([requirements, platform_tags(target), target.python,
                                     list(target.extra_index_urls)]).encode()).hexdigest()[:16]
    folder = cache_dir() / "offline" / f"{target.arch}-cp{target.python}-{key}"
    command = download_command(requirements, target, folder)
    if (folder / ".complete").is_file():
        return OfflinePlan(folder, tuple(sorted(folder.glob("*.whl"))), command)
    if not download:
        return OfflinePlan(folder, (), command)
    progress(f"downloading {target.arch} wheels for Python {target.python} "
             f"({', '.join(requirements)})")
    staging = _staging(folder)
    try:
        _run(download_command(requirements, target, staging),
             f"downloading the {target.name} wheels (pip download)")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".complete").write_text(json.dumps(requirements) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    _publish(staging, folder)
    return OfflinePlan(folder, tuple(sorted(folder.glob("*.whl"))), command)
