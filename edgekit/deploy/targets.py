"""Device profiles: one TOML file per target in ``targets/`` says what a device is and needs.

A profile names the device's platform, OS and Python, the pip packages its environment gets
(besides edgekit's own dependencies), the TFLite and accelerator runtimes and how they are
installed, which artifact formats to ship, the default backend, device and camera, and known
limits. ``edgekit deploy --target NAME`` reads one; ``edgekit targets`` lists them.

Where profiles are found, first match wins:

1. a path given directly (``--target ./my.toml``: anything with a ``/`` or ending in ``.toml``);
2. ``$XDG_CONFIG_HOME/edgekit/targets/NAME.toml`` (default ``~/.config/edgekit/targets``):
   a user's own profiles, which may also replace a built-in one of the same name;
3. the built-in profiles: ``targets/`` of the source checkout edgekit runs from, or, in an
   installed wheel, ``edgekit/_targets/`` (setup.py copies ``targets/*.toml`` there when the
   wheel is built, so the checkout keeps one folder and the wheel carries the same files).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle.formats import FORMATS
from edgekit.deploy.agent.imx500_device import is_sensor
from edgekit.errors import UsageError
from edgekit.helpers.config import checkout_dir, config_dir
from edgekit.helpers.schema import Field, SchemaError, parse

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.9 and 3.10
    import tomli as tomllib

SUFFIX = ".toml"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # edgekit/, above deploy/
WHEEL_DIR = PACKAGE_DIR / "_targets"  # the same files inside an installed wheel
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True)
class Target:
    """One device profile, validated."""

    name: str
    description: str
    arch: str  # the device Python's platform: "aarch64" (sysconfig.get_platform() minus linux-)
    os: str
    glibc: str  # the device's C library, for --offline wheel tags: "2.36"
    python: str  # major.minor of the device's python3: "3.11"
    formats: tuple[str, ...]  # artifact formats to ship, best first
    backend: str  # the default backend on the device
    device: str = ""  # the backend's device ("" = the backend's own default)
    fallback_backend: str = ""  # when the bundle has nothing the default backend runs
    camera: str = "0"  # the service's --source
    serve: str = ""  # the service's live view, [HOST:]PORT ("" = none); with deploy --service
    packages: tuple[str, ...] = ()  # pip requirements added to edgekit's own dependencies
    exclude: tuple[str, ...] = ()  # edgekit dependencies not installed on this target
    system_site_packages: bool = False  # the venv sees apt-installed Python packages
    extra_index_urls: tuple[str, ...] = ()
    tflite_runtime: str = ""  # what runs .tflite files there, in words
    accelerator: str = "none"  # the accelerator runtime and how it is installed, in words
    system_packages: tuple[str, ...] = ()  # apt packages the device needs (never installed)
    setup: tuple[str, ...] = ()  # one-time steps a person runs on the device (with sudo)
    environment: dict[str, str] = field(default_factory=dict)  # for the smoke test and service
    notes: tuple[str, ...] = ()
    limits: tuple[str, ...] = ()
    service: dict[str, Any] = field(default_factory=dict)  # [service]: events, clips
    path: Path | None = None  # the file it was read from
    origin: str = ""  # "built-in", "user" or "file"

    @property
    def runs_on(self) -> str:
        """What runs the model on the device, in words: the AI Camera's sensor where the
        camera is one (``imx500[:N]``: ``backend`` then only serves the smoke test's check on
        the CPU), else the backend and its device."""
        if is_sensor(self.camera):
            return "imx500 (sensor)"
        return self.backend + (f" ({self.device})" if self.device else "")

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (for ``edgekit targets --json``)."""
        return {
            "name": self.name, "description": self.description, "arch": self.arch,
            "os": self.os, "glibc": self.glibc, "python": self.python,
            "formats": list(self.formats), "backend": self.backend, "device": self.device,
            "fallback_backend": self.fallback_backend, "runs_on": self.runs_on,
            "camera": self.camera, "serve": self.serve,
            "packages": list(self.packages), "exclude": list(self.exclude),
            "system_site_packages": self.system_site_packages,
            "extra_index_urls": list(self.extra_index_urls),
            "tflite_runtime": self.tflite_runtime, "accelerator": self.accelerator,
            "system_packages": list(self.system_packages), "setup": list(self.setup),
            "environment": dict(self.environment), "notes": list(self.notes),
            "limits": list(self.limits), "service": dict(self.service),
            "path": str(self.path) if self.path else None,
            "origin": self.origin,
        }


def user_dir() -> Path:
    """Where a user keeps their own profiles."""
    return config_dir() / "targets"


def builtin_dir() -> Path:
    """The built-in profiles: the checkout's targets/, else the copy inside the wheel."""
    root = checkout_dir()
    return root / "targets" if root is not None and (root / "targets").is_dir() else WHEEL_DIR


def _search_path() -> list[tuple[Path, str]]:
    return [(user_dir(), "user"), (builtin_dir(), "built-in")]


def is_path(text: str) -> bool:
    """Whether ``--target`` names a file rather than a profile."""
    return "/" in text or os.sep in text or text.endswith(SUFFIX)


