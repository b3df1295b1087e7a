"""One exception hierarchy: every failure a user can act on is an EdgekitError.

The CLI prints ``str(error)`` as one line and exits with ``exit_code``; ``--debug``
shows the traceback. Each message says what happened and what to do next.

    EdgekitError            exit 1: the base class
    ├── UsageError          exit 2: bad arguments, an unknown name, options that clash
    ├── InvalidModel        a model file or bundle missing, damaged, changed or not a model
    ├── InvalidData         calibration, validation or input data of the wrong kind
    ├── ConversionError     a converter failed on a model it accepted
    ├── Skipped             a format that cannot be built here, not a failure (no compiler)
    ├── WriteFailed         an output could not be written; nothing half-written was left
    ├── BackendUnavailable  a runtime not installed (or not loadable); ``.hint`` says how
    ├── DeviceNotFound      the runtime is there, the accelerator or camera is not
    ├── InferenceError      a loaded model failed to run, or got input it cannot take
    ├── SourceLost          a live source stopped delivering frames and did not come back
    └── DeployError         a deploy step failed; the running release stands
        └── ConnectionFailed  SSH could not reach the device, or the link dropped

Every class is exported from ``edgekit`` itself (tests/test_errors.py holds it to that).
"""
from __future__ import annotations

import re
from typing import Callable

QUOTED_PARAM = re.compile(r"`([a-z][a-z0-9_]*)`")  # a parameter a UsageError's message names


def first_line(exc: BaseException, limit: int | None = None, default: str | None = None) -> str:
    """The first non-empty line of an exception's message, cut at ``limit`` characters.

    Runtimes raise multi-line dumps; an error line for a person needs the first. An empty
    message gives ``default`` (the exception's type name unless given).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if default is None else default
    return lines[0][:limit]


class EdgekitError(Exception):
    """Base class: a failure with a message a person can act on."""

    exit_code = 1


class UsageError(EdgekitError):
    """Bad arguments: an unknown name, a wrong option combination.

    ``param``: the parameter a bad value was given for, by its Python name; the message then
    begins with that name ("settle (seconds) must be ..."), and the CLI shows its flag there
    instead ("--settle (seconds) must be ..."): click's ``BadParameter(param_hint=...)``. Other
    parameters the message names are quoted with backticks ("leave `device` out"), and the CLI
    shows their flags there too ("leave --device out"). The library never writes a flag."""

    exit_code = 2

    def __init__(self, message: str = "", param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def naming(self, flag: Callable[[str], str | None] = lambda name: None) -> str:
        """The message with flags in place of parameter names: ``flag(name)`` for the
        parameter it begins with and for each one it quotes (``None``: that name has no flag
        of its own; a quoted one is then shown as ``--name-with-dashes``). For reports the command
        line prints (a skipped benchmark pair's reason)."""
        text = str(self)
        if self.param and text.startswith(self.param):
            text = (flag(self.param) or self.param) + text[len(self.param):]
        return QUOTED_PARAM.sub(
            lambda m: flag(m.group(1)) or "--" + m.group(1).replace("_", "-"), text)


class InvalidModel(EdgekitError):
    """A model file that is missing, corrupt, or not what it claims to be."""


class InvalidData(EdgekitError):
    """Calibration, validation or input data of the wrong kind or shape."""


class ConversionError(EdgekitError):
    """A converter failed on a model it accepted."""


class Skipped(EdgekitError):
    """A format that cannot be built here, for a reason that is not a failure (no compiler)."""


class WriteFailed(EdgekitError):
    """An output could not be written (a full disk, a read-only folder); nothing half-written
    was left, and an earlier file at that path was kept."""


class BackendUnavailable(EdgekitError):
    """A backend whose runtime is not installed here; ``hint`` says how to get it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}; {hint}" if hint else message)
        self.message = message
        self.hint = hint


class DeviceNotFound(EdgekitError):
    """The runtime is installed but the accelerator it needs is not attached."""


class InferenceError(EdgekitError):
    """A model that loaded but failed to run, or input it cannot take."""


class SourceLost(EdgekitError):
    """A live source stopped delivering frames and did not come back."""


class DeployError(EdgekitError):
    """A deployment step failed; the message says which, and that the running release stands."""


class ConnectionFailed(DeployError):
    """SSH could not reach the device, or the link dropped or stalled mid-step."""
