"""The bundle manifest ``edgekit.json``: everything a device needs to run the artifacts.

A bundle is a folder: the artifacts, ``validation.npz`` (samples, labels and the
Keras model's own outputs on them) and this manifest. ``bench``, ``run`` and
``deploy`` take bundles; nothing in one needs the training code.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgekit.errors import InvalidData, InvalidModel, UsageError
from edgekit.helpers.files import read_small
from edgekit.helpers.schema import Field, SchemaError, parse
from edgekit.preprocess import InputSpec

MANIFEST_NAME = "edgekit.json"
VALIDATION_NAME = "validation.npz"
SCHEMA_PREFIX = "edgekit.bundle/"
SCHEMA_VERSION = 1  # the newest manifest version this edgekit reads
SCHEMA = f"{SCHEMA_PREFIX}{SCHEMA_VERSION}"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # a real one is a few KB


@dataclass
class OutputFidelity:
    """One output of the artifact against the same output of the Keras model."""

    index: int  # the Keras output's position
    name: str
    max_abs_diff: float | None  # None: no sample gave finite numbers
    mean_abs_diff: float | None
    cosine: float  # mean over samples of the cosine similarity of the two outputs
    top1_agreement: float | None = None  # class-score outputs: share of equal argmax
    nonfinite: int = 0  # samples where this output holds NaN or inf


@dataclass
class Fidelity:
    """How far an artifact's outputs stray from the Keras model's, on the validation set.

    The top-level figures are the worst over the outputs (``worst`` names the output
    whose agreement, or else cosine, is lowest); ``outputs`` has every output's own.
    """

    runtime: str  # the backend and runtime that ran it: "tflite (ai-edge-litert 2.3.0)"
    samples: int
    max_abs_diff: float | None
    mean_abs_diff: float | None
    top1_agreement: float | None = None  # class scores: share of equal argmax (a segmenter: of
    # equal pixels); detector: mAP
    accuracy: float | None = None  # when labels are known
    miou_agreement: float | None = None  # a segmenter: mean IoU of its masks and Keras's
    miou: float | None = None  # a segmenter: mean IoU against the validation masks
    cosine: float | None = None
    worst: str = ""  # the output the figures above are worst on (multi-output models)
    nonfinite: int = 0  # samples where any output holds NaN or inf
    outputs: list[OutputFidelity] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fidelity:
        data = dict(data)
        data["outputs"] = [OutputFidelity(**o) for o in data.get("outputs", [])]
        return cls(**data)


@dataclass
class FileRecord:
    sha256: str
    size: int


@dataclass
class Artifact:
    """One format in the bundle, whether it was built or not."""

    format: str
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    file: str = ""
    files: dict[str, FileRecord] = field(default_factory=dict)  # file and its companions
    size: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    output_order: list[int] = field(default_factory=list)  # artifact output for each Keras one
    toolchain: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    fidelity: Fidelity | None = None
    runtimes: dict[str, str] = field(default_factory=dict)  # "tflite-runtime 2.14.0": "ok"
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the Edge TPU compiler report
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Manifest:
    name: str
    task: str  # "classification", "detection", "segmentation" or "generic"
    input: InputSpec
    outputs: list[dict[str, Any]]  # the Keras model's outputs, in its own order
    labels: list[str] = field(default_factory=list)
    decoder: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    created: str = ""
    edgekit_version: str = ""
    schema: str = SCHEMA
    # The bundle folder it was read from (not stored): files the decoder names live there.
    folder: Path | None = field(default=None, compare=False, repr=False)

    def artifact(self, fmt: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.format == fmt), None)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "folder"}
        data["input"] = self.input.to_dict()
        data["artifacts"] = [asdict(a) for a in self.artifacts]
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        artifacts = []
        for a in data.get("artifacts", []):
            a = dict(a)
            a["files"] = {k: FileRecord(**v) for k, v in a.get("files", {}).items()}
            a["fidelity"] = Fidelity.from_dict(a["fidelity"]) if a.get("fidelity") else None
            artifacts.append(Artifact(**a))
        known = {f.name for f in fields(cls)} - {"folder"}
        rest = {k: v for k, v in data.items() if k in known and k not in ("input", "artifacts")}
        try:
            spec = InputSpec.from_dict(data["input"])
        except SchemaError as exc:
            raise SchemaError(f"input {exc.key}", exc.problem) from None
        return cls(input=spec, artifacts=artifacts, **rest)


def write_manifest(manifest: Manifest, folder: Path) -> Path:
    path = Path(folder) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return path


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


def bundle_folder(manifest: Manifest) -> Path:
    """The folder an opened bundle was read from (a manifest made in memory has none)."""
    if manifest.folder is None:
        raise UsageError(f"the manifest of {manifest.name!r} was not read from a bundle folder: "
                         "open the bundle with read_manifest(FOLDER)")
    return manifest.folder


def read_manifest(folder: str | Path) -> Manifest:
    """Read a bundle's manifest; InvalidModel when it is missing or unreadable."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise InvalidModel(f"{folder} is not an edgekit bundle (no {MANIFEST_NAME}); "
                           "make one with: edgekit convert MODEL.keras -o FOLDER")
    try:
        data = json.loads(read_small(path, MAX_MANIFEST_BYTES, "the manifest"))
        _check_shape(data)
        manifest = Manifest.from_dict(data)
        manifest.folder = Path(folder)
        return manifest
    except OSError as exc:
        raise InvalidModel(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except InvalidData as exc:  # a device, a FIFO, a file far too large
        raise InvalidModel(f"{exc}; convert the model again") from None
    except InvalidModel as exc:  # a newer schema
        raise InvalidModel(f"{path}: {exc}") from None
    except RecursionError:
        raise InvalidModel(f"{path}: not a valid edgekit manifest (its JSON is nested too "
                           "deeply to be one); convert the model again") from None
    except UsageError as exc:  # a value the input spec refuses (a hand-edited resize, say)
        raise InvalidModel(f"{path}: {exc}; fix the manifest or convert the model again") \
            from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        why = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise InvalidModel(f"{path}: not a valid edgekit manifest ({why}); "
                           "convert the model again") from None


# What a manifest must hold before any field is used; other fields are read as they are.
MANIFEST_FIELDS = (Field("name", str), Field("task", str), Field("input", dict),
                   Field("artifacts", list))
ARTIFACT_FIELDS = (Field("format", str), Field("status", str))
OK_ARTIFACT_FIELDS = (Field("file", str), Field("files", dict))  # an artifact built


def _check_shape(data: Any) -> None:
    """ValueError naming the first thing a manifest lacks (before any field is used)."""
    if not isinstance(data, dict):
        raise ValueError(f"it holds a JSON {type(data).__name__}, not an object")
    _check_schema(data.get("schema"))
    parse(MANIFEST_FIELDS, data, unknown="ignore")
    if not isinstance(data["input"].get("shape"), list):
        raise ValueError("'input' has no 'shape' list")
    for i, artifact in enumerate(data["artifacts"]):
        where = f"artifact {i + 1}"
        if not isinstance(artifact, dict):
            raise ValueError(f"{where} is not an object")
        _parse(ARTIFACT_FIELDS, artifact, where)
        if artifact["status"] == "ok":
            _parse(OK_ARTIFACT_FIELDS, artifact, f"{where} ({artifact['format']})")
            for name in [artifact["file"], *artifact["files"]]:
                if not name or Path(name).name != name or name in (".", ".."):
                    raise ValueError(f"{where} names the file {name!r}, which is not a file "
                                     "in the bundle folder")
            if artifact["file"] not in artifact["files"]:
                raise ValueError(f"{where}: its file {artifact['file']!r} has no sha256 record")


def _parse(fields: tuple[Field, ...], data: dict[str, Any], where: str) -> None:
    try:
        parse(fields, data, unknown="ignore")
    except SchemaError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check_schema(schema: Any) -> None:
    """ValueError for a schema that is not an edgekit bundle's; InvalidModel for a newer
    version than this edgekit reads (its fields may mean what this one cannot know)."""
    text = str(schema or "")
    version = text[len(SCHEMA_PREFIX):] if text.startswith(SCHEMA_PREFIX) else ""
    if not version.isdigit():
        raise ValueError(f"unknown schema {schema!r}")
    if int(version) > SCHEMA_VERSION:
        from edgekit import __version__

        raise InvalidModel(f"the bundle's manifest is {text}, and this edgekit ({__version__}) "
                           f"reads {SCHEMA} at most: upgrade edgekit (pip install -U edgekit) "
                           "to run it, or convert the model again with this one")
