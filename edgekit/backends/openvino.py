"""OpenVINO: IR (.xml + .bin), ONNX and TFLite files on CPU, GPU, NPU, AUTO or MYRIAD.

Three generations of the Python API exist in the field and this backend speaks
all of them: ``openvino`` (2023.1+), ``openvino.runtime`` (2022.x, the last
with the MYRIAD plugin for the Intel NCS2) and ``openvino.inference_engine``
(2021.4 and older). The fast path is one infer request, reused, with each input
tensor bound once to a buffer that ``infer`` copies into. Several requests in flight
(``Concurrency``) are as many such requests, started with ``start_async`` and waited on
in order, compiled under the LATENCY or THROUGHPUT hint, with ``NUM_STREAMS`` when streams
are given. OpenVINO 2021.4 (the NCS2's runtime) has no hints: its requests come from
``load_network(num_requests=...)`` and start with ``async_infer``; on a CPU, throughput
mode asks for ``CPU_THROUGHPUT_STREAMS``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.backends.base import Backend, BackendStatus, Concurrency, Pending
from edgekit.bundle.tensors import TensorInfo
from edgekit.bundle.tflite_file import read_tflite
from edgekit.errors import (
    BackendUnavailable,
    DeviceNotFound,
    InferenceError,
    InvalidModel,
    UsageError,
    first_line,
)

INSTALL_HINT = "pip install openvino (or: pip install 'edgekit[openvino]')"
MYRIAD_HINT = (
    "the Intel NCS2 (MYRIAD) needs OpenVINO 2022.3 LTS or older: from PyPI only "
    "openvino==2021.4.2 (Python 3.9 or older) ships the MYRIAD plugin, e.g. python3.9 -m venv "
    "ncs2 && ncs2/bin/pip install openvino==2021.4.2 edgekit; OpenVINO 2022.3 LTS from Intel's "
    "archive or APT repository has it too (Python 3.10 or older). Then apt-get install "
    "libusb-1.0-0, add Intel's udev rules (97-myriad-usbboot.rules) and run edgekit from there"
)
NCS2_HINT = (
    "plug the stick into a USB port (`lsusb` shows 03e7:2485 or 03e7:f63b), add Intel's udev "
    "rules (97-myriad-usbboot.rules) and make sure your user may access it"
)
_VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")
_DEVICE_TYPES = ("CPU", "GPU", "NPU", "MYRIAD", "GNA", "HDDL", "VPUX")  # OpenVINO's plugins
_OV_TYPES = {
    "f32": "float32", "f16": "float16", "f64": "float64", "u8": "uint8", "i8": "int8",
    "i32": "int32", "i64": "int64", "boolean": "bool",
}


def _import_core() -> tuple[Any, str, str]:
    """(Core class, version, api) for whichever OpenVINO API is installed."""
    from edgekit.helpers import telemetry

    telemetry.off()
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable("OpenVINO is not installed", INSTALL_HINT) from None
    core = getattr(openvino, "Core", None)
    if core is not None:  # 2023.1 and newer
        return core, openvino.__version__.split("-")[0], "openvino"
    try:
        from openvino.runtime import Core, get_version  # 2022.x
        return Core, get_version().split("-")[0], "openvino.runtime"
    except ImportError:
        pass
    try:
        from openvino.inference_engine import IECore, get_version  # 2021.4 and older
        return IECore, get_version().split("-")[0], "openvino.inference_engine"
    except ImportError:
        raise BackendUnavailable("the installed openvino package has no usable Python API",
                                 INSTALL_HINT) from None


def myriad_plugin_problem(core: Any, version: str) -> BackendUnavailable | None:
    """Why this OpenVINO cannot drive an NCS2 at all (None when its MYRIAD plugin loads)."""
    if _major(version) >= 2023:
        return BackendUnavailable(f"OpenVINO {version} has no MYRIAD plugin", MYRIAD_HINT)
    try:
        core.get_versions("MYRIAD")
    except Exception as exc:
        text = str(exc)
        if "libusb" in text:
            return BackendUnavailable("the MYRIAD plugin cannot load: libusb-1.0 is missing",
                                      "apt-get install libusb-1.0-0")
        if "not registered" in text or "Failed to create plugin" in text:
            return BackendUnavailable(
                f"this OpenVINO {version} was installed without a working MYRIAD plugin "
                f"({first_line(exc, 120)})", MYRIAD_HINT)
        return BackendUnavailable(f"the MYRIAD plugin fails to load: {text[:160]}", MYRIAD_HINT)
    return None


def _explain_load_error(path: Path, device: str, version: str, exc: Exception) -> Exception:
    text = str(exc).strip()
    if "NC_ERROR" in text or "Can not init Myriad" in text:
        return DeviceNotFound(f"OpenVINO {version} cannot open the Intel NCS2 ({text[:80]}); "
                              + NCS2_HINT)
    if "Cannot find reader for model format: xml" in text:
        return InvalidModel(f"{path.name} is IR v11 (written by OpenVINO 2022.1 or newer), which "
                            f"OpenVINO {version} cannot read; run the bundle's .onnx instead "
                            "(--format onnx)")
    lines = [line for line in text.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(("Exception from", "Check "))]
    first = (meaningful or lines or [type(exc).__name__])[0][:300]
    return InvalidModel(f"{path.name}: OpenVINO {version} cannot load it on {device}: {first}")


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def _inference_precision(compiled: Any) -> str:
    """The precision the plugin computes in ("f32", "bf16", "f16"), or "" if it cannot say."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except Exception:  # older plugins and virtual devices may not report it
        return ""
    name = getattr(value, "get_type_name", lambda: str(value))()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


