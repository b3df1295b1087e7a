"""Numbers checked where they are used: finite, in range, and within what this machine holds.

One validator for floats (``finite``: NaN and infinity are refused, since every comparison with
NaN is false and a range check alone lets it through) and one for counts (``whole``), each
raising a ``UsageError`` that states the bound. The bounds themselves are here, each with the
reason it has the value it has, so the command line and the Python API refuse the same values
with the same words (the CLI names its flag in front of them). ``checked`` holds a public
function's arguments to its type hints, so a wrong type is one clear error at the entry, not a
TypeError from deep inside a runtime.
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any, TypeVar

from edgekit.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])
# A union hint's origin: typing.Union, and types.UnionType for ``int | None`` (Python 3.10+;
# edgekit also runs on 3.9, in the NCS2's OpenVINO 2021.4 environment).
UNIONS = tuple({typing.Union, getattr(types, "UnionType", typing.Union)})

PER_CORE = 8  # threads, requests or streams per core beyond which nothing more is gained
MIN_PARALLEL = 16  # ... but never fewer than this, whatever the core count
MAX_SIDE = 16384  # the largest image side edgekit makes (an input, a shorter-side resize)
TENSOR_SHARE = 4  # an input tensor may take at most a quarter of this machine's memory
MAX_RUNS = 1_000_000  # timed inferences per bench row: each latency is kept and reported
MAX_SECONDS = 24 * 3600.0  # the longest wait or timing anything here takes: a day
MAX_BENCH_SECONDS = 600.0  # a bench row timed for longer would outlive its worker's timeout
MAX_QUEUE = 64  # frames between two stages of the loop (each a full camera frame)
MAX_DECODE_PIXELS = 1 << 30  # OpenCV's own ceiling on one decoded image (CV_IO_MAX_IMAGE_PIXELS)


def cpu_count() -> int:
    """The cores this process may use (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_parallel() -> int:
    """The most threads, requests in flight or streams one model gets here: PER_CORE per core
    (each request holds its own runtime and buffers; more only queue), at least
    MIN_PARALLEL."""
    return max(MIN_PARALLEL, PER_CORE * cpu_count())


def memory_bytes() -> int:
    """This machine's physical memory (0 when it cannot be told)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 0


def _bound_words(low: float | None, high: float | None, low_open: bool,
                 high_open: bool) -> str:
    if low is not None and high is not None and not low_open and not high_open:
        return f"from {low:g} to {high:g}"
    parts = []
    if low is not None:
        parts.append(f"above {low:g}" if low_open else f"at least {low:g}")
    if high is not None:
        parts.append(f"below {high:g}" if high_open else f"at most {high:g}")
    return " and ".join(parts)


def usage(what: str, message: str) -> UsageError:
    """The UsageError for a bad value of ``what``: a parameter's name, maybe with words after
    it ("settle (seconds)"), which the CLI shows as its flag; or a description ("the image")."""
    name = what.split(" ", 1)[0]
    return UsageError(message, param=name if name.isidentifier() else None)


def finite(value: Any, what: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float: a finite number within the bounds, else a UsageError saying so
    ("duration must be a finite number above 0 and at most 600, not nan")."""
    bounds = _bound_words(low, high, low_open, high_open)
    wanted = f"{what} must be a finite number{' ' + bounds if bounds else ''}"
    if isinstance(value, bool):
        raise usage(what, f"{wanted}, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise usage(what, f"{wanted}, not {value!r}") from None
    if not math.isfinite(number) or \
            (low is not None and (number <= low if low_open else number < low)) or \
            (high is not None and (number >= high if high_open else number > high)):
        raise usage(what, f"{wanted}, not {value}")
    return number


def whole(value: Any, what: str, *, low: int = 1, high: int | None = None,
          why: str = "") -> int:
    """``value``, an int within ``low``..``high``, else a UsageError that states the range
    (and ``why`` the upper bound is what it is)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise usage(what, f"{what} must be a whole number, not {value!r} "
                         f"({type(value).__name__})")
    value = int(value)  # a numpy integer too
    if value < low:
        raise usage(what, f"{what} must be {low} or more, not {value}")
    if high is not None and value > high:
        raise usage(what, f"{what} must be at most {high}{' (' + why + ')' if why else ''}, "
                         f"not {value}")
    return value


def parallel(value: int | None, what: str) -> int | None:
    """Threads, requests or streams: None (the runtime's choice) or 1..``max_parallel()``."""
    if value is None:
        return None
    return whole(value, what, high=max_parallel(),
                 why=f"{PER_CORE} per core for this machine's {cpu_count()}, and never fewer "
                     f"than {MIN_PARALLEL}: more would only queue and hold memory")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:g}"


def check_image_shape(shape: Sequence[Any], what: str = "the input shape") -> None:
    """A model input (N, H, W, C or N, C, H, W) this machine can hold: whole sizes of at least 1,
    no side above MAX_SIDE, and the float32 tensor within a TENSOR_SHARE-th of memory."""
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape):
        raise UsageError(f"{what} {tuple(shape)} must be whole sizes of 1 or more (a model "
                         "with dynamic or negative sizes needs static ones: export it with "
                         "a fixed input shape)")
    if max(shape) > MAX_SIDE:
        raise UsageError(f"{what} {tuple(shape)} has a side of {max(shape)}; edgekit makes "
                         f"images of at most {MAX_SIDE} pixels a side")
    nbytes = math.prod(int(d) for d in shape) * 4
    memory = memory_bytes()
    if memory and nbytes > memory / TENSOR_SHARE:
        raise UsageError(f"{what} {tuple(shape)} makes a float32 tensor of {_size(nbytes)}, "
                         f"more than this machine can hold with room to spare (at most "
                         f"{_size(memory / TENSOR_SHARE)}, a quarter of its "
                         f"{_size(memory)} of memory)")


# ------------------------------------------------------------------------- argument types


def _accepts(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint (its outer type: list[str] checks for a list)."""
    if hint is Any or hint is typing.Any:
        return True
    origin = typing.get_origin(hint)
    if origin in UNIONS:
        return any(_accepts(value, arm) for arm in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        hint = origin
    if hint is Callable or hint is callable:
        return callable(value)
    if not isinstance(hint, type):
        return True  # a TypeVar, a string left unresolved: not checked
    if issubclass(hint, PurePath):  # a path may come as a string too
        return isinstance(value, (str, os.PathLike))
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in UNIONS:
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    if hint is None or hint is type(None):
        return "None"
    hint = origin or hint
    return getattr(hint, "__name__", str(hint))


def check_arguments(function: Callable[..., Any], arguments: dict[str, Any]) -> None:
    """Refuse an argument whose type does not fit ``function``'s type hints (UsageError)."""
    hints = _hints(function)
    for name, value in arguments.items():
        hint = hints.get(name)
        if hint is not None and not _accepts(value, hint):
            raise UsageError(f"{function.__name__}(): {name} takes {_describe(hint)}, not "
                             f"{value!r} ({type(value).__name__})")


@functools.cache
def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # one hint names what is imported only for type checkers: skip that one
        hints = {}
        namespace = getattr(function, "__globals__", None) or vars(
            __import__(function.__module__, fromlist=["_"]))
        for name, hint in getattr(function, "__annotations__", {}).items():
            try:
                hints[name] = eval(hint, namespace) if isinstance(hint, str) else hint
            except Exception:
                continue
        return hints


def checked(function: F) -> F:
    """A public function whose arguments are held to its type hints at the entry."""
    signature = inspect.signature(function)
    variadic = {name for name, p in signature.parameters.items()
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @functools.wraps(function)
    def entry(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # a missing or unknown argument
            raise UsageError(f"{function.__name__}(): {exc}") from None
        check_arguments(function, {k: v for k, v in bound.arguments.items()
                                   if k not in variadic})
        return function(*args, **kwargs)
    return entry  # type: ignore[return-value]


def check_fields(record: Any) -> None:
    """Hold a dataclass's fields to their type hints (from its ``__post_init__``)."""
    hints = _hints(type(record))
    for name, hint in hints.items():
        if name in getattr(record, "__dataclass_fields__", {}) and \
                not _accepts(getattr(record, name), hint):
            value = getattr(record, name)
            raise UsageError(f"{type(record).__name__}: {name} takes {_describe(hint)}, not "
                             f"{value!r} ({type(value).__name__})")