def find_target(name_or_path: str) -> Target:
    """The profile named ``name_or_path`` (or the file it points at); UsageError if none."""
    if is_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UsageError(f"target {name_or_path}: no such profile file", param="target")
        return load_target(path, "file")
    for folder, origin in _search_path():
        path = folder / f"{name_or_path}{SUFFIX}"
        if path.is_file():
            return load_target(path, origin)
    known = ", ".join(t.name for t in list_targets()) or "none"
    raise UsageError(f"unknown target {name_or_path!r}; known targets: {known} "
                     f"(or add your own as {user_dir() / (name_or_path + SUFFIX)})")


def list_targets() -> list[Target]:
    """Every profile found, a user's first where names clash, sorted by name."""
    found: dict[str, Target] = {}
    for folder, origin in _search_path():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            if path.stem not in found:
                found[path.stem] = load_target(path, origin)
    return [found[name] for name in sorted(found)]


def load_target(path: Path, origin: str = "file") -> Target:
    """Read and validate one profile file; UsageError naming the file and field if wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the profile ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    return _Reader(path, data).target(origin)


_STRINGS = tuple[str, ...]
# What a profile file holds, table by table (the TOML's own keys).
PROFILE = (Field("description", str), Field("arch", str), Field("os", str), Field("glibc", str),
           Field("notes", _STRINGS, ()), Field("limits", _STRINGS, ()),
           Field("python", dict, {}), Field("runtime", dict, {}), Field("run", dict, {}),
           Field("service", dict, {}))  # [service]: checked by edgekit.events.service
TABLES = {
    "python": (Field("version", str), Field("packages", _STRINGS, ()),
               Field("exclude", _STRINGS, ()), Field("system_site_packages", bool, False),
               Field("extra_index_urls", _STRINGS, ())),
    "runtime": (Field("tflite", str, ""), Field("accelerator", str, "none"),
                Field("system_packages", _STRINGS, ()), Field("setup", _STRINGS, ()),
                Field("environment", dict[str, str], {})),
    "run": (Field("formats", _STRINGS), Field("backend", str), Field("device", str, ""),
            Field("fallback_backend", str, ""), Field("camera", str, "0"),
            Field("serve", str, "")),
}


class _Reader:
    """Checks the parsed TOML against the profile's schema, then the values' meaning."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, problem: str) -> UsageError:
        return UsageError(f"{self.path}: {key}: {problem}")

    def parsed(self, fields: tuple[Field, ...], data: Any, table: str = "") -> dict[str, Any]:
        try:
            return parse(fields, data)
        except SchemaError as exc:
            key = f"[{table}] {exc.key}" if table else \
                f"[{exc.key}]" if exc.key in TABLES else exc.key
            raise self.fail(key, exc.problem) from None

    def target(self, origin: str) -> Target:
        name = self.path.stem
        if not _NAME.match(name):
            raise self.fail("file name", "use lower-case letters, digits, '.', '_' and '-'")
        top = self.parsed(PROFILE, self.data)
        py, runtime, run = (self.parsed(TABLES[t], top[t], t) for t in TABLES)
        target = Target(
            name=name, description=top["description"], arch=top["arch"], os=top["os"],
            glibc=top["glibc"], notes=top["notes"], limits=top["limits"],
            python=py["version"], packages=py["packages"], exclude=py["exclude"],
            system_site_packages=py["system_site_packages"],
            extra_index_urls=py["extra_index_urls"],
            tflite_runtime=runtime["tflite"], accelerator=runtime["accelerator"],
            system_packages=runtime["system_packages"], setup=runtime["setup"],
            environment=runtime["environment"],
            formats=run["formats"], backend=run["backend"], device=run["device"],
            fallback_backend=run["fallback_backend"], camera=run["camera"],
            serve=run["serve"], service=dict(top["service"]), path=self.path, origin=origin,
        )
        self._check_values(target)
        return target

    def _check_values(self, t: Target) -> None:
        from edgekit.events.service import service_options

        service_options(t.service, self.path)
        if not re.match(r"^[a-z0-9_]+$", t.arch):
            raise self.fail("arch", f"{t.arch!r} is not a platform such as aarch64 or x86_64")
        for key, value in (("[python] version", t.python), ("glibc", t.glibc)):
            if not _VERSION.match(value):
                raise self.fail(key, f"{value!r} is not a MAJOR.MINOR version such as 3.11")
        if not t.formats:
            raise self.fail("[run] formats", "name at least one format")
        unknown = [f for f in t.formats if f not in FORMATS]
        if unknown:
            raise self.fail("[run] formats", f"unknown format {', '.join(map(repr, unknown))}; "
                            f"choose from: {', '.join(FORMATS)}")
        from edgekit.backends import backend_names

        for key, backend in (("[run] backend", t.backend),
                             ("[run] fallback_backend", t.fallback_backend)):
            if backend and backend not in backend_names():
                raise self.fail(key, f"unknown backend {backend!r}; choose from: "
                                f"{', '.join(backend_names())}")
        if t.serve:
            from edgekit.live.server import parse_address

            try:
                parse_address(t.serve)
            except UsageError:
                raise self.fail("[run] serve", f"{t.serve!r} is not [HOST:]PORT such as "
                                "0.0.0.0:8080") from None
        for requirement in t.packages:
            if not requirement.strip() or requirement.lstrip().startswith("-"):
                raise self.fail("[python] packages", f"{requirement!r} is not a requirement "
                                "(pip options go in extra_index_urls)")
