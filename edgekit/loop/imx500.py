"""The Raspberry Pi AI Camera as a source: ``--source imx500[:N]``, the network in the sensor.

The IMX500 runs the bundle's ``imx500`` artifact itself: Picamera2's ``IMX500`` device
(``picamera2.devices.IMX500``, Raspberry Pi OS's python3-picamera2) loads ``network.rpk`` into
the sensor, and every frame's metadata then carries the output tensors
(``get_outputs(metadata)``) and the time the sensor's DNN took (``get_kpi_info(metadata)``).
Each ``Frame`` this source yields carries both (``SensorOutputs``); the loop's infer stage takes
them instead of running a backend, and its time is the sensor's DNN time. Pre-processing
still computes how frame pixels map onto the model's input (the sensor scales its whole
field of view to the input: a stretch), and edgekit's post-processing, drawing, live view,
metrics and the JSON lines follow as for every backend.

``network.rpk`` is ``NAME_imx500.rpk`` beside the artifact in the bundle (deploy makes it
there), else made once with ``imx500-package`` (Raspberry Pi OS's imx500-tools) into the cache.
Device side: Python 3.9 compatible, nothing imported before it is needed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import BackendStatus, Pending
from edgekit.bundle.tensors import TensorInfo
from edgekit.deploy.agent.imx500_device import sensor_number
from edgekit.errors import InvalidModel, SourceLost, UsageError
from edgekit.loop import picamera
from edgekit.loop.sources import Frame, Source

FORMAT = "imx500"
PACKAGER = "imx500-package"
INSTALL = ("on Raspberry Pi OS: sudo apt install -y imx500-all python3-picamera2 (the IMX500 "
           "firmware, imx500-tools' imx500-package and Picamera2); edgekit's environment must "
           "see the system's packages (python3 -m venv --system-site-packages)")
FRAME_SIZE = (640, 480)
NETWORK_WAIT_S = 600.0  # the first load of a network into the sensor takes minutes
WAIT_VAR = "EDGEKIT_IMX500_WAIT_S"  # how long to wait for the network's first outputs
PACKAGE_TIMEOUT_S = 300


def camera_number(spec: str) -> int:
    """``imx500`` -> 0, ``imx500:N`` -> N; UsageError for anything else."""
    number = sensor_number(spec)
    if number is None:
        raise picamera.bad_number(spec, FORMAT)
    return number


@dataclass
class SensorOutputs:
    """What the sensor computed for one frame: its output tensors and its DNN time."""

    outputs: list[np.ndarray]  # in the Keras model's order and shapes (batch 1)
    dnn_ns: int


def _import_imx500() -> Any:
    """Picamera2 and its IMX500 device class, or ImportError saying how to get them."""
    try:
        from picamera2 import Picamera2
        from picamera2.devices import IMX500
    except ImportError as exc:
        raise ImportError(f"Picamera2's IMX500 device is not importable here ({exc}): "
                          f"{INSTALL}") from None
    return Picamera2, IMX500


def sensor_status() -> BackendStatus:
    """What the IMX500 path needs on a device, and whether this machine has it (the
    ``backends`` table's row)."""
    missing = []
    runtime = ""
    try:
        _import_imx500()
        runtime = "picamera2.devices.IMX500"
    except ImportError:
        missing.append("Picamera2 with its IMX500 device (python3-picamera2)")
    if shutil.which(PACKAGER) is None:
        missing.append(f"{PACKAGER} (imx500-tools), which makes network.rpk from "
                       "packerOut.zip (or deploy the bundle, which makes it)")
    return BackendStatus(
        "imx500 (sensor)", not missing, runtime, ["IMX500"] if not missing else [],
        reason="missing: " + "; ".join(missing) if missing else "",
        hint=("the network runs inside the AI Camera's sensor: edgekit run BUNDLE --source "
              f"imx500 with the bundle's imx500 artifact; {INSTALL}") if missing else "")


def artifact_of(manifest: Any, folder: Path) -> Path:
    """The bundle's packerOut.zip, or a UsageError saying how to get one."""
    record = next((a for a in manifest.artifacts if a.format == FORMAT), None)
    if record is None or not record.ok:
        why = f" ({record.status} at convert: {record.reason})" if record is not None else ""
        raise UsageError(f"source imx500 runs the bundle's imx500 artifact, and {folder} has "
                         f"none{why}: convert with `formats` imx500 (make setup-imx500 first)",
                         param="source")
    return folder / record.file


def network_file(packed: Path, cache: Path | None = None) -> Path:
    """``network.rpk`` for ``packed``: the bundle's own (``NAME_imx500.rpk``), else made by
    imx500-package into ``cache`` (once per packerOut.zip, by its sha256)."""
    beside = packed.with_suffix(".rpk")
    if beside.is_file():
        return beside
    packager = shutil.which(PACKAGER)
    if packager is None:
        raise UsageError(f"{packed.name} needs {PACKAGER} to become network.rpk, and it is "
                         "not on PATH: sudo apt install -y imx500-tools (or deploy the "
                         "bundle, which makes the .rpk there)")
    if cache is None:
        from edgekit.helpers.config import cache_dir
        cache = cache_dir() / "imx500"
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()[:16]
    folder = cache / digest
    rpk = folder / "network.rpk"
    if rpk.is_file():
        return rpk
    work = cache / f".{digest}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        done = subprocess.run([packager, "-i", str(packed), "-o", str(work)],
                              capture_output=True, text=True, timeout=PACKAGE_TIMEOUT_S,
                              check=False)
        made = work / "network.rpk"
        if done.returncode != 0 or not made.is_file():
            lines = (done.stderr + done.stdout).strip().splitlines() or ["no output"]
            raise InvalidModel(f"{PACKAGER} could not package {packed.name}: {lines[-1][:300]}")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    except subprocess.TimeoutExpired:
        raise InvalidModel(f"{PACKAGER} did not finish in {PACKAGE_TIMEOUT_S} s") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rpk


