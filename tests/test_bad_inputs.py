"""Bad input across every command, as a careless user gives it: one table.

Each case runs the real `edgekit` command (or calls the Python API) in a workspace of its own
(copies of the shared bundles, the clip, damaged files, earlier outputs) and asserts: the
exit code (2 for bad arguments, 1 otherwise), exactly one `error:` line on stderr naming the
problem, no traceback, and every file of the workspace byte-identical afterwards: no input
touched, no earlier output replaced, nothing half-written or hidden left behind. Cases marked
slow start a runtime worker or TensorFlow.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import LENET, run_cli
from tmpfs import fill, read_only, tmpfs

from edgekit.errors import EdgekitError, InferenceError, InvalidData, InvalidModel, UsageError


class Ctx:
    """A case's workspace; each property makes its file on first use."""

    def __init__(self, tmp: Path, lenet: Path, detector: Path, clip: Path) -> None:
        self.tmp, self._lenet, self._detector, self._clip = tmp, lenet, detector, clip
        self.mounts: list[Path] = []
        self._stack: list = []

    def path(self, name: str) -> Path:
        return self.tmp / name

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    @cached_property
    def lenet(self) -> Path:
        return Path(shutil.copytree(self._lenet, self.tmp / "lenet"))

    @cached_property
    def detector(self) -> Path:
        return Path(shutil.copytree(self._detector, self.tmp / "detector"))

    @cached_property
    def clip(self) -> Path:
        shutil.copy(self._clip.with_suffix(".json"), self.tmp / "clip.json")
        return Path(shutil.copy(self._clip, self.tmp / "clip.avi"))

    @cached_property
    def keras(self) -> Path:
        return Path(shutil.copy(LENET / "lenet5_digits.keras", self.tmp / "lenet.keras"))

    @cached_property
    def image(self) -> Path:
        """A real photo-like JPEG (a frame of the clip)."""
        cap = cv2.VideoCapture(str(self.clip))
        ok, frame = cap.read()
        cap.release()
        assert ok
        path = self.tmp / "frame.jpg"
        cv2.imwrite(str(path), frame)
        return path

    @cached_property
    def truncated_jpeg(self) -> Path:
        data = self.image.read_bytes()
        return self.file("truncated.jpg", data[:len(data) // 2])

    @cached_property
    def bomb(self) -> Path:
        """An 875 KB PNG that declares 30000 x 30000 pixels (a decompression bomb)."""
        import struct
        import zlib

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + \
                struct.pack(">I", zlib.crc32(kind + data))

        side = 30000
        packer = zlib.compressobj(9)
        pixels = b"".join(packer.compress(b"\0" * (side + 1)) for _ in range(side))
        return self.file("bomb.png", b"\x89PNG\r\n\x1a\n"
                         + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                         + chunk(b"IDAT", pixels + packer.flush()) + chunk(b"IEND", b""))

    def tampered(self, bundle: Path, name: str) -> Path:
        path = bundle / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return bundle

    def without(self, bundle: Path, name: str) -> Path:
        (bundle / name).unlink()
        return bundle

    def manifest(self, bundle: Path, text: str) -> Path:
        (bundle / "edgekit.json").write_text(text)
        return bundle

    def disk(self, size_kb: int = 600, leave_kb: int | None = None,
             ro: bool = False, earlier: str = "") -> Path:
        """A small tmpfs in the workspace: full (``leave_kb`` free) or read-only, with an
        earlier output named ``earlier`` on it."""
        folder = self.tmp / "disk"
        mount = tmpfs(folder, size_kb)
        mount.__enter__()
        self._stack.append(mount)
        if earlier:
            (folder / earlier).write_text("an earlier output\n")
        if leave_kb is not None:
            fill(folder, leave_kb)
        if ro:
            read_only(folder)
        return folder

    def close(self) -> None:
        for mount in reversed(self._stack):
            mount.__exit__(None, None, None)


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Ctx], list] | None  # the CLI arguments; None for a Python API case
    code: int = 1  # exit code (CLI); for the API, ``error`` is the exception class
    says: str = ""  # in the error line (case-insensitive)
    api: Callable[[Ctx], Callable[[], object]] | None = None
    error: type[EdgekitError] = EdgekitError  # the API case's exact exception class
    slow: bool = False


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


LENET_KERAS = str(LENET / "lenet5_digits.keras")
MANIFEST_LIST = "[]"
MANIFEST_NO_NAME = '{"schema": "edgekit.bundle/1", "task": "classification"}'
MANIFEST_BAD_MEAN = ('{"schema": "edgekit.bundle/1", "name": "x", "task": "classification", '
                     '"input": {"shape": [1, 32, 32, 1], "mean": "zero"}, "artifacts": []}')
MANIFEST_BAD_FILE = ('{"schema": "edgekit.bundle/1", "name": "x", "task": "classification", '
                     '"input": {"shape": [1, 32, 32, 1]}, "artifacts": [{"format": '
                     '"tflite-int8", "status": "ok", "file": "../../etc/passwd", "files": {}}]}')


