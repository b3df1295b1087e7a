"""The backend registry.

Built-in backends are named here as "module:Class" strings and imported only
when used (the way fsspec's ``known_implementations`` works); third-party
backends register the same kind of string under the entry-point group
``edgekit.backends``. Both go through ``backend_class``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from edgekit.backends.base import Backend, BackendStatus, Inputs
from edgekit.errors import UsageError

ENTRY_POINT_GROUP = "edgekit.backends"

BUILTIN_BACKENDS: dict[str, str] = {
    "tflite": "edgekit.backends.tflite:TFLiteBackend",
    "edgetpu": "edgekit.backends.edgetpu:EdgeTPUBackend",
    "openvino": "edgekit.backends.openvino:OpenVINOBackend",
    "myriad": "edgekit.backends.openvino:MyriadBackend",
    "onnxruntime": "edgekit.backends.onnxruntime:OnnxRuntimeBackend",
}


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    try:
        found = entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python 3.9
        found = entry_points().get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep.value for ep in found}


_REGISTERED: dict[str, str | type[Backend]] = {}


def register(name: str, target: str | type[Backend]) -> None:
    """Register a backend at run time ("module:Class" or the class), e.g. in a test or script.

    Packages should use the entry-point group instead, so edgekit finds them unimported.
    """
    if name in BUILTIN_BACKENDS:
        raise UsageError(f"{name!r} is a built-in backend; choose another name")
    _REGISTERED[name] = target


def registry() -> dict[str, str | type[Backend]]:
    """Every backend name with the "module:Class" it loads from. Built-ins win on a clash."""
    return {**_entry_points(), **_REGISTERED, **BUILTIN_BACKENDS}


def backend_names() -> list[str]:
    return list(registry())


def backend_class(name: str) -> type[Backend]:
    """The Backend class registered under ``name``; UsageError for an unknown name."""
    target = registry().get(name)
    if target is None:
        raise UsageError(
            f"unknown backend {name!r}; choose from: {', '.join(backend_names())}"
        )
    if isinstance(target, type):
        cls = target
    else:
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise UsageError(f"backend {name!r} ({target}) is not an edgekit Backend")
    return cls


def open_backend(name: str, model: str | Path, *, device: str | None = None,
                 threads: int | None = None) -> Backend:
    """Load ``model`` on backend ``name``. Raises a typed EdgekitError on any failure."""
    return backend_class(name)(model, device=device, threads=threads)


def probe_all() -> list[BackendStatus]:
    """The status of every registered backend, usable or not."""
    statuses = []
    for name in backend_names():
        try:
            statuses.append(backend_class(name).probe())
        except Exception as exc:  # a broken third-party plugin must not hide the others
            statuses.append(BackendStatus(name, False, reason=f"failed to load: {exc}"))
    return statuses


__all__ = [
    "Backend", "BackendStatus", "Inputs", "BUILTIN_BACKENDS", "ENTRY_POINT_GROUP",
    "backend_class", "backend_names", "open_backend", "probe_all", "register", "registry",
]