def to_keras(outputs: list[np.ndarray], shapes: list[tuple]) -> list[np.ndarray]:
    """The sensor's tensors as the Keras model's outputs (``shapes``, batch included): the same
    elements in the same order, or the dimensions reversed (a column-major layout)."""
    if len(outputs) != len(shapes):
        raise SourceLost(f"the sensor gave {len(outputs)} output tensors and the model has "
                         f"{len(shapes)}: is another network loaded in the IMX500?")
    result = []
    for out, shape in zip(outputs, shapes):
        out = np.asarray(out, np.float32)
        inner = tuple(shape[1:])
        if out.size != int(np.prod(shape)):
            raise SourceLost(f"the sensor's output of shape {out.shape} does not fit the "
                             f"model's {tuple(shape)}: is another network loaded?")
        squeezed = out.reshape(out.shape[1:]) if out.ndim == len(shape) and out.shape[0] == 1 \
            else out
        if squeezed.shape == inner[::-1] and squeezed.shape != inner:
            squeezed = squeezed.transpose(tuple(range(squeezed.ndim))[::-1])
        result.append(squeezed.reshape(shape))
    return result


class SensorBackend:
    """Stands where a backend stands in the loop: the network runs in the sensor, so each
    frame arrives with its outputs (``Frame.sensor``) and nothing is inferred here."""

    name = "imx500"
    requests = 1

    def __init__(self, packed: Path, inputs: list[TensorInfo], outputs: list[TensorInfo],
                 network: str) -> None:
        self.artifact = packed
        self.inputs = inputs
        self.outputs = outputs
        self.network = network

    def describe(self) -> str:
        return f"imx500 sensor ({self.network})"

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        raise UsageError("the IMX500 runs this network in the sensor: its outputs come with "
                         "each frame of `source` imx500, not from a tensor")

    def start(self, tensor: np.ndarray) -> Pending:
        """For the loop's warm-up only: nothing to warm, zeros of the outputs' shapes."""
        pending = Pending(lambda raw: raw)
        pending.complete([np.zeros(t.shape, np.float32) for t in self.outputs])
        return pending

    def close(self) -> None:
        pass