def _int_property(compiled: Any, name: str) -> int | None:
    """An integer property of a compiled model (NUM_STREAMS...), or None if it has none."""
    try:
        return int(compiled.get_property(name))
    except Exception:
        return None


def _legacy_streams(executable: Any) -> int | None:
    """The CPU streams OpenVINO 2021.4 compiled with (None if it cannot say)."""
    try:
        return int(executable.get_config("CPU_THROUGHPUT_STREAMS"))
    except Exception:
        return None


def _tensor(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    names = port.get_names()
    return TensorInfo(
        name=sorted(names)[0] if names else "",
        shape=shape,
        dtype=_OV_TYPES.get(port.get_element_type().get_type_name(), "float32"),
        dynamic_dims=tuple(i for i, d in enumerate(shape) if d < 0),
    )


class OpenVINOBackend(Backend):
    """OpenVINO Runtime: one synchronous infer request for ``infer``, ``requests`` infer
    requests started asynchronously for ``start``; the LATENCY or THROUGHPUT hint."""

    name = "openvino"
    install_hint = INSTALL_HINT
    async_api = "OpenVINO infer requests (start_async / wait)"
    has_streams = True

    def __init__(self, model: str | Path, *, device: str | None = None,
                 threads: int | None = None, concurrency: Concurrency | None = None) -> None:
        super().__init__(model, device=device, threads=threads, concurrency=concurrency)
        self._slots: list[tuple[Any, list[np.ndarray]]] = []  # (request, input buffers)
        self._held: list[Pending | None] = []  # each slot's last inference
        self._next = 0
        self.device = self.device.upper()
        core_class, self.version, self.api = _import_core()
        self._legacy = self.api == "openvino.inference_engine"  # 2021.4: requests, blobs
        self.runtime = f"openvino {self.version}"
        self._check_file()
        self._core = core_class()
        self._check_device(self._core)
        if self._legacy:
            self._load_legacy()
        else:
            self._load()
        if any(t.dynamic_dims for t in self.inputs):
            raise InvalidModel(f"{self.model_path.name} has inputs of unknown size "
                               f"{self.inputs[0].shape}; export it with static shapes")

    @classmethod
    def runtime_version(cls) -> str | None:
        """What the formats it reads depend on (the format table's ``since``): OpenVINO 2021.4
        reads no IR v11 and no .tflite, so a bundle's ONNX comes first there."""
        try:
            _core, version, _api = _import_core()
        except BackendUnavailable:
            return None
        return version

    def _check_file(self) -> None:
        path = self.model_path
        if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").exists():
            raise InvalidModel(f"{path.name} has no weights file beside it "
                               f"({path.with_suffix('.bin').name}); copy the .bin with the .xml")
        if path.suffix.lower() == ".tflite":
            info = read_tflite(path)
            if info.edgetpu_compiled:
                raise InvalidModel(f"{path.name} is compiled for the Edge TPU; OpenVINO "
                                   "cannot run it: give it the uncompiled .tflite")
            self._tflite = info

    def _check_device(self, core: Any) -> None:
        base = self.device.split(":")[0].split(".")[0]
        if base in _VIRTUAL_DEVICES:
            return
        if base == "MYRIAD":
            problem = myriad_plugin_problem(core, self.version)
            if problem is not None:
                raise problem
        available = list(core.available_devices)
        if base not in _DEVICE_TYPES and not any(d.split(".")[0] == base for d in available):
            raise UsageError(f"OpenVINO has no device {self.device!r}: give one of "
                             f"{', '.join(_DEVICE_TYPES + _VIRTUAL_DEVICES)} (this machine has "
                             f"{', '.join(available) or 'none'}), e.g. `device` CPU")
        if not any(d == self.device or d.split(".")[0] == base for d in available):
            if base == "MYRIAD":
                raise DeviceNotFound(f"no Intel NCS2 (MYRIAD) is attached (OpenVINO "
                                     f"{self.version} sees: {', '.join(available)}); {NCS2_HINT}")
            raise DeviceNotFound(
                f"OpenVINO {self.version} sees no {self.device} device here "
                f"(it sees: {', '.join(available) or 'none'}); use --infer device=CPU or AUTO, "
                "or attach the device and install its driver"
            )

    def _config(self) -> dict[str, str]:
        config = {"PERFORMANCE_HINT": self.concurrency.mode.upper()}
        if self.concurrency.streams:
            config["NUM_STREAMS"] = str(self.concurrency.streams)
        if self.device == "CPU":
            # On a CPU with bfloat16 (AVX512_BF16, AMX) OpenVINO's CPU plugin computes in bf16
            # unless told otherwise: on an AMD EPYC here, LeNet's FP32 IR then strayed 5.4e-3
            # from Keras instead of 6.6e-7. An FP32 artifact is run in f32.
            config["INFERENCE_PRECISION_HINT"] = "f32"
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = str(self.threads)
        return config

    def _load(self) -> None:
        try:
            model = self._core.read_model(str(self.model_path))
            compiled = self._core.compile_model(model, self.device, self._config())
        except Exception as exc:
            raise _explain_load_error(self.model_path, self.device, self.version, exc) from exc
        self.inputs = self._boundary([_tensor(p) for p in compiled.inputs], "inputs")
        self.outputs = self._boundary([_tensor(p) for p in compiled.outputs], "outputs")
        self._compiled = compiled
        self.precision = _inference_precision(compiled)
        self.streams = _int_property(compiled, "NUM_STREAMS")
        if self.concurrency.requests is None and self.concurrency.mode == "throughput":
            self.requests = _int_property(compiled, "OPTIMAL_NUMBER_OF_INFER_REQUESTS") or \
                self.requests
        self._request, self._buffers = self._bound_request(compiled)
        if self.requests > 1:
            self._slots = [self._bound_request(compiled) for _ in range(self.requests)]
            self._held = [None] * self.requests

    def _bound_request(self, compiled: Any) -> tuple[Any, list[np.ndarray]]:
        """A new infer request with each input tensor bound to a buffer it reads in place."""
        request = compiled.create_infer_request()
        tensor_class = type(request.get_input_tensor(0))
        buffers = []
        for i, spec in enumerate(self.inputs):
            buffer = np.zeros(spec.shape, dtype=spec.dtype)
            request.set_input_tensor(i, tensor_class(buffer, shared_memory=True))
            buffers.append(buffer)
        return request, buffers

    def _start(self, ready: list[np.ndarray], pending: Pending) -> None:
        """The next of ``requests`` infer requests, round robin, started asynchronously (its
        previous inference collected first); ``result`` waits on it. No Python callback runs
        on OpenVINO's threads: one that waits for the GIL while the interpreter tears the
        compiled model down (which joins those threads) deadlocks, as AsyncInferQueue's
        callbacks did here at the end of a bench worker."""
        if not self._slots:
            return super()._start(ready, pending)
        i = self._next
        self._next = (i + 1) % len(self._slots)
        earlier = self._held[i]
        if earlier is not None:
            earlier.settle()  # its request is about to be reused
        request, buffers = self._slots[i]
        legacy = self._legacy
        try:
            for buffer, x in zip(buffers, ready):
                np.copyto(buffer, x)
            if legacy:
                request.async_infer()
            else:
                request.start_async()
        except Exception as exc:
            raise InferenceError(f"{self.model_path.name}: inference failed: {exc}") from exc
        poll = (lambda: request.wait(0) == 0) if legacy else (lambda: request.wait_for(0))
        pending.later(lambda: self._collect(request, pending), poll)
        self._held[i] = pending

    def _collect(self, request: Any, pending: Pending) -> None:
        try:
            if self._legacy:
                status = request.wait(-1)  # 0: OK; anything else is an InferenceEngine error
                if status != 0:
                    raise RuntimeError(f"the request ended with status {status}")
                outputs = [request.output_blobs[n].buffer.copy() for n in self._out_names]
            else:
                request.wait()
                outputs = [request.get_output_tensor(i).data.copy()
                           for i in range(len(self.outputs))]
        except Exception as exc:
            pending.fail(InferenceError(f"{self.model_path.name}: inference failed: {exc}"))
            return
        # The request's own latency, start_async to completion, measured by OpenVINO.
        latency_ms = getattr(request, "latency", None)
        pending.complete(outputs, pending.started_ns + int(latency_ms * 1e6)
                         if latency_ms else None)

    def _legacy_config(self) -> dict[str, str]:
        """OpenVINO 2021.4's settings: no performance hints there; on a CPU the threads, and
        in throughput mode the plugin's streams (``CPU_THROUGHPUT_AUTO`` unless given)."""
        if self.device != "CPU":
            if self.concurrency.streams:
                raise UsageError(f"OpenVINO {self.version} takes `streams` on the CPU only, not "
                                 f"on {self.device}; leave `streams` out (`requests` sets how "
                                 "many inferences are in flight)")
            return {}
        config = {}
        if self.threads:
            config["CPU_THREADS_NUM"] = str(self.threads)
        if self.concurrency.streams:
            config["CPU_THROUGHPUT_STREAMS"] = str(self.concurrency.streams)
        elif self.concurrency.mode == "throughput":
            config["CPU_THROUGHPUT_STREAMS"] = "CPU_THROUGHPUT_AUTO"
        return config

    def _load_legacy(self) -> None:
        """OpenVINO 2021.4 and older (inference_engine): IR or ONNX, no TFLite. ``infer`` runs
        the network's synchronous call; with several requests, ``start`` hands each inference
        to the next of the requests ``load_network`` made (0 asks it for the plugin's optimal
        number: in throughput mode without --requests)."""
        optimal = self.concurrency.requests is None and self.concurrency.mode == "throughput"
        config = self._legacy_config()
        try:
            weights = self.model_path.with_suffix(".bin")
            network = self._core.read_network(
                model=str(self.model_path), weights=str(weights) if weights.exists() else ""
            )
            self._exec = self._core.load_network(network, self.device, config,
                                                 num_requests=0 if optimal else self.requests)
        except Exception as exc:
            raise _explain_load_error(self.model_path, self.device, self.version, exc) from exc
        self._in_names = list(network.input_info)
        self._out_names = list(network.outputs)
        self.inputs = tuple(
            TensorInfo(n, tuple(network.input_info[n].tensor_desc.dims), "float32")
            for n in self._in_names
        )
        self.outputs = tuple(
            TensorInfo(n, tuple(network.outputs[n].shape), "float32") for n in self._out_names
        )
        self.requests = len(self._exec.requests)
        if self.device == "CPU":
            self.streams = _legacy_streams(self._exec)
        if self.requests > 1:
            self._slots = [(r, [r.input_blobs[n].buffer for n in self._in_names])
                           for r in self._exec.requests]
            self._held = [None] * self.requests

    def _boundary(self, found: list[TensorInfo], which: str) -> tuple[TensorInfo, ...]:
        """For a .tflite file, keep the file's quantisation on the inputs and outputs."""
        tflite = getattr(self, "_tflite", None)
        if tflite is None:
            return tuple(found)
        declared = getattr(tflite, which)
        return tuple(
            TensorInfo(t.name, t.shape, t.dtype, d.quantization) if t.dtype == d.dtype else t
            for t, d in zip(found, declared)
        )

    @classmethod
    def probe(cls) -> BackendStatus:
        try:
            core_class, version, _api = _import_core()
            devices = list(core_class().available_devices)
        except BackendUnavailable as exc:
            return BackendStatus(cls.name, False, reason=exc.message, hint=exc.hint)
        except Exception as exc:
            return BackendStatus(cls.name, False, reason=f"OpenVINO failed to start: {exc}",
                                 hint="reinstall openvino")
        return BackendStatus(cls.name, True, runtime=f"openvino {version}", devices=devices)

    def _runner(self) -> Callable[[np.ndarray], list[np.ndarray]] | None:
        if self._legacy or len(self._buffers) != 1:
            return None
        request, buffer, model = self._request, self._buffers[0], self.model_path.name
        infer, output, copyto = request.infer, request.get_output_tensor, np.copyto
        count = len(self.outputs)

        def run(x: np.ndarray) -> list[np.ndarray]:
            try:
                copyto(buffer, x)
                infer()
                if count == 1:
                    return [output(0).data.copy()]
                return [output(i).data.copy() for i in range(count)]
            except Exception as exc:
                raise InferenceError(f"{model}: inference failed: {exc}") from exc
        return run

    def _invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        try:
            if self._legacy:
                result = self._exec.infer(dict(zip(self._in_names, inputs)))
                return [result[n] for n in self._out_names]
            for buffer, x in zip(self._buffers, inputs):
                np.copyto(buffer, x)
            request = self._request
            request.infer()
            if len(self.outputs) == 1:
                return [request.get_output_tensor(0).data.copy()]
            return [request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]
        except Exception as exc:
            raise InferenceError(f"{self.model_path.name}: inference failed: {exc}") from exc

    def _release(self) -> None:
        for pending in self._held:
            if pending is not None:
                pending.settle()
        self._slots, self._held = [], []
        self._request = None
        self._compiled = None
        self._exec = None


class MyriadBackend(OpenVINOBackend):
    """OpenVINO on an Intel Myriad VPU (Neural Compute Stick 2): FP16 IR is its format."""

    name = "myriad"
    default_device = "MYRIAD"
    install_hint = MYRIAD_HINT

    @classmethod
    def probe(cls) -> BackendStatus:
        status = OpenVINOBackend.probe()
        status.name = cls.name
        if not status.usable:
            return status
        core_class, version, _api = _import_core()
        problem = myriad_plugin_problem(core_class(), version)
        if problem is not None:
            return BackendStatus(cls.name, False, runtime=status.runtime,
                                 reason=problem.message, hint=problem.hint)
        devices = [d for d in status.devices if d.startswith("MYRIAD")]
        if not devices:
            return BackendStatus(cls.name, False, runtime=status.runtime,
                                 reason="no Intel NCS2 (MYRIAD) is attached", hint=NCS2_HINT)
        return BackendStatus(cls.name, True, runtime=status.runtime, devices=devices)
