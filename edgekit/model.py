"""A model ready to use: an artifact loaded on a backend, with its input spec and task.

``load_model`` takes a bundle (and picks the artifact the backend runs best) or
a bare third-party .tflite / .onnx / OpenVINO .xml (and reads the input spec
from the model itself: an integer input's own scale and zero point say how
pixels map onto it). classify, bench, the camera loop and deploy's smoke test
all start here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgekit.backends import Backend, Concurrency, backend_class, open_backend
from edgekit.bundle.formats import FORMATS, Format, format_of_file, why_not
from edgekit.bundle.integrity import check_artifact
from edgekit.bundle.manifest import Manifest, bundle_folder, is_bundle, read_manifest
from edgekit.bundle.tensors import TensorInfo
from edgekit.bundle.tflite_file import read_tflite
from edgekit.data.datasets import read_labels
from edgekit.errors import InvalidModel, UsageError
from edgekit.helpers.limits import checked
from edgekit.preprocess import (
    SPEC_KEYS,
    InputSpec,
    SpecOptions,
    apply_options,
    guess_layout,
    image_to_tensor,
    pillow,
)
from edgekit.tasks.classification import Class, top_k
from edgekit.tasks.detection import with_bundle_files

BARE_SUFFIXES = (".tflite", ".onnx", ".xml")


@dataclass
class LoadedModel:
    """An artifact on a backend, plus what its numbers mean."""

    backend: Backend
    spec: InputSpec
    task: str = "generic"
    labels: list[str] = field(default_factory=list)
    decoder: dict = field(default_factory=dict)
    output_order: list[int] | None = None  # artifact output index for each Keras output
    format: str | None = None
    artifact: Path | None = None
    manifest: Manifest | None = None
    decoder_origin: dict = field(default_factory=dict)  # where each decoder value came from

    def predict(self, tensor: np.ndarray) -> list[np.ndarray]:
        """One inference on a pre-processed float tensor; outputs in the Keras model's order."""
        return self.in_keras_order(self.backend.infer(tensor))

    def in_keras_order(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        """The artifact's outputs in the Keras model's order (``Backend.start``'s results)."""
        return [outputs[i] for i in self.output_order] if self.output_order else outputs

    def blank_outputs(self) -> list[np.ndarray]:
        """Outputs of the shapes ``predict`` returns, to try a decoder before any frame: zeros,
        or where the model does not declare its output shapes until it runs (TFLite's
        post-process op), its outputs for an input of zeros."""
        shapes = [tuple(t.shape) for t in self.backend.outputs]
        if not all(shape and all(isinstance(d, int) and d > 0 for d in shape)
                   for shape in shapes):
            return self.predict(np.zeros(self.spec.shape, np.float32))
        if self.output_order:
            shapes = [shapes[i] for i in self.output_order]
        return [np.zeros(shape, np.float32) for shape in shapes]

    def tensor(self, image_bgr: np.ndarray) -> np.ndarray:
        """A BGR frame -> the input tensor this model takes."""
        return image_to_tensor(image_bgr, self.spec)

    def classify(self, image_bgr: np.ndarray, k: int = 5) -> list[Class]:
        """Pre-process one BGR image, run the model, return its top-k classes."""
        return top_k(self.predict(self.tensor(image_bgr))[0], k, self.labels)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_format(path: Path) -> Format:
    """The table's format of a model file: by its name as convert writes it, else by what it
    is (a .tflite compiled for the Edge TPU is ``edgetpu``, a full-integer one ``tflite-int8``;
    otherwise the table's first format of that file type)."""
    suffix = path.suffix.lower()
    named = format_of_file(path.name.lower())
    if suffix == ".tflite":
        info = read_tflite(path)
        if info.edgetpu_compiled:
            return FORMATS["edgetpu"]
        if named is not None and named.key != "edgetpu":
            return named
        return FORMATS["tflite-int8" if info.full_integer else "tflite-fp32"]
    if named is not None:
        return named
    for fmt in FORMATS.values():
        if fmt.extension == suffix:
            return fmt
    raise InvalidModel(f"{path.name}: edgekit runs bundles and .tflite, .onnx or OpenVINO .xml "
                       "files; convert a Keras model first with edgekit convert")


def default_backend(path: Path) -> str:
    """The backend a bare model file runs on unless one is named: its format's first runner."""
    return file_format(path).backends[0]


def bundle_backend(manifest: Manifest, fmt: str | None = None) -> str:
    """The backend a bundle runs on unless one is named: the first usable here of the runners
    of ``fmt`` (``--format onnx``: onnxruntime, else openvino), or of the bundle's artifacts in
    table order (tflite for a full bundle). When none is usable, the first runner, whose
    loading then says what is missing."""
    wanted = [fmt] if fmt is not None and fmt in FORMATS else \
        [key for key in FORMATS if any(a.ok and a.format == key for a in manifest.artifacts)]
    candidates = list(dict.fromkeys(b for key in wanted for b in FORMATS[key].backends))
    for name in candidates:
        cls = backend_class(name)
        if cls.probe().usable and any(cls.runs(key) for key in wanted):
            return name
    return candidates[0] if candidates else "tflite"


def pick_artifact(manifest: Manifest, backend: str, fmt: str | None = None) -> str:
    """The format of the bundle's artifact that ``backend`` should run: ``fmt`` when given
    (it must be built, and run there), else the best one it runs (the format table's rank)."""
    built = [a.format for a in manifest.artifacts if a.ok]
    runs_here = backend_class(backend).preferred_formats()
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")
        if fmt not in built:
            raise UsageError(f"the bundle has no {fmt} artifact (it has: {', '.join(built)})")
        if fmt not in runs_here:
            others = [k for k in runs_here if k in built]
            instead = f"; run {' or '.join(f'--format {k}' for k in others[:2])} instead" \
                if others else ""
            raise UsageError(why_not(backend, fmt, backend_class(backend).runtime_version())
                             + instead)
        return fmt
    for key in runs_here:
        if key in built:
            return key
    raise UsageError(f"the bundle has no artifact the {backend} backend runs here (it has: "
                     f"{', '.join(built) or 'none'}; {backend} runs "
                     f"{', '.join(runs_here) or 'none of them'})")


def spec_from_tensor(info: TensorInfo) -> InputSpec:
    """An input spec for a bare model, read from its input tensor.

    For an integer input with a scale and zero point, mean and std are chosen
    so that each 0..255 pixel quantises to itself (uint8) or to itself - 128
    (int8): exactly what the model was trained to take (``origin`` says "model"
    for those; the rest are defaults: rgb, stretch, bilinear).
    """
    layout = guess_layout(info.shape)
    channels = info.shape[3] if layout == "NHWC" else info.shape[1]
    color = "gray" if channels == 1 else "rgb"
    q = info.quantization
    origin = {key: "default" for key in SPEC_KEYS}
    if q is not None and info.dtype in ("uint8", "int8") and not q.per_channel:
        offset = 128 if info.dtype == "int8" else 0
        mean, std = (float(q.zero_point[0] + offset),), (1.0 / q.scale[0],)
        origin.update(mean="model", std="model")
    elif info.dtype in ("uint8", "int8"):
        mean, std = (128.0 if info.dtype == "int8" else 0.0,), (1.0,)
    else:
        mean, std = (0.0,), (255.0,)
    return InputSpec(shape=tuple(info.shape), layout=layout, color=color, mean=mean * channels,
                     std=std * channels, name=info.name, origin=origin)


@checked
def load_model(path: str | Path | Manifest, *, backend: str | None = None,
               device: str | None = None,
               threads: int | None = None, fmt: str | None = None,
               labels: str | Path | None = None, spec: SpecOptions | None = None,
               concurrency: Concurrency | None = None) -> LoadedModel:
    """Load a bundle's best artifact for ``backend``, or a bare model file, ready to use.

    The input spec is the bundle's (else read from the bare model's input), with what
    ``spec`` asks for on top (flags, a reference pipeline); ``model.spec.origin`` says where
    each value came from. ``concurrency``: the backend's mode and requests in flight
    (``Backend.start``). A bundle's artifact is first checked against the manifest's sha256
    (cached by the file's size and times): a changed or missing file is an InvalidModel that
    says what to do. ``path`` may be a bundle already opened (``read_manifest``): it is not
    read again.
    """
    opened = path if isinstance(path, Manifest) else None
    path = bundle_folder(opened) if opened is not None else Path(path)
    if opened is not None or path.is_dir():
        if opened is None and not is_bundle(path):
            raise InvalidModel(f"{path} is a folder but not an edgekit bundle (no edgekit.json)")
        manifest = opened or read_manifest(path)
        backend = backend or bundle_backend(manifest, fmt)
        key = pick_artifact(manifest, backend, fmt)
        record = manifest.artifact(key)
        check_artifact(path, record)  # a file changed since conversion must not run
        loaded = open_backend(backend, path / record.file, device=device, threads=threads,
                              concurrency=concurrency)
        own = replace(manifest.input, origin={k: "bundle" for k in SPEC_KEYS})
        label_list = list(manifest.labels)
        decoder = with_bundle_files(manifest.decoder, path)
        model = LoadedModel(loaded, own, manifest.task, label_list, decoder,
                            record.output_order or None, key, path / record.file, manifest)
    else:
        if not path.exists():
            raise InvalidModel(f"{path}: no such file or bundle")
        backend = backend or default_backend(path)
        loaded = open_backend(backend, path, device=device, threads=threads,
                              concurrency=concurrency)
        task = "classification" if len(loaded.outputs) == 1 and \
            len(loaded.outputs[0].shape) == 2 else "generic"
        model = LoadedModel(loaded, spec_from_tensor(loaded.inputs[0]), task,
                            format=file_format(path).key, artifact=path)
    try:
        model.spec = apply_options(model.spec, spec)
        if model.spec.antialias:
            pillow()  # missing: say so now, not at the first frame
    except BaseException:
        model.close()
        raise
    if labels:
        model.labels = read_labels(labels)
    return model
