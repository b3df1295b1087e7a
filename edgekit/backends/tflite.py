"""TFLite on the CPU: LiteRT (ai-edge-litert), else tflite-runtime, else tf.lite.

TensorFlow is the last resort and only imported when neither runtime is
installed: importing it before tflite_runtime in one process breaks the latter.
"""
from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.backends.base import Backend, BackendStatus, Concurrency, shared_threads
from edgekit.backends.pool import RequestPool
from edgekit.bundle.tflite_file import EDGETPU_CUSTOM_OP, TFLiteInfo, read_tflite
from edgekit.errors import BackendUnavailable, InferenceError, InvalidModel, UsageError, first_line

INSTALL_HINT = "install one: pip install ai-edge-litert (or tflite-runtime on numpy < 2)"
# (module, package name) in order of preference.
_RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)


@dataclass(frozen=True)
class TFLiteRuntime:
    """The interpreter class of whichever TFLite runtime is installed."""

    package: str
    version: str
    interpreter: Callable[..., Any]
    load_delegate: Callable[..., Any]

    @property
    def label(self) -> str:
        return f"{self.package} {self.version}"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def find_runtime() -> TFLiteRuntime:
    """The preferred installed TFLite runtime; BackendUnavailable when there is none.

    In a process that has already imported TensorFlow (``edgekit convert``),
    tflite_runtime is passed over: it breaks when loaded after TensorFlow.
    """
    for module_name, package in _RUNTIMES:
        if package == "tflite-runtime" and "tensorflow" in sys.modules:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return TFLiteRuntime(package, _version(package), module.Interpreter, module.load_delegate)
    try:
        import tensorflow as tf  # last resort: only on a workstation with TF and nothing else
    except ImportError:
        raise BackendUnavailable("no TFLite runtime is installed", INSTALL_HINT) from None
    return TFLiteRuntime("tensorflow", tf.__version__, tf.lite.Interpreter,
                         tf.lite.experimental.load_delegate)


def _explain_load_error(path: Path, info: TFLiteInfo, exc: Exception) -> Exception:
    text = str(exc)
    if "_ARRAY_API" in text or "numpy.core.multiarray failed" in text:
        return BackendUnavailable(
            "tflite-runtime was built for numpy 1.x and this environment has numpy 2",
            "pip install 'numpy<2' in its environment, or pip install ai-edge-litert",
        )
    if "unresolved custom op" in text:
        custom = ", ".join(info.custom_ops) or "a custom op"
        return InvalidModel(
            f"{path.name} uses {custom}, which this TFLite runtime does not provide; "
            "it needs the runtime or delegate that defines that op"
        )
    return InvalidModel(f"{path.name}: the TFLite runtime cannot load it: {first_line(exc)}")


class TFLiteBackend(Backend):
    """TFLite models on the CPU, XNNPACK on (the runtimes' default). With N requests: N
    interpreters, each on its own thread with its share of the threads."""

    name = "tflite"
    install_hint = INSTALL_HINT
    async_api = "one interpreter per request"

    def __init__(self, model: str | Path, *, device: str | None = None,
                 threads: int | None = None, concurrency: Concurrency | None = None) -> None:
        super().__init__(model, device=device, threads=threads, concurrency=concurrency)
        self.info = read_tflite(self.model_path)
        self._check_model(self.info)
        self._runtime = find_runtime()
        self.runtime = self._runtime.label
        if self.requests > 1 and self.async_api:
            self.threads_per_request = shared_threads(threads, self.requests)
            interpreters = [self._load(self._delegates()) for _ in range(self.requests)]
            self._pool = RequestPool(self._run_on, interpreters, self.name, self._lock)
        else:
            interpreters = [self._load(self._delegates())]
        self._interpreter = interpreters[0]
        self.inputs = self.info.inputs
        self.outputs = self.info.outputs
        self._in = [d["index"] for d in self._interpreter.get_input_details()]
        self._out = [d["index"] for d in self._interpreter.get_output_details()]
        # infer's runtime call, bound once (a Python method in between costs time on every call)
        self._invoke = functools.partial(self._run_on, self._interpreter)  # type: ignore


    def _check_model(self, info: TFLiteInfo) -> None:
        if self.device.upper() != "CPU":
            raise UsageError(f"the tflite backend runs on the CPU only, not `device` "
                             f"{self.device!r}; leave `device` out, or use `backend` edgetpu "
                             "for a Coral")
        if info.edgetpu_compiled:
            raise InvalidModel(
                f"{self.model_path.name} is compiled for the Edge TPU ({EDGETPU_CUSTOM_OP}); "
                "run it with --backend edgetpu on a Coral, or run the uncompiled int8 .tflite "
                "on the CPU"
            )

    def _delegates(self) -> list[Any]:
        return []

    def _load(self, delegates: list[Any]) -> Any:
        try:
            interpreter = self._runtime.interpreter(
                model_path=str(self.model_path),
                num_threads=self.threads_per_request,
                experimental_delegates=delegates or None,
            )
            interpreter.allocate_tensors()
        except Exception as exc:  # runtimes raise RuntimeError, ValueError, even ImportError
            raise _explain_load_error(self.model_path, self.info, exc) from exc
        return interpreter

    @classmethod
    def probe(cls) -> BackendStatus:
        try:
            runtime = find_runtime()
        except BackendUnavailable as exc:
            return BackendStatus(cls.name, False, reason=exc.message,
                                 hint=exc.hint)
        return BackendStatus(cls.name, True, runtime=runtime.label, devices=["CPU"])

    def _invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self._run_on(self._interpreter, inputs)

    def _runner(self) -> Callable[[np.ndarray], list[np.ndarray]] | None:
        interpreter, name = self._interpreter, self.model_path.name
        set_tensor, invoke, get_tensor = (interpreter.set_tensor, interpreter.invoke,
                                          interpreter.get_tensor)
        index, outputs = self._in[0], tuple(self._out)

        def run(x: np.ndarray) -> list[np.ndarray]:
            try:
                set_tensor(index, x)
                invoke()
            except (RuntimeError, ValueError) as exc:
                raise InferenceError(f"{name}: inference failed: {exc}") from exc
            return [get_tensor(i) for i in outputs]
        return run

    def _run_on(self, interpreter: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
        try:
            for index, x in zip(self._in, inputs):
                interpreter.set_tensor(index, x)
            interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            raise InferenceError(f"{self.model_path.name}: inference failed: {exc}") from exc
        return [interpreter.get_tensor(i) for i in self._out]

    def _release(self) -> None:
        self.__dict__.pop("_invoke", None)  # the runtime call bound in __init__
        self._interpreter = None