def _backend(bundle: Path, name: str = "lenet5_digits_int8.tflite", backend: str = "tflite",
             threads: int | None = None):
    from edgekit.backends import open_backend

    return open_backend(backend, bundle / name, threads=threads)


def _infer_after_close(bundle: Path) -> object:
    b = _backend(bundle)
    b.close()
    return b.infer(np.zeros(b.inputs[0].shape, np.float32))


def _start(bundle: Path, value: float, closed: bool = False) -> object:
    from edgekit.backends import Concurrency, open_backend

    b = open_backend("onnxruntime", bundle / "lenet5_digits.onnx",
                     concurrency=Concurrency("throughput", 2))
    if closed:
        b.close()
    try:
        return b.start(np.full(b.inputs[0].shape, value, np.float32)).result()
    finally:
        b.close()


def _concurrency(mode: str, requests: int | None = None) -> object:
    from edgekit.backends import Concurrency

    return Concurrency(mode, requests)


def _streams_on(bundle: Path, backend: str, name: str) -> object:
    from edgekit.backends import Concurrency, open_backend

    return open_backend(backend, bundle / name, concurrency=Concurrency("throughput", 2, 2))


def _infer(bundle: Path, make: Callable[[tuple], object], backend: str = "tflite",
           name: str = "lenet5_digits_int8.tflite") -> object:
    with _backend(bundle, name, backend) as b:
        return b.infer(make(b.inputs[0].shape))


def _run_api(bundle: Path, clip: Path, **kw) -> object:
    from edgekit.loop.run import loop_model, run_loop

    with loop_model(bundle) as model:
        return run_loop(model, clip, **kw)


def _load(bundle: Path) -> object:
    from edgekit.model import load_model

    return load_model(bundle)


def _read_image(path: Path) -> object:
    from edgekit.preprocess import read_image

    return read_image(path)


def _onnx(make: Callable[[tuple], object]) -> Callable[[Ctx], Callable[[], object]]:
    return lambda c: partial(_infer, c.lenet, make, "onnxruntime", "lenet5_digits.onnx")


def _int8(make: Callable[[tuple], object]) -> Callable[[Ctx], Callable[[], object]]:
    return lambda c: partial(_infer, c.lenet, make)


