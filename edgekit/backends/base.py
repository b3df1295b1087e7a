"""The Backend contract: load one artifact, ``infer(inputs) -> outputs``, ``close()``.

Subclasses implement ``_invoke`` on tensors already in the artifact's own
shapes and dtypes; ``infer`` checks the inputs, quantises float data for an
integer artifact and dequantises the outputs, once, for every backend.

Several inferences in flight: ``start(inputs) -> Pending`` begins one and
``Pending.result()`` collects it (the same outputs ``infer`` gives). A backend
opened with ``Concurrency(requests=N)`` holds N requests: OpenVINO through its
infer-request queue, TFLite and ONNX Runtime with one interpreter or session per
request, each on its own thread, the threads shared out between them. A backend
with no asynchronous path of its own gets the default: ``start`` runs the
inference at once and hands back a finished ``Pending``.

Threads: a backend may be shared by threads. Calls into its runtime are serialised by one
lock per backend (``infer``, ``start`` and ``close``; the checks on the inputs and the
dequantising of the outputs run outside it), so each caller always gets the outputs of its own
input: one inference at a time, whatever the number of threads. Several at once is what
``Concurrency(requests=N)`` and ``start`` are for.
"""
from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Union

import numpy as np

from edgekit.bundle.formats import FORMATS, backend_suffixes, preferred_formats, table_backends
from edgekit.bundle.quant import dequantize, prepare_input
from edgekit.bundle.tensors import TensorInfo
from edgekit.errors import InferenceError, InvalidModel, UsageError
from edgekit.helpers.limits import check_fields, cpu_count, parallel

Inputs = Union[np.ndarray, Sequence[np.ndarray]]


@dataclass
class BackendStatus:
    """Whether a backend can run here, and if not, why and how to fix it."""

    name: str
    usable: bool
    runtime: str = ""  # e.g. "ai-edge-litert 2.3.0"
    devices: list[str] = field(default_factory=list)
    reason: str = ""
    hint: str = ""


MODES = ("latency", "throughput")


@dataclass(frozen=True)
class Concurrency:
    """How many inferences a backend keeps in flight, and what its runtime is tuned for.

    ``mode``: "latency" (one inference as fast as possible: OpenVINO's LATENCY hint) or
    "throughput" (as many per second as possible: the THROUGHPUT hint). ``requests``: the
    inferences in flight (None: 1 in latency mode, the runtime's recommendation in throughput
    mode: OpenVINO's optimal number of requests, else the core count). ``streams``: OpenVINO's
    execution streams (None: the runtime's choice); only backends that have streams take it.
    """

    mode: str = "latency"
    requests: int | None = None
    streams: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.mode not in MODES:
            raise UsageError(f"mode {self.mode!r} is unknown; choose latency (one inference at "
                             "a time, as fast as it goes) or throughput (several in flight)",
                             param="mode")
        parallel(self.requests, "requests")
        parallel(self.streams, "streams")