def sensor_model(bundle: Path, labels: Any = None, spec: Any = None) -> Any:
    """The bundle's model for ``--source imx500``: its input spec, task, labels and decoder,
    with a ``SensorBackend`` where a runtime would be."""
    from edgekit.bundle.integrity import check_artifact
    from edgekit.bundle.manifest import is_bundle, read_manifest
    from edgekit.data.datasets import read_labels
    from edgekit.model import LoadedModel
    from edgekit.preprocess import SPEC_KEYS, apply_options
    from edgekit.tasks.detection import with_bundle_files

    if not bundle.is_dir() or not is_bundle(bundle):
        raise UsageError(f"source imx500 takes a bundle with an imx500 artifact; {bundle} is "
                         "not a bundle (convert with `formats` imx500)", param="source")
    manifest = read_manifest(bundle)
    packed = artifact_of(manifest, bundle)
    check_artifact(bundle, manifest.artifact(FORMAT))  # changed since convert: not to be run
    own = replace(manifest.input, origin={k: "bundle" for k in SPEC_KEYS})
    inputs = [TensorInfo(own.name, tuple(own.shape), "float32")]
    outputs = [TensorInfo(o["name"], tuple(o["shape"]), "float32") for o in manifest.outputs]
    backend = SensorBackend(packed, inputs, outputs, manifest.name)
    model = LoadedModel(backend, own, manifest.task, list(manifest.labels),  # type: ignore
                        with_bundle_files(manifest.decoder, bundle), None, FORMAT, packed,
                        manifest)
    model.spec = apply_options(model.spec, spec)
    if labels:
        model.labels = read_labels(labels)
    return model


class SensorSource(Source):
    """Frames and the sensor's outputs from the AI Camera, through Picamera2's IMX500."""

    live = True

    def __init__(self, spec: str, model: Any, size: tuple = FRAME_SIZE,
                 wait_s: float | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.number = camera_number(spec)
        backend = model.backend
        if not isinstance(backend, SensorBackend):
            raise UsageError(f"source {spec} runs the network in the sensor; load the bundle "
                             "for it (edgekit run BUNDLE `source` imx500), not a backend",
                             param="source")
        self._shapes = [tuple(t.shape) for t in backend.outputs]
        self._wait_s = wait_s if wait_s is not None else _wait_seconds()
        self._index = 0
        self._camera: Any = None
        rpk = network_file(backend.artifact)
        try:
            picamera2, imx500 = _import_imx500()
        except ImportError as exc:
            raise UsageError(f"source {spec}: {exc}", param="source") from None
        try:
            self._device = imx500(str(rpk))
        except Exception as exc:  # RuntimeError: no IMX500, or the firmware would not load
            raise SourceLost(f"--source {spec}: the IMX500 did not take {rpk.name}: "
                             f"{_cause(exc)} (is the AI Camera connected, and is "
                             "imx500-all installed?)") from None
        try:
            camera = picamera.start_camera(picamera2, self.number, size)
        except Exception as exc:
            raise SourceLost(f"--source {spec}: camera {self.number} did not start: "
                             f"{_cause(exc)}; is another program using it?") from None
        self._camera = camera
        self.description = f"IMX500 sensor {self.number} running {rpk.name} via Picamera2"

    def read(self) -> Frame | None:
        """The next frame with its outputs; frames before the network is running (no
        outputs in their metadata) are skipped, for at most ``wait_s``."""
        deadline = time.monotonic() + self._wait_s
        while True:
            try:
                request = self._camera.capture_request()
                try:
                    metadata = request.get_metadata()
                    image = request.make_array("main")
                finally:
                    request.release()
            except Exception as exc:
                raise SourceLost(f"the IMX500 camera stopped delivering: {_cause(exc)}") \
                    from None
            captured = time.perf_counter_ns()
            outputs = self._device.get_outputs(metadata, add_batch=True)
            if outputs:
                break
            self.stats.dropped += 1
            if time.monotonic() > deadline:
                raise SourceLost(f"the IMX500 gave no output tensors in {self._wait_s:g} s: "
                                 "the network did not start in the sensor (is the .rpk "
                                 "for this camera's firmware?)")
        kpi = self._device.get_kpi_info(metadata)
        dnn_ns = int(kpi[0] * 1e6) if kpi else 0
        frame = Frame(self._index, np.ascontiguousarray(image[:, :, :3]), captured)
        frame.sensor = SensorOutputs(to_keras(list(outputs), self._shapes), dnn_ns)
        self._index += 1
        self.stats.decoded += 1
        return frame

    def close(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            try:
                camera.close()
            except Exception:
                pass


def _wait_seconds() -> float:
    text = os.environ.get(WAIT_VAR, "")
    try:
        return float(text) if text else NETWORK_WAIT_S
    except ValueError:
        raise UsageError(f"${WAIT_VAR}={text!r}: give seconds, e.g. 600") from None


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_sensor(spec: str, model: Any) -> Source:
    """``--source imx500[:N]`` for ``model`` (a ``sensor_model``)."""
    return SensorSource(spec, model)