CASES = [
    # --- convert -------------------------------------------------------------------------
    Case("convert-output-exists", lambda c: ["convert", c.keras, "-o", c.lenet, "-q"], 2,
         "already exists"),
    Case("convert-force-over-a-folder", lambda c: ["convert", c.keras, "-o", c.tmp, "-q",
                                                   "--force"], 2, "not an edgekit bundle"),
    Case("convert-force-over-the-model", lambda c: ["convert", c.keras, "-o", c.keras, "-q",
                                                    "--force"], 2, "not an edgekit bundle"),
    Case("convert-output-folder-missing", lambda c: ["convert", c.keras, "-o",
                                                     c.path("no/such/b"), "-q"], 2,
         "does not exist"),
    Case("convert-unknown-format", lambda c: ["convert", c.keras, "-o", c.path("b"),
                                              "--formats", "tflite-int4", "-q"], 2, "int4"),
    Case("convert-bad-input-shape", lambda c: ["convert", c.keras, "-o", c.path("b"),
                                               "--load", "input_shape=32,x", "-q"], 2, "H,W,C"),
    Case("convert-bad-mean", lambda c: ["convert", c.keras, "-o", c.path("b"), "--preprocess",
                                        "mean=a,b",
                                        "-q"], 2, "--preprocess mean"),
    Case("convert-unknown-interpolation", lambda c: ["convert", c.keras, "-o", c.path("b"),
                                                     "--preprocess", "interpolation=box", "-q"], 2,
         "--preprocess interpolation"),
    Case("convert-crop-fraction-0", lambda c: ["convert", c.keras, "-o", c.path("b"),
                                               "--preprocess", "resize=center-crop:0", "-q"], 2,
                                                   "(0, 1]"),
    Case("convert-max-detections-0", lambda c: ["convert", c.keras, "-o", c.path("b"),
                                                "--postprocess", "max_detections=0", "-q"], 2,
         "--postprocess max_detections"),
    Case("convert-bad-int8-io", lambda c: ["convert", c.keras, "-o", c.path("b"), "--quantize",
                                           "int8_io=int4", "-q"], 2, "--quantize int8_io"),
    Case("convert-card-not-json", lambda c: ["convert", c.keras, "-o", c.path("b"), "-q",
                                             c.file("lenet.edgekit.json", "{oops") and "-q"],
         2, "lenet.edgekit.json"),
    Case("convert-read-only-folder", lambda c: ["convert", c.keras, "-o",
                                                c.disk(ro=True) / "b", "-q"], 1, "read-only"),
    Case("convert-full-disk", lambda c: ["convert", c.keras, "-o",
                                         c.disk(size_kb=300) / "b", "-q"], 1, "disk is full",
         slow=True),
    Case("convert-model-missing", lambda c: ["convert", c.path("none.keras"), "-o", c.path("b"),
                                             "-q"], 1, "none.keras", slow=True),
    Case("convert-model-not-keras", lambda c: ["convert", c.file("m.keras", "not a model"), "-o",
                                               c.path("b"), "-q"], 1, "m.keras", slow=True),
    Case("convert-calib-missing", lambda c: ["convert", c.keras, "-o", c.path("b"), "--calib",
                                             c.path("nocalib"), "-q"], 1, "nocalib", slow=True),
    # --- inspect -------------------------------------------------------------------------
    Case("inspect-missing", lambda c: ["inspect", c.path("nothing")], 1, "no such"),
    Case("inspect-folder-not-bundle", lambda c: ["inspect", c.tmp], 1, "not an edgekit bundle"),
    Case("inspect-random-tflite", lambda c: ["inspect", c.file("r.tflite", os.urandom(3000))], 1,
         "not a TFLite model"),
    Case("inspect-truncated-tflite", lambda c: [
        "inspect", c.file("t.tflite", (c.lenet / "lenet5_digits_int8.tflite").read_bytes()[:9000])],
        1, "t.tflite"),
    Case("inspect-h5", lambda c: ["inspect", c.file("model.h5", b"\x89HDF\r\n")], 1,
         "reads bundle folders and .tflite, .onnx, .xml, .keras, .zip files"),
    Case("inspect-random-onnx", lambda c: ["inspect", c.file("r.onnx", os.urandom(3000))], 1,
         "not a readable ONNX model"),
    Case("inspect-random-keras", lambda c: ["inspect", c.file("r.keras", os.urandom(3000))], 1,
         "not a Keras 3 .keras archive"),
    Case("inspect-xml-not-an-ir", lambda c: ["inspect", c.file("m.xml", "<html></html>")], 1,
         "not an OpenVINO IR"),
    Case("inspect-xml-broken", lambda c: ["inspect", c.file("m.xml", "<net><layers>")], 1,
         "not a readable OpenVINO IR"),
    Case("inspect-manifest-list", lambda c: ["inspect", c.manifest(c.lenet, MANIFEST_LIST)], 1,
         "edgekit.json"),
    Case("inspect-manifest-lacks-fields", lambda c: ["inspect",
                                                     c.manifest(c.lenet, MANIFEST_NO_NAME)], 1,
         "name: missing"),
    Case("inspect-manifest-input-mean-text", lambda c: ["inspect",
                                                        c.manifest(c.lenet, MANIFEST_BAD_MEAN)],
         1, "input mean: must be a list of numbers, not 'zero'"),
    Case("inspect-manifest-not-json", lambda c: ["inspect", c.manifest(c.lenet, "{")], 1,
         "edgekit.json"),
    Case("inspect-manifest-path-escape", lambda c: ["inspect",
                                                    c.manifest(c.lenet, MANIFEST_BAD_FILE)], 1,
         "not a file in the bundle"),
    # --- classify ------------------------------------------------------------------------
    Case("classify-detector-bundle", lambda c: ["classify", c.detector, c.image], 2,
         "detector"),
    Case("classify-truncated-jpeg", lambda c: ["classify", c.lenet, c.truncated_jpeg], 1,
         "damaged"),
    Case("classify-decompression-bomb", lambda c: ["classify", c.lenet, c.bomb], 1,
         "30000 x 30000"),
    Case("classify-image-missing", lambda c: ["classify", c.lenet, c.path("none.jpg")], 1,
         "no such image"),
    Case("classify-not-an-image", lambda c: ["classify", c.lenet, c.file("x.jpg", "text")], 1,
         "cannot decode"),
    Case("classify-top-k-0", lambda c: ["classify", c.lenet, c.image, "-k", "0"], 2, "top-k"),
    Case("classify-threads-0", lambda c: ["classify", c.lenet, c.image, "--infer", "threads=0"], 2,
         "--infer threads"),
    Case("classify-threads-negative", lambda c: ["classify", c.lenet, c.image, "--infer",
                                                 "threads=-3"], 2, "--infer threads"),
    Case("classify-max-megapixels-0", lambda c: ["classify", c.lenet, c.image,
                                                 "--max-megapixels", "0"], 2, "megapixels"),
    Case("classify-tampered-artifact", lambda c: [
        "classify", c.tampered(c.lenet, "lenet5_digits_int8.tflite"), c.image], 1,
        "does not match the bundle's manifest"),
    Case("classify-missing-artifact", lambda c: [
        "classify", c.without(c.lenet, "lenet5_digits_int8.tflite"), c.image], 1, "missing"),
    Case("classify-unknown-interpolation", lambda c: ["classify", c.lenet, c.image,
                                                      "--preprocess", "interpolation=cubic"], 2,
         "--preprocess interpolation"),
    Case("classify-unknown-resize", lambda c: ["classify", c.lenet, c.image, "--preprocess",
                                               "resize=squash"], 2, "unknown resize mode"),
    Case("classify-crop-fraction-0", lambda c: ["classify", c.lenet, c.image, "--preprocess",
                                                "resize=center-crop:0"], 2, "(0, 1]"),
    Case("classify-crop-fraction-above-1", lambda c: ["classify", c.lenet, c.image, "--preprocess",
                                                      "resize=center-crop:1.5"], 2, "(0, 1]"),
    Case("classify-unknown-reference", lambda c: ["classify", c.lenet, c.image, "--preprocess",
                                                  "reference=pycorall"],
                                                  2, "--preprocess reference"),
    Case("classify-unknown-backend", lambda c: ["classify", c.lenet, c.image, "--backend",
                                                "tpu9"], 2, "unknown backend"),
    Case("classify-tflite-on-a-gpu", lambda c: ["classify", c.lenet, c.image, "--infer",
                                                "device=GPU"], 2, "CPU only"),
    Case("classify-onnxruntime-on-a-gpu", lambda c: ["classify", c.lenet, c.image, "--backend",
                                                     "onnxruntime", "--infer", "device=GPU"], 2,
         "CPU only"),
    Case("classify-bad-edgetpu-device", lambda c: [
        "classify", c.lenet / "lenet5_digits_int8.tflite", c.image, "--backend", "edgetpu",
        "--infer", "device=usb:x"], 2, "bad Edge TPU device"),
    Case("classify-unknown-openvino-device", lambda c: ["classify", c.lenet, c.image,
                                                        "--backend", "openvino", "--infer",
                                                        "device=TPU9"], 2, "no device 'TPU9'"),
    Case("classify-format-the-backend-does-not-run", lambda c: [
        "classify", c.lenet, c.image, "--backend", "onnxruntime", "--format", "tflite-int8"], 2,
        "runs on tflite, openvino"),
    Case("classify-format-not-in-bundle", lambda c: ["classify", c.lenet, c.image, "--format",
                                                     "edgetpu"], 2, "no edgetpu artifact"),
    Case("classify-bad-manifest", lambda c: ["classify", c.manifest(c.lenet, MANIFEST_NO_NAME),
                                             c.image], 1, "edgekit.json"),
    # --- bench ---------------------------------------------------------------------------
    Case("bench-duration-0", lambda c: ["bench", c.lenet, "--duration", "0", "-q"], 2,
         "--duration"),
    Case("bench-threads-0", lambda c: ["bench", c.lenet, "--infer", "threads=0", "-q"], 2,
         "--infer threads"),
    Case("bench-threads-negative", lambda c: ["bench", c.lenet, "--infer", "threads=-1", "-q"], 2,
         "--infer threads"),
    Case("bench-runs-0", lambda c: ["bench", c.lenet, "--runs", "0", "-q"], 2, "--runs"),
    Case("bench-unknown-resize", lambda c: ["bench", c.lenet, "--preprocess", "resize=squash",
                                            "-q"], 2,
         "unknown resize mode"),
    Case("bench-two-formats", lambda c: ["bench", c.lenet, "--json", "--table", "csv", "-q"], 2,
         "choose one"),
    Case("bench-unknown-backend", lambda c: ["bench", c.lenet, "--backends", "tpu9", "-q"], 2,
         "unknown backend"),
    Case("bench-missing-target", lambda c: ["bench", c.path("nothing"), "-q"], 2, "no such"),
    Case("bench-random-tflite", lambda c: ["bench", c.file("r.tflite", os.urandom(3000)), "-q"],
         1, "not a TFLite model"),
    Case("bench-plot-extension", lambda c: ["bench", c.lenet, "--plot", c.path("p.gif"), "-q"],
         2, "--plot"),
    Case("bench-plot-folder", lambda c: ["bench", c.lenet, "--plot", c.folder("plots.png"),
                                         "-q"], 2, "is a folder"),
    Case("bench-bad-manifest", lambda c: ["bench", c.manifest(c.lenet, MANIFEST_LIST), "-q"],
         1, "edgekit.json"),
    Case("bench-random-onnx-every-row-failed", lambda c: [
        "bench", c.file("r.onnx", os.urandom(3000)), "-q", "--runs", "3"], 1,
        "every row that could run failed", slow=True),
    Case("bench-tampered-artifact", lambda c: [
        "bench", c.tampered(c.lenet, "lenet5_digits.onnx"), "-q", "--runs", "3", "--backends",
        "onnxruntime,tflite", "--no-fidelity"], 1, "rows failed", slow=True),
    Case("bench-missing-artifact", lambda c: [
        "bench", c.without(c.lenet, "lenet5_digits.onnx"), "-q", "--runs", "3", "--backends",
        "onnxruntime", "--no-fidelity"], 1, "1 of 2 rows failed", slow=True),
    Case("bench-mode-unknown", lambda c: ["bench", c.lenet, "--infer", "mode=fastest", "-q"], 2,
         "--infer mode: 'fastest' is not one of"),
    Case("bench-requests-0", lambda c: ["bench", c.lenet, "--infer", "mode=throughput,requests=0",
                                        "-q"],
                                        2, "--infer requests must be 1"),
    Case("bench-requests-negative", lambda c: ["bench", c.lenet, "--infer", "requests=-2", "-q"], 2,
         "--infer requests must be 1"),
    Case("bench-streams-on-tflite", lambda c: ["bench", c.lenet, "--backends", "tflite",
                                               "--infer", "mode=throughput,streams=2", "-q"],
         2, "the tflite backend has no execution streams"),
    Case("bench-streams-in-latency-mode", lambda c: ["bench", c.lenet, "--backends", "openvino",
                                                     "--infer", "streams=2", "-q"], 2,
         "--infer streams goes with --infer mode throughput"),
    Case("bench-streams-0", lambda c: ["bench", c.lenet, "--infer", "mode=throughput,streams=0",
                                       "-q"], 2, "--infer streams must be 1"),
    # --- run -----------------------------------------------------------------------------
    Case("run-imx500-without-the-artifact", lambda c: ["run", c.detector, "--source",
                                                       "imx500"], 2, "--formats imx500"),
    Case("run-requests-0", lambda c: ["run", c.detector, "--source", c.clip, "--infer",
                                      "requests=0"],
         2, "--infer requests must be 1"),
    Case("run-requests-negative", lambda c: ["run", c.detector, "--source", c.clip,
                                             "--infer", "requests=-1"],
                                             2, "--infer requests must be 1"),
    Case("run-mode-unknown", lambda c: ["run", c.detector, "--source", c.clip, "--infer",
                                        "mode=fast"], 2, "--infer mode: 'fast' is not one of"),
    Case("run-realtime-0", lambda c: ["run", c.detector, "--source", c.clip, "--capture",
                                      "realtime=0"],
         2, "--capture realtime: takes a frame rate above 0"),
    Case("run-realtime-not-a-number", lambda c: ["run", c.detector, "--source", c.clip,
                                                 "--capture", "realtime=fast"], 2,
         "--capture realtime"),
    Case("run-save-over-the-source", lambda c: ["run", c.detector, "--source", c.clip,
                                                "--save", c.clip], 2, "also an input"),
    Case("run-save-over-the-source-by-another-name", lambda c: [
        "run", c.detector, "--source", c.clip, "--save", c.tmp / "." / "clip.avi"], 2,
        "also an input"),
    Case("run-save-json-is-no-kind", lambda c: ["run", c.detector, "--source", c.clip,
                                                "--save", c.clip.with_suffix(".json")], 2,
         "the name says what to write"),
    Case("run-save-over-the-manifest-is-no-kind", lambda c: ["run", c.detector, "--source", c.clip,
                                                   "--save", c.detector / "edgekit.json"], 2,
         "the name says what to write"),
    Case("run-save-two-videos", lambda c: ["run", c.detector, "--source", c.clip, "--save",
                                             c.path("o.avi"), "--save", c.path("o.avi")], 2,
         "give one of each kind"),
    Case("run-save-masks-into-the-bundle", lambda c: ["run", c.detector, "--source", c.clip,
                                                      "--save", c.detector], 2,
         "inside the edgekit bundle"),
    Case("run-save-masks-of-a-detector", lambda c: ["run", c.detector, "--source", c.clip, "--save",
                                             c.tmp], 2, "writes a segmenter's masks"),
    Case("run-save-unknown-extension", lambda c: ["run", c.detector, "--source", c.clip,
                                                  "--save", c.path("o.mkv")], 2, ".mkv"),
    Case("run-save-folder-missing", lambda c: ["run", c.detector, "--source", c.clip, "--save",
                                               c.path("no/o.avi")], 2, "does not exist"),
    Case("run-save-read-only-folder", lambda c: [
        "run", c.detector, "--source", c.clip, "--save",
        c.disk(ro=True, earlier="o.avi") / "o.avi"], 1, "read-only"),
    Case("run-save-full-disk", lambda c: [
        "run", c.detector, "--source", c.clip, "--save",
        c.disk(size_kb=400, earlier="o.avi") / "o.avi"], 1, "disk is full"),
    Case("run-jsonl-full-disk", lambda c: [
        "run", c.detector, "--source", c.clip, "--save",
        c.disk(size_kb=400, leave_kb=12, earlier="o.jsonl") / "o.jsonl"], 1, "disk is full"),
    Case("run-max-frames-0", lambda c: ["run", c.detector, "--source", c.clip, "--capture",
                                        "max_frames=0"], 2, "--capture max_frames"),
    Case("run-score-threshold-above-1", lambda c: ["run", c.detector, "--source", c.clip,
                                                   "--postprocess", "score_threshold=1.5"], 2,
         "--postprocess score_threshold"),
    Case("run-score-threshold-negative", lambda c: ["run", c.detector, "--source", c.clip,
                                                    "--postprocess", "score_threshold=-0.1"], 2,
         "--postprocess score_threshold"),
    Case("run-iou-above-1", lambda c: ["run", c.detector, "--source", c.clip, "--postprocess",
                                       "iou=1.5"],
         2, "--postprocess iou"),
    Case("run-iou-negative", lambda c: ["run", c.detector, "--source", c.clip, "--postprocess",
                                        "iou=-0.2"],
         2, "--postprocess iou"),
    Case("run-max-detections-0", lambda c: ["run", c.detector, "--source", c.clip,
                                            "--postprocess", "max_detections=0"], 2,
                                                "--postprocess max_detections"),
    Case("run-unknown-class", lambda c: ["run", c.detector, "--source", c.clip, "--postprocess",
                                         "classes=zebra"], 2, "not a class of this model"),
    Case("run-class-id-beyond-the-labels", lambda c: ["run", c.detector, "--source", c.clip,
                                                      "--postprocess", "classes=3,42"], 2,
                                                          "0 to 9"),
    Case("run-unknown-decoder-param", lambda c: ["run", c.detector, "--source", c.clip,
                                                 "--postprocess", "layout=nchw"], 2,
         "no such parameter"),
    Case("run-decoder-param-not-key-value", lambda c: ["run", c.detector, "--source", c.clip,
                                                       "--postprocess", "size_scale"], 2,
         "KEY=VALUE"),
    Case("run-anchors-for-a-grid-head", lambda c: ["run", c.detector, "--source", c.clip,
                                                   "--postprocess",
                                                   f"anchors={c.file('a.npy', b'')}"], 2,
         "--postprocess decoder ssd-raw"),
    Case("run-crop-fraction-above-1", lambda c: ["run", c.detector, "--source", c.clip,
                                                 "--preprocess", "resize=center-crop:2"], 2,
                                                     "(0, 1]"),
    Case("run-threads-0", lambda c: ["run", c.detector, "--source", c.clip, "--infer", "threads=0"],
         2, "--infer threads"),
    # --- run: the task (issue 21) ------------------------------------------------------
    Case("run-classifier-save-masks", lambda c: ["run", c.lenet, "--source", c.clip,
                                                 "--save", f'{c.path("masks")}/'], 2,
         "--save DIR/ writes a segmenter's masks"),
    Case("run-top-k-0", lambda c: ["run", c.lenet, "--source", c.clip, "--postprocess", "top_k=0"],
         2,
         "--postprocess top_k"),
    Case("run-top-k-beyond-the-classes", lambda c: ["run", c.lenet, "--source", c.clip,
                                                    "--postprocess", "top_k=11"], 2, "10 classes"),
    Case("run-smooth-0", lambda c: ["run", c.lenet, "--source", c.clip, "--postprocess",
                                    "smooth=0"], 2,
         "--postprocess smooth"),
    Case("run-task-contradicts-the-bundle", lambda c: ["run", c.detector, "--source", c.clip,
                                                       "--postprocess", "task=classification"], 2,
         "holds a detection model"),
    Case("run-segmentation-of-a-vector", lambda c: [
        "run", c.lenet / "lenet5_digits_int8.tflite", "--source", c.clip, "--postprocess",
        "task=segmentation"], 1, "H x W x C"),
    Case("run-detection-options-on-a-classifier", lambda c: [
        "run", c.lenet, "--source", c.clip, "--postprocess", "iou=0.3"], 2, "detection options"),
    Case("run-truth-on-a-classifier", lambda c: [
        "run", c.lenet, "--source", c.clip, "--capture", f'truth={c.clip.with_suffix(".json")}'], 2,
        "--capture truth"),
    Case("run-source-missing", lambda c: ["run", c.detector, "--source", c.path("none.avi")], 1,
         "no such file or folder"),
    Case("run-source-empty-folder", lambda c: ["run", c.detector, "--source",
                                               c.folder("empty")], 1, "no image files"),
    Case("run-source-not-a-video", lambda c: ["run", c.detector, "--source",
                                              c.file("v.avi", "not a video")], 1, "cannot read"),
    Case("run-no-camera", lambda c: ["run", c.detector, "--source", "57"], 1,
         "no camera at index 57"),
    Case("run-repeat-a-camera", lambda c: ["run", c.detector, "--source", "57", "--capture",
                                           "repeat=on"], 2,
         "--capture repeat"),
    Case("run-unknown-decoder", lambda c: ["run", c.detector / "digit_detector_int8.tflite",
                                           "--source", c.clip, "--postprocess", "decoder=rcnn"], 2,
         "--postprocess decoder"),
    Case("run-tampered-artifact", lambda c: [
        "run", c.tampered(c.detector, "digit_detector_int8.tflite"), "--source", c.clip,
        "--save", c.path("o.avi")], 1, "does not match"),
    # --- compare -------------------------------------------------------------------------
    Case("compare-task-contradicts-the-bundle", lambda c: [
        "compare", c.lenet, "--source", c.clip, "--postprocess", "task=detection", "-q"], 2,
        "holds a classification model"),
    Case("compare-source-missing", lambda c: ["compare", c.detector, "--source",
                                              c.path("none.avi"), "-q"], 1, "no such file"),
    Case("compare-empty-folder", lambda c: ["compare", c.detector, "--source",
                                            c.folder("empty"), "-q"], 1, "no image files"),
    Case("compare-max-frames-0", lambda c: ["compare", c.detector, "--source", c.clip,
                                            "--capture", "max_frames=0", "-q"], 2,
         "--capture max_frames"),
    Case("compare-requests-0", lambda c: ["compare", c.detector, "--source", c.clip,
                                          "--infer", "requests=0", "-q"], 2,
                                              "--infer requests must be 1"),
    Case("compare-threads-0", lambda c: ["compare", c.detector, "--source", c.clip,
                                         "--infer", "threads=0", "-q"], 2, "--infer threads"),
    Case("compare-iou-above-1", lambda c: ["compare", c.detector, "--source", c.clip,
                                           "--postprocess",
                                           "iou=2", "-q"], 2, "--postprocess iou"),
    Case("compare-json-and-markdown", lambda c: ["compare", c.detector, "--source", c.clip,
                                                 "--json", "--table", "markdown", "-q"], 2,
         "choose one"),
    Case("compare-unknown-backend", lambda c: ["compare", c.detector, "--source", c.clip,
                                               "--backends", "tpu9", "-q"], 2,
         "unknown backend"),
    Case("compare-no-camera", lambda c: ["compare", c.detector, "--source", "57", "-q",
                                         "--capture", "max_frames=5", "--backends",
                                         "tflite,onnxruntime,edgetpu"], 1,
         "every backend that could run failed", slow=True),
    # --- verify --------------------------------------------------------------------------
    Case("verify-tampered-artifact", lambda c: [
        "verify", c.tampered(c.lenet, "lenet5_digits_int8.tflite")], 1, "do not match"),
    Case("verify-missing-bundle", lambda c: ["verify", c.path("nothing")], 1,
         "not an edgekit bundle"),
    Case("verify-samples-negative", lambda c: ["verify", c.lenet, "--samples", "-1"], 2,
         "--samples"),
    Case("verify-threads-0", lambda c: ["verify", c.lenet, "--infer", "threads=0"],
    2, "--infer threads"),
    Case("verify-bad-manifest", lambda c: ["verify", c.manifest(c.lenet, MANIFEST_NO_NAME)], 1,
         "edgekit.json"),
    Case("verify-unknown-format", lambda c: ["verify", c.lenet, "--format", "tflite-int4"], 2,
         "'tflite-int4' is not one of 'tflite-fp32'"),
    # --- deploy --------------------------------------------------------------------------
    Case("deploy-no-target", lambda c: ["deploy", c.lenet, "--host", "pi@device.invalid"], 2,
         "needs a BUNDLE and --target"),
    Case("deploy-unknown-target", lambda c: ["deploy", c.lenet, "--target", "rpi9", "--host",
                                             "pi@device.invalid"], 2, "unknown target"),
    Case("deploy-old-rollback-spelling", lambda c: ["deploy", c.lenet, "--rollback", "--host",
                                                    "pi@device.invalid"], 2,
         "--rollback is now its own command: edgekit rollback"),
    Case("deploy-samples-negative", lambda c: ["deploy", c.lenet, "--target", "rpi4-cpu",
                                               "--host", "pi@device.invalid", "--release",
                                               "samples=-1"],
         2, "--release samples"),
    Case("deploy-keep-0", lambda c: ["deploy", c.lenet, "--target", "rpi4-cpu", "--host",
                                     "pi@device.invalid", "--release", "keep=0"], 2,
         "--release keep"),
    Case("deploy-ai-camera-without-imx500", lambda c: [
        "deploy", c.lenet, "--target", "rpi5-ai-camera", "--host", "pi@device.invalid"], 2,
         "convert again with --formats imx500"),
    Case("deploy-bad-host", lambda c: ["deploy", c.lenet, "--target", "rpi4-cpu", "--host",
                                       "pi@"], 2, "pi@"),
    Case("deploy-tampered-bundle", lambda c: [
        "deploy", c.tampered(c.lenet, "lenet5_digits_int8.tflite"), "--target", "rpi4-cpu",
        "--host", "pi@127.0.0.1", "--ssh", f"port={_closed_port()}", "--dry-run", "-q"], 1,
        "does not match"),
    Case("deploy-unreachable", lambda c: ["status", "--host", "pi@127.0.0.1",
                                          "--ssh", f"port={_closed_port()},timeout=5"], 1,
         "127.0.0.1"),
    # --- the command line itself ---------------------------------------------------------
    Case("cli-unknown-command", lambda c: ["nonsense"], 2, "no such command"),
    Case("cli-unknown-option", lambda c: ["--nonsense"], 2, "no such option"),
    Case("cli-missing-argument", lambda c: ["classify"], 2, "missing argument"),
    # --- the Python API (each prepares its files, then returns the call that must raise) ---
    Case("api-start-nan", None, api=lambda c: partial(_start, c.lenet, np.nan),
         error=InferenceError, says="NaN"),
    Case("api-start-after-close", None, api=lambda c: partial(_start, c.lenet, 0.0, True),
         error=InferenceError, says="closed"),
    Case("api-mode-unknown", None, api=lambda c: partial(_concurrency, "fast"),
         error=UsageError, says="mode 'fast' is unknown"),
    Case("api-requests-0", None, api=lambda c: partial(_concurrency, "throughput", 0),
         error=UsageError, says="requests must be 1"),
    Case("api-streams-on-onnxruntime", None, api=lambda c: partial(
        _streams_on, c.lenet, "onnxruntime", "lenet5_digits.onnx"), error=UsageError,
        says="has no execution streams"),
    Case("api-infer-after-close", None, api=lambda c: partial(_infer_after_close, c.lenet),
         error=InferenceError, says="closed"),
    Case("api-infer-none", None, api=_int8(lambda shape: None), error=InferenceError,
         says="None"),
    Case("api-infer-nan", None, api=_int8(lambda shape: np.full(shape, np.nan, np.float32)),
         error=InferenceError, says="NaN"),
    Case("api-infer-inf-float64", None, api=_onnx(lambda shape: np.full(shape, np.inf)),
         error=InferenceError, says="infinite"),
    Case("api-infer-int32", None, api=_onnx(lambda shape: np.zeros(shape, np.int32)),
         error=InferenceError, says="int32"),
    Case("api-infer-bool", None, api=_int8(lambda shape: np.zeros(shape, bool)),
         error=InferenceError, says="bool"),
    Case("api-infer-string", None, api=_int8(lambda shape: "an image"), error=InferenceError,
         says="numpy array"),
    Case("api-infer-wrong-shape", None, api=_int8(lambda shape: np.zeros((1, 28, 28, 1),
                                                                          np.float32)),
         error=InferenceError, says="(1, 28, 28, 1)"),
    Case("api-threads-0", None, api=lambda c: partial(_backend, c.lenet, threads=0),
         error=UsageError, says="threads"),
    Case("api-load-tampered", None, api=lambda c: partial(
        _load, c.tampered(c.lenet, "lenet5_digits_int8.tflite")), error=InvalidModel,
        says="does not match"),
    Case("api-read-truncated-jpeg", None, api=lambda c: partial(_read_image, c.truncated_jpeg),
         error=InvalidData, says="damaged"),
    Case("api-read-bomb", None, api=lambda c: partial(_read_image, c.bomb), error=InvalidData,
         says="megapixels"),
    Case("api-run-save-over-source", None, api=lambda c: partial(_run_api, c.detector, c.clip,
                                                                 save=c.clip),
         error=UsageError, says="also an input"),
]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (hidden ones too) under ``roots`` with the sha256 of its bytes."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def ctx(tmp_path: Path, lenet_bundle: Path, detector_bundle: Path, demo_clip: Path):
    work = tmp_path / "work"
    work.mkdir()
    context = Ctx(work, lenet_bundle, detector_bundle, demo_clip)
    yield context
    context.close()