def shared_threads(threads: int | None, requests: int) -> int | None:
    """Threads per request when ``requests`` runtimes share the CPU: ``threads`` (or every
    core) divided between them, at least 1 each; None (the runtime's choice) for one request."""
    if requests <= 1:
        return threads
    return max(1, (threads or cpu_count()) // requests)


class Pending:
    """One inference begun with ``Backend.start``: ``result()`` waits for it and gives the
    outputs ``infer`` would have; ``started_ns`` and ``done_ns`` (``perf_counter_ns``) say
    when it began and when the runtime finished it.

    Three ways to finish one: at once (the default wrapper: ``complete`` before ``start``
    returns); from another thread (``waiting()``, then ``complete`` or ``fail`` there); or on
    demand (``later(collect, poll)``: ``result`` calls ``collect``, which waits for the
    runtime and then calls ``complete``; ``poll`` says whether it would wait)."""

    __slots__ = ("started_ns", "done_ns", "_event", "_raw", "_error", "_finish", "_collect",
                 "_poll", "_lock")

    def __init__(self, finish: Callable[[list[np.ndarray]], list[np.ndarray]]) -> None:
        self.started_ns = time.perf_counter_ns()
        self.done_ns = 0
        self._event: threading.Event | None = None
        self._raw: list[np.ndarray] | None = None
        self._error: BaseException | None = None
        self._finish = finish
        self._collect: Callable[[], None] | None = None
        self._poll: Callable[[], bool] | None = None
        self._lock: threading.Lock | None = None

    def waiting(self) -> Pending:
        """Mark it as finished later, on another thread (``complete`` or ``fail``)."""
        self._event = threading.Event()
        return self

    def later(self, collect: Callable[[], None], poll: Callable[[], bool]) -> Pending:
        """Mark it as finished by ``collect()`` when its result is asked for."""
        self._collect, self._poll, self._lock = collect, poll, threading.Lock()
        return self

    def complete(self, raw: list[np.ndarray], done_ns: int | None = None) -> None:
        self._raw = raw
        self.done_ns = done_ns or time.perf_counter_ns()
        if self._event is not None:
            self._event.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self.done_ns = time.perf_counter_ns()
        if self._event is not None:
            self._event.set()

    def finished(self) -> bool:
        """Whether its outputs (or its error) are here: ``result`` will not wait."""
        return self._raw is not None or self._error is not None

    def done(self) -> bool:
        """Whether the runtime has finished it (``result`` returns without waiting for it)."""
        if self.finished():
            return True
        if self._event is not None:
            return self._event.is_set()
        return self._poll() if self._poll is not None else True

    def settle(self) -> None:
        """Wait for the runtime and take its outputs (once, whichever thread asks first)."""
        if self._event is not None:
            self._event.wait()
        elif self._collect is not None and not self.finished():
            with self._lock:
                if not self.finished():
                    self._collect()

    def result(self) -> list[np.ndarray]:
        """The outputs (float32, dequantised), once the runtime has them; raises the
        inference's InferenceError if it failed."""
        self.settle()
        if self._error is not None:
            raise self._error
        return self._finish(self._raw)


@dataclass
class _Plan:
    inputs: list[tuple[TensorInfo, tuple[int, ...], np.dtype]]
    dequantize: bool
    single: tuple[tuple[int, ...], np.dtype] | None = None  # a one-input model's shape, dtype


class Backend(ABC):
    """One loaded artifact on one runtime and device. Use as a context manager.

    Safe to share between threads: calls are serialised (one inference at a time, each
    caller gets its own input's outputs); for several in flight use ``Concurrency`` and
    ``start``."""

    name: ClassVar[str] = ""
    # The file types a third-party backend reads; a built-in's come from the format table.
    suffixes: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""
    default_device: ClassVar[str] = "CPU"

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    runtime: str  # "<package> <version>" of the runtime that loaded the artifact
    device: str
    threads: int | None
    precision: str = ""  # the precision the runtime computes in, where it chooses one (OpenVINO)
    # How ``start`` runs several inferences at once ("": the default, one after another).
    async_api: ClassVar[str] = ""
    has_streams: ClassVar[bool] = False  # takes Concurrency.streams (OpenVINO)
    requests: int = 1  # inferences it holds in flight
    streams: int | None = None  # the runtime's execution streams, where it has them
    threads_per_request: int | None = None  # where requests share the threads out

    def __init__(self, model: str | Path, *, device: str | None = None,
                 threads: int | None = None, concurrency: Concurrency | None = None) -> None:
        self.model_path = Path(model)
        # Held around every call into the runtime: its interpreter, session or infer request
        # is not safe to use from two threads at once (answers came back swapped).
        self._lock = threading.Lock()
        self.device = device or self.default_device
        self.threads = threads
        self.concurrency = concurrency or Concurrency()
        # Without an asynchronous path of its own, a backend runs one inference at a time.
        self.requests = 1 if not self.async_api else self.concurrency.requests or (
            1 if self.concurrency.mode == "latency" else cpu_count())
        self.threads_per_request = threads
        parallel(threads, "threads (None: the runtime's choice)")
        if not self.model_path.exists():
            raise InvalidModel(f"{self.model_path}: no such file")
        readable = self.file_suffixes()
        if readable and self.model_path.suffix.lower() not in readable:
            raise InvalidModel(
                f"{self.model_path.name}: the {self.name} backend reads "
                f"{', '.join(readable)} files, not {self.model_path.suffix or 'this file'}"
            )

    @classmethod
    def runtime_version(cls) -> str | None:
        """The installed runtime's version, where the formats it reads depend on it (None:
        they do not, or it is not installed)."""
        return None

    @classmethod
    def preferred_formats(cls) -> tuple[str, ...]:
        """Bundle formats this backend runs here, best first: the format table's ``runs_on``
        (with this runtime's version), or for a third-party backend every format whose file
        type it reads, in table order."""
        if cls.name in table_backends():
            return preferred_formats(cls.name, cls.runtime_version())
        return tuple(k for k, f in FORMATS.items() if f.extension in cls.suffixes)

    @classmethod
    def file_suffixes(cls) -> tuple[str, ...]:
        """The file types it reads (".tflite", ".onnx", ".xml")."""
        return backend_suffixes(cls.name) if cls.name in table_backends() else cls.suffixes

    @classmethod
    def runs(cls, key: str) -> bool:
        """Whether it runs the ``key`` artifact here."""
        return key in cls.preferred_formats()

    @classmethod
    @abstractmethod
    def probe(cls) -> BackendStatus:
        """Say whether this backend's runtime (and device) is usable here; never raises."""

    @abstractmethod
    def _invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the artifact on inputs in its own dtypes; return its raw outputs."""

    def infer(self, inputs: Inputs) -> list[np.ndarray]:
        """Run one inference: float inputs in the pre-processed space, float32 outputs.

        Each input is a numpy array of the model's shape, in the artifact's own dtype or as
        floats (float64 and float16 are converted to what the artifact takes; an integer
        artifact's input is quantised with its scale and zero point). Raises InferenceError,
        naming what the model takes, for: no input (None), a wrong shape or count, a dtype
        that is neither the artifact's nor float (int32 for a float model, bool, object...),
        NaN or infinite values, and a backend already closed.
        """
        fast = self._fast
        if fast is not None:  # a one-input model, after the first call: ``_fast_infer``
            return fast(inputs)
        return self._checked_infer(inputs)

    def _checked_infer(self, inputs: Inputs) -> list[np.ndarray]:
        """``infer`` with every check, any input: a first call, several inputs, an array that
        needs converting, an error to explain."""
        ready = self._ready(inputs)
        with self._lock:
            if self._closed:  # closed by another thread since the check in _ready
                raise self._closed_error()
            raw = self._invoke(ready)
        return self._outputs(raw)

    def _runner(self) -> Callable[[np.ndarray], list[np.ndarray]] | None:
        """The runtime call for a one-input model's ready array, with as little as possible
        around it (a closure over the runtime's objects: ``infer``'s hot path); None: the
        generic ``_invoke``. Raises InferenceError as ``_invoke`` does."""
        return None

    def _fast_infer(self, plan: _Plan) -> Callable[[Inputs], list[np.ndarray]] | None:
        """``infer`` for a one-input model as one closure: an array already in the artifact's
        shape, dtype and layout, finite, goes straight to the runtime; anything else goes
        through ``_checked_infer``. On LeNet the layers of method calls around the runtime
        call cost more than the checks: with caches cold from the inference, each Python call
        and attribute lookup costs several times its warm time (``scripts/bench_overhead.py``
        measures it; the figures are in docs/figures.md)."""
        if plan.single is None:
            return None
        shape, dtype = plan.single
        floats = dtype.kind == "f"
        quick = dtype in (np.float32, np.float64)  # x.x inline (float16 overflows: the slow way)
        invoke = self._invoke
        run = self._runner() or (lambda x: invoke([x]))
        finish = self._outputs if plan.dequantize else None
        checked = self._checked_infer
        ndarray, vdot, isfinite, all_finite = np.ndarray, np.vdot, math.isfinite, _all_finite
        # The lock as bound methods and try/finally: ``with lock`` costs more on this path, and
        # uncontended the lock is a small share of the call (docs/figures.md, the call path).
        acquire, release = self._lock.acquire, self._lock.release

        def infer(inputs: Inputs) -> list[np.ndarray]:
            if inputs.__class__ is ndarray and inputs.shape == shape and inputs.dtype is dtype \
                    and inputs.flags.c_contiguous and (
                        (quick and isfinite(vdot(inputs, inputs))) or not floats
                        or all_finite(inputs)):  # (x.x overflowed, or NaN: the exact check)
                acquire()
                try:
                    raw = run(inputs)
                finally:
                    release()
                return raw if finish is None else finish(raw)
            return checked(inputs)
        return infer

    def _ready(self, inputs: Inputs) -> list[np.ndarray]:
        """The inputs checked and in the artifact's own shapes and dtypes (infer's errors)."""
        if self._closed:
            raise self._closed_error()
        if inputs is None:
            raise InferenceError(f"{self.model_path.name}: no input (None); it takes "
                                 f"{self._expected()}")
        if not isinstance(inputs, (np.ndarray, list, tuple)):
            raise InferenceError(f"{self.model_path.name}: the input is a "
                                 f"{type(inputs).__name__}; it takes a numpy array "
                                 f"{self._expected()} (or a list of arrays, one per input)")
        arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        plan = self._plan or self._make_plan()
        if len(arrays) != len(plan.inputs):
            raise InferenceError(
                f"{self.model_path.name} takes {len(self.inputs)} input(s), got {len(arrays)}"
            )
        for i, a in enumerate(arrays):
            if a is None:
                raise InferenceError(f"{self.model_path.name}: input {i} is None; it takes "
                                     f"{self._expected()}")
            if isinstance(a, np.ndarray) and a.dtype.kind == "f" and not _all_finite(a):
                raise InferenceError(f"{self.model_path.name}: input {i} holds NaN or infinite "
                                     "values; give finite numbers in the model's pre-processed "
                                     "space")
        ready = [
            a if (a.__class__ is np.ndarray and a.shape == shape and a.dtype == dtype
                  and a.flags.c_contiguous) else prepare_input(a, spec, i)
            for i, (a, (spec, shape, dtype)) in enumerate(zip(arrays, plan.inputs))
        ]
        return ready

    def start(self, inputs: Inputs) -> Pending:
        """Begin one inference and return at once (or when a request is free: at most
        ``requests`` are in flight); ``Pending.result()`` gives what ``infer`` would. Inputs
        are checked, and copied, before it returns: the caller may reuse its array. Collect
        results in the order started to keep every request busy."""
        pending = Pending(self._outputs)
        ready = self._ready(inputs)
        with self._lock:
            if self._closed:
                raise self._closed_error()
            self._start(ready, pending)
        return pending

    # Where each request has a runtime of its own (TFLite, ONNX Runtime): a RequestPool
    # (pool.py) that ``_start`` hands inferences to, closed with the backend.
    _pool = None

    def _start(self, ready: list[np.ndarray], pending: Pending) -> None:
        """Run ``ready`` and complete ``pending``: on the request pool where there is one,
        else now, on this thread (the default). A backend that runs it later must copy any
        array of ``ready`` it keeps: the caller's own array may be among them. Called with
        the backend's lock held."""
        if self._pool is not None:
            self._pool.submit(ready, pending)
            return
        try:
            pending.complete(self._invoke(ready))
        except InferenceError as exc:
            pending.fail(exc)

    def _outputs(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        plan = self._plan or self._make_plan()
        if not plan.dequantize:
            return raw
        return [dequantize(r, spec) for r, spec in zip(raw, self.outputs)]

    _plan: _Plan | None = None

    def _make_plan(self) -> _Plan:
        """What infer checks per call, worked out once (shapes, numpy dtypes, quantisation)."""
        self._plan = _Plan(
            inputs=[(t, tuple(t.shape), np.dtype(t.dtype)) for t in self.inputs],
            dequantize=any(t.quantization is not None or t.dtype != "float32"
                           for t in self.outputs),
        )
        if len(self._plan.inputs) == 1:
            self._plan.single = self._plan.inputs[0][1:]
        if not self._closed:
            self._fast = self._fast_infer(self._plan)
        return self._plan

    _fast: Callable[[Inputs], list[np.ndarray]] | None = None

    _closed = False

    def _closed_error(self) -> InferenceError:
        return InferenceError(f"{self.model_path.name} on {self.name}: this backend was "
                              "closed; open the model again to run it")

    def _expected(self) -> str:
        return ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in self.inputs)

    def close(self) -> None:
        """Release the runtime's resources. Safe to call twice; ``infer`` then refuses. An
        inference another thread is running finishes first."""
        with self._lock:
            self._closed = True
            self._fast = None  # infer then says it was closed
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()  # inferences already started finish first (one of them takes the lock)
        with self._lock:
            self._release()

    def _release(self) -> None:
        """Drop the runtime's objects (subclasses)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        threads = "default" if self.threads is None else str(self.threads)
        if self.requests > 1 and self.threads_per_request != self.threads:
            threads = f"{self.threads_per_request} per request"
        precision = f", precision {self.precision}" if self.precision else ""
        flight = ""
        if self.requests > 1 or self.concurrency.mode != "latency":
            flight = (f", {self.concurrency.mode} mode, {self.requests} request"
                      f"{'' if self.requests == 1 else 's'}")
            if self.streams:
                flight += f", {self.streams} stream{'' if self.streams == 1 else 's'}"
        return (f"{self.name} ({self.runtime}, device {self.device}, threads {threads}"
                f"{precision}{flight})")


def _all_finite(x: np.ndarray) -> bool:
    """No NaN or infinity in ``x``. One BLAS dot product, x.x (cheaper than
    ``np.isfinite(x).all()``, which allocates a mask: docs/figures.md): it is finite exactly
    when every value is, and NaN or inf go through it without a floating-point warning. Only
    finite values above 1.8e19, far outside any pre-processed input, overflow it (numpy warns
    once); the exact check then settles it."""
    flat = x.ravel()
    if math.isfinite(flat.dot(flat)):
        return True
    return bool(np.isfinite(x).all())
