"""The backend registry.

Built-in backends are named here as "module:Class" strings and imported only
when used (the way fsspec's ``known_implementations`` works); third-party
backends register the same kind of string under the entry-point group
``edgekit.backends``. Both go through ``backend_class``.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from edgekit.backends.base import MODES, Backend, BackendStatus, Concurrency, Inputs, Pending
from edgekit.errors import BackendUnavailable, UsageError, first_line
from edgekit.helpers.limits import checked

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
_RESOLVED: dict[str, type[Backend]] = {}  # name -> class, once imported (fsspec's registry)


def register(name: str, target: str | type[Backend]) -> None:
    """Register a backend at run time ("module:Class" or the class), e.g. in a test or script.

    Packages should use the entry-point group instead, so edgekit finds them unimported.
    """
    if name in BUILTIN_BACKENDS:
        raise UsageError(f"{name!r} is a built-in backend; choose another name")
    _REGISTERED[name] = target
    _RESOLVED.pop(name, None)


def registry() -> dict[str, str | type[Backend]]:
    """Every backend name with the "module:Class" it loads from. Built-ins win on a clash."""
    return {**_entry_points(), **_REGISTERED, **BUILTIN_BACKENDS}


def backend_names() -> list[str]:
    return list(registry())


def backend_class(name: str) -> type[Backend]:
    """The Backend class registered under ``name``, imported once and then cached.

    UsageError for an unknown name; BackendUnavailable, with the import's own error, for a
    third-party backend whose module fails to import or does not name a Backend.
    """
    cached = _RESOLVED.get(name)
    if cached is not None:
        return cached
    target = registry().get(name)
    if target is None:
        raise UsageError(
            f"unknown backend {name!r}; choose from: {', '.join(backend_names())}"
        )
    cls = target if isinstance(target, type) else _import(name, target)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendUnavailable(f"backend {name!r} ({target}) is not an edgekit Backend",
                                 "fix or uninstall the package that registers it")
    _RESOLVED[name] = cls
    return cls


def _import(name: str, target: str) -> object:
    """The object ``target`` ("module:Class") names. Built-ins import only what edgekit ships
    (their runtimes load later), so a failure here is a third-party plugin's own."""
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # ImportError, or whatever the plugin's module raises
        if name in BUILTIN_BACKENDS:
            raise
        raise BackendUnavailable(
            f"backend {name!r} cannot be loaded from {target}: {type(exc).__name__}: "
            f"{first_line(exc, 200)}",
            f"reinstall or fix the package that registers {name!r} under the entry-point "
            f"group {ENTRY_POINT_GROUP}") from exc


@checked
def open_backend(name: str, model: str | Path, *, device: str | None = None,
                 threads: int | None = None, concurrency: Concurrency | None = None) -> Backend:
    """Load ``model`` on backend ``name``. Raises a typed EdgekitError on any failure.

    ``concurrency``: the mode and how many inferences to keep in flight (``Backend.start``);
    streams on a backend that has none is a UsageError. A backend with no asynchronous path
    of its own (``async_api`` empty, a third-party one) is opened as before: one at a time."""
    cls = backend_class(name)
    check_concurrency(cls, concurrency)
    if concurrency is None or not cls.async_api:
        backend = cls(model, device=device, threads=threads)
        if concurrency is not None:
            backend.concurrency = concurrency
        return backend
    return cls(model, device=device, threads=threads, concurrency=concurrency)


def check_concurrency(cls: type[Backend], concurrency: Concurrency | None) -> None:
    """Refuse what the backend cannot do with ``concurrency``, before anything loads."""
    if concurrency is None:
        return
    if concurrency.streams is not None and not cls.has_streams:
        raise UsageError(f"streams: the {cls.name} backend has no execution streams "
                         "(OpenVINO has); use `requests` N to keep N inferences in flight",
                         param="streams")
    if concurrency.streams is not None and concurrency.mode != "throughput":
        raise UsageError("streams goes with `mode` throughput (latency mode runs one "
                         "inference at a time on every core)", param="streams")


def parse_backends(text: str | None,
                   default: Sequence[str] | None = None) -> list[tuple[str, str | None]]:
    """``--backends`` as (backend, format or None): "tflite,openvino:onnx" ->
    [("tflite", None), ("openvino", "onnx")]; None -> ``default`` (every registered backend).
    An unknown backend or format is a UsageError, before anything runs."""
    from edgekit.bundle.formats import FORMATS

    entries = [e.strip() for e in text.split(",") if e.strip()] if text else \
        list(default if default is not None else backend_names())
    names = backend_names()
    chosen = []
    for entry in entries:
        name, _, fmt = entry.partition(":")
        if name not in names:
            raise UsageError(f"unknown backend {name!r}; choose from: {', '.join(names)} "
                             "(each optionally as NAME:FORMAT)")
        if fmt and fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r} in {entry!r}; choose from: "
                             f"{', '.join(FORMATS)}")
        chosen.append((name, fmt or None))
    if not chosen:
        raise UsageError("backends names no backend", param="backends")
    return chosen


def backend_status(name: str) -> BackendStatus:
    """Whether backend ``name`` can run here; never raises for a registered name: a plugin
    that cannot be loaded, or whose probe fails, is unusable with the reason."""
    try:
        return backend_class(name).probe()
    except BackendUnavailable as exc:
        if name not in registry():
            raise
        return BackendStatus(name, False, reason=exc.message, hint=exc.hint)
    except UsageError:
        raise
    except Exception as exc:  # a broken third-party probe must not hide the others
        return BackendStatus(name, False, reason=f"its probe failed: {type(exc).__name__}: "
                                                 f"{first_line(exc, 200)}")


def probe_all() -> list[BackendStatus]:
    """The status of every registered backend, usable or not."""
    return [backend_status(name) for name in backend_names()]


__all__ = [
    "Backend", "BackendStatus", "Concurrency", "Inputs", "MODES", "Pending", "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP", "backend_class", "backend_names", "backend_status",
    "check_concurrency", "open_backend", "parse_backends",
    "probe_all", "register", "registry",
]