def test_the_table_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    prefixes = {c.id.split("-")[0] for c in CASES}
    assert {"convert", "inspect", "classify", "bench", "run", "compare", "verify", "deploy",
            "api"} <= prefixes


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] * c.slow)
                                  for c in CASES])
def test_bad_input(case: Case, ctx: Ctx) -> None:
    if case.api is not None:
        call = case.api(ctx)
        before = snapshot(ctx.tmp)
        with pytest.raises(case.error) as raised:
            call()
        assert type(raised.value) is case.error, type(raised.value)  # the specific type
        message = str(raised.value)
        assert "\n" not in message and case.says.lower() in message.lower(), message
        assert snapshot(ctx.tmp) == before
        return
    args = [str(a) for a in case.args(ctx)]
    before = snapshot(ctx.tmp)
    result = run_cli(*args, env={"EDGEKIT_CACHE_DIR": str(ctx.tmp.parent / "cache")})
    assert result.returncode == case.code, (result.returncode, result.stderr, result.stdout)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert case.says.lower() in lines[0].lower(), lines[0]
    assert snapshot(ctx.tmp) == before, "a file changed, appeared or vanished"


def test_float64_input_is_converted(ctx: Ctx) -> None:
    """Not bad input: float64 is what numpy makes by default, so it is taken (and converted)."""
    with _backend(ctx.lenet, "lenet5_digits.onnx", "onnxruntime") as b:
        x = np.zeros(b.inputs[0].shape)
        assert x.dtype == np.float64
        np.testing.assert_allclose(b.infer(x)[0], b.infer(x.astype(np.float32))[0])


def test_the_cli_catches_what_it_should_not_print(ctx: Ctx) -> None:
    """A command that fails leaves the error line alone on stderr even when a native library
    wrote to it (the truncated JPEG's warning is caught, not shown)."""
    result = run_cli("classify", ctx.lenet, ctx.truncated_jpeg)
    assert "Premature end" not in result.stderr.split("error:")[0]

