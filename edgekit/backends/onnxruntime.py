"""ONNX models on ONNX Runtime's CPU execution provider."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.backends.base import Backend, BackendStatus, Concurrency, shared_threads
from edgekit.backends.pool import RequestPool
from edgekit.bundle.tensors import TensorInfo
from edgekit.errors import BackendUnavailable, InferenceError, InvalidModel, UsageError, first_line

INSTALL_HINT = "pip install onnxruntime (or: pip install 'edgekit[onnxruntime]')"
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(bool)": "bool",
}


def _import_ort():
    from edgekit.helpers import telemetry

    telemetry.off()
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable("ONNX Runtime is not installed", INSTALL_HINT) from None
    return onnxruntime


def _tensor(node) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorInfo(
        name=node.name, shape=shape, dtype=_ORT_TYPES.get(node.type, node.type),
        dynamic_dims=tuple(i for i, d in enumerate(shape) if d < 0),
    )


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, CPUExecutionProvider; ``threads`` sets intra-op threads. With N
    requests: N sessions, each on its own thread with its share of the threads."""

    name = "onnxruntime"
    install_hint = INSTALL_HINT
    async_api = "one session per request"

    def __init__(self, model: str | Path, *, device: str | None = None,
                 threads: int | None = None, concurrency: Concurrency | None = None) -> None:
        super().__init__(model, device=device, threads=threads, concurrency=concurrency)
        if self.device.upper() != "CPU":
            raise UsageError(f"the onnxruntime backend runs on the CPU only, not `device` "
                             f"{self.device!r}; leave `device` out")
        ort = _import_ort()
        self.runtime = f"onnxruntime {ort.__version__}"
        if self.requests > 1:
            self.threads_per_request = shared_threads(threads, self.requests)
        sessions = [self._load(ort) for _ in range(self.requests)]
        self._session = sessions[0]
        self.inputs = tuple(_tensor(n) for n in self._session.get_inputs())
        self.outputs = tuple(_tensor(n) for n in self._session.get_outputs())
        if any(t.dynamic_dims for t in self.inputs):
            raise InvalidModel(
                f"{self.model_path.name} has inputs of unknown size {self.inputs[0].shape}; "
                "export it with static shapes (edgekit convert does)"
            )
        self._input_names = [t.name for t in self.inputs]
        self._output_names = [t.name for t in self.outputs]
        self._invoke = functools.partial(self._run_on, self._session)  # type: ignore
        if len(sessions) > 1:
            self._pool = RequestPool(self._run_on, sessions, self.name, self._lock)

    def _load(self, ort) -> Any:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads_per_request:
            options.intra_op_num_threads = self.threads_per_request
        try:
            return ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise InvalidModel(
                f"{self.model_path.name}: ONNX Runtime cannot load it ({first_line(exc)}); "
                "is it a complete .onnx file? convert it again"
            ) from exc


    @classmethod
    def probe(cls) -> BackendStatus:
        try:
            ort = _import_ort()
        except BackendUnavailable as exc:
            return BackendStatus(cls.name, False, reason="ONNX Runtime is not installed",
                                 hint=exc.hint)
        return BackendStatus(cls.name, True, runtime=f"onnxruntime {ort.__version__}",
                             devices=["CPU"])

    def _invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self._run_on(self._session, inputs)

    def _runner(self) -> Callable[[np.ndarray], list[np.ndarray]] | None:
        session_run, outputs, name = self._session.run, self._output_names, self._input_names[0]
        model = self.model_path.name

        def run(x: np.ndarray) -> list[np.ndarray]:
            try:
                return session_run(outputs, {name: x})
            except Exception as exc:
                raise InferenceError(f"{model}: inference failed: {exc}") from exc
        return run

    def _run_on(self, session: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(self._output_names, dict(zip(self._input_names, inputs)))
        except Exception as exc:
            raise InferenceError(f"{self.model_path.name}: inference failed: {exc}") from exc

    def _release(self) -> None:
        self.__dict__.pop("_invoke", None)  # the runtime call bound in __init__
        self._session = None
