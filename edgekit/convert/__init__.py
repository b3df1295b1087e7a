"""``edgekit convert``: one Keras model -> a bundle with every edge format and a manifest.

The bundle is built in a temporary folder beside the output and renamed into
place at the end, so a failure or Ctrl-C never leaves a half-written bundle.
One format failing does not stop the others; each gets a status and a reason.
"""
from __future__ import annotations

import importlib
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit import __version__
from edgekit.backends import backend_status, open_backend
from edgekit.bundle.fidelity import Task, Validation, compare, keras_accuracy, measure
from edgekit.bundle.formats import FORMATS, Format, parse_formats
from edgekit.bundle.integrity import sha256_file
from edgekit.bundle.manifest import (
    MAX_MANIFEST_BYTES,
    Artifact,
    FileRecord,
    Manifest,
    write_manifest,
)
from edgekit.convert import destination, gates, inputs
from edgekit.convert.job import Job
from edgekit.convert.keras_model import (
    export_saved_model,
    import_modules,
    input_name,
    input_shape,
    load_keras_model,
    quiet_tensorflow,
)
from edgekit.convert.remedy import Measured, RemedyPlan
from edgekit.convert.runtimes import check_tflite_runtimes
from edgekit.data.datasets import Samples, read_labels
from edgekit.errors import EdgekitError, InvalidData, Skipped, UsageError, WriteFailed, first_line
from edgekit.helpers import interrupt
from edgekit.helpers.files import read_small
from edgekit.helpers.limits import check_image_shape, checked
from edgekit.helpers.output_files import (
    Claim,
    Identity,
    cause,
    identity,
    normal_permissions,
)
from edgekit.helpers.records import keyword_only
from edgekit.preprocess import InputSpec, SpecOptions
from edgekit.tasks.detection import DetectionOptions, describe_decoder

Progress = Callable[[str], None]
CARD_SUFFIX = ".edgekit.json"


def _silent(_: str) -> None:
    pass


def load_card(model_path: Path) -> dict[str, Any]:
    """The optional ``MODEL.edgekit.json`` beside a model: task, data and input defaults.

    Paths in it are relative to the card. Command-line options override it.
    """
    card_path = model_path.with_name(model_path.stem + CARD_SUFFIX)
    if not card_path.is_file():
        return {}
    try:
        card = json.loads(read_small(card_path, MAX_MANIFEST_BYTES, "the model card"))
    except (ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(f"{card_path}: not valid JSON ({why})") from None
    for key in ("labels", "calibration", "validation"):
        if card.get(key):
            card[key] = str(card_path.parent / card[key])
    return card


def _model_kind(model: Any) -> str:
    import keras

    if isinstance(model, keras.Sequential):
        return "sequential"
    if isinstance(model, keras.Model) and type(model).__name__ == "Functional":
        return "functional"
    return "subclassed"


def _guess_task(outputs: list[tuple[int, ...]]) -> str:
    """One (1, K) output with K > 1 reads as a classifier; anything else as generic."""
    if len(outputs) == 1 and len(outputs[0]) == 2 and outputs[0][1] > 1:
        return "classification"
    return "generic"


def _converter(fmt: Format) -> Callable[[Job, Path], dict[str, Any]]:
    module_name, _, attr = fmt.converter.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _build(fmt: Format, job: Job) -> Artifact:
    path = job.artifact_path(fmt.suffix)
    start = time.perf_counter()
    try:
        result = _converter(fmt)(job, path)
    except Skipped as exc:
        return Artifact(fmt.key, "skipped", reason=str(exc))
    except EdgekitError as exc:
        interrupt.check()  # a runtime that turned Ctrl-C into its own error did not fail
        destination.check_room(job.workdir, job.output)
        return Artifact(fmt.key, "failed", reason=str(exc))
    except Exception as exc:  # a converter bug must not stop the other formats
        interrupt.check()
        destination.check_room(job.workdir, job.output)
        return Artifact(fmt.key, "failed", reason=f"unexpected {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    files = [path] + [path.with_suffix(s) for s in fmt.extra_files]
    job.built[fmt.key] = path
    return Artifact(
        fmt.key, "ok", file=path.name,
        files={f.name: FileRecord(sha256_file(f), f.stat().st_size) for f in files},
        size=sum(f.stat().st_size for f in files),
        toolchain=result.get("toolchain", {}), seconds=round(seconds, 3),
        details=result.get("details", {}), warnings=list(result.get("warnings", [])),
    )


def _on_backend(fmt: Format, path: Path, use: Callable[[Any], Any]) -> tuple[Any, list[str]]:
    """``use(backend)`` on the first usable backend of the format: (its result, why others
    could not); the result is None when none could run it."""
    reasons = []
    for name in fmt.backends:
        status = backend_status(name)
        if not status.usable:
            reasons.append(f"{name}: {status.reason}")
            continue
        try:
            with open_backend(name, path) as backend:
                return use(backend), reasons
        except EdgekitError as exc:
            interrupt.check()
            reasons.append(f"{name}: {exc}")
    return None, reasons


def _fidelity(artifact: Artifact, fmt: Format, job: Job, validation: Validation | None,
              task: Task) -> None:
    """Load the artifact on the first usable backend of its format: tensors, then fidelity.
    A format no backend here runs (imx500) is judged on the outputs its converter simulated."""
    simulated = job.simulated.get(fmt.key)
    if simulated is not None and validation is not None:
        artifact.fidelity = compare(validation.reference, simulated, validation, task,
                                    artifact.details.get("simulated_by", fmt.key))
        artifact.output_order = list(range(len(simulated)))
        return
    def use(backend: Any) -> bool:
        artifact.inputs = [t.to_dict() for t in backend.inputs]
        artifact.outputs = [t.to_dict() for t in backend.outputs]
        if validation is not None:
            artifact.fidelity, artifact.output_order = measure(backend, validation, task)
        else:
            artifact.output_order = list(range(len(backend.outputs)))
        return True

    done, reasons = _on_backend(fmt, job.workdir / artifact.file, use)
    if not done and reasons:  # imx500 without validation data: no backend to name
        artifact.warnings.append("fidelity not measured: " + "; ".join(reasons))


def _judge(validation: Validation, task: Task) -> Callable[[Path, str], Measured]:
    """How the int8 remedies measure a candidate: agreement and median latency."""
    def judge(path: Path, fmt: str) -> Measured:
        def use(backend: Any) -> Measured:
            timings: list[int] = []
            fidelity, _ = measure(backend, validation, task, timings=timings)
            return Measured(fidelity.top1_agreement, float(np.median(timings)) / 1e6)

        measured, _ = _on_backend(FORMATS[fmt], path, use)
        return measured or Measured(None, None)
    return judge


@keyword_only
@dataclass
class ConvertOptions:
    """What ``edgekit convert`` takes besides the model and the output folder. Anything left
    None comes from the model card (``MODEL.edgekit.json``), else a default."""

    formats: str | Sequence[str] | None = None  # "tflite-int8,onnx" or a list; None: all
    calib: str | Path | None = None  # calibration data for int8
    val: str | Path | None = None  # validation data for fidelity
    labels: str | Path | None = None
    force: bool = False  # replace an existing bundle at the output
    input_shape: Sequence[int] | None = None  # H, W, C for a model with unknown sizes
    int8_io: str = "int8"  # or "uint8": the full-integer model's input and output type
    spec: SpecOptions | None = None  # the input spec asked for (flags, a reference pipeline)
    detect: DetectionOptions | None = None  # the decoder and its parameters (a detector)
    task: str | None = None  # classification, detection, segmentation, generic
    imports: Sequence[str] = ()  # modules that register custom layers
    trust_model: bool = False  # let Keras load Python code (Lambda layers)
    min_agreement: float | None = None  # the gate: artifacts below it are failed
    remedy: bool = True  # let an int8 artifact below the bar try the remedies

    def format_keys(self) -> list[str]:
        text = self.formats if isinstance(self.formats, str) or self.formats is None \
            else ",".join(self.formats)
        return parse_formats(text)


@dataclass
class Prepared:
    """Everything settled and checked before the first artifact is written."""

    model: Any  # the keras.Model
    model_path: Path
    spec: InputSpec
    task: str
    card: dict[str, Any]
    labels: list[str]
    outputs: inputs.Outputs
    keras_outputs: list[np.ndarray]
    calibration: Samples | None
    validation: Validation | None
    scoring: Task
    gate: gates.Gate
    measurable: bool
    decoder: dict[str, Any]  # the detector's decoder settings, with where each came from
    warnings: list[str] = field(default_factory=list)


@checked
def convert(model_path: str | Path, output: str | Path, options: ConvertOptions | None = None,
            progress: Progress = _silent) -> Manifest:
    """Convert a Keras model file to every requested format; return the bundle's manifest.

    Four phases: ``prepare`` (settle and check everything: output, card, model, input spec,
    data, gate), ``build_formats`` (each artifact, its fidelity, its gate), ``check_runtimes``
    (which TFLite runtimes load each .tflite) and ``publish`` (the manifest, then the bundle
    renamed into place). Artifacts that agree with Keras less than ``min_agreement`` are
    ``failed``, and an existing bundle is then left as it was.
    """
    model_path, output = Path(model_path), Path(output)
    options = options or ConvertOptions()
    keys = options.format_keys()
    if options.int8_io not in ("int8", "uint8"):
        raise UsageError(f"int8_io must be int8 or uint8, not {options.int8_io!r}", param="int8_io")
    if options.input_shape:  # before TensorFlow loads (seconds) and allocates it
        check_image_shape((1, *options.input_shape), "the input shape")
    for what, data in (("calibration data", options.calib), ("validation data", options.val)):
        if data and not Path(data).exists():  # before the seconds TensorFlow takes to load
            raise InvalidData(f"{what}: {data} does not exist")
    destination.check_output(output, options.force)
    destination.check_room(output.parent, output)
    with Claim(output, "-o"):  # a second convert to the same -o refuses while this one runs
        return _convert(model_path, output, options, keys, identity(output), progress)


def _convert(model_path: Path, output: Path, options: ConvertOptions, keys: list[str],
             before: Identity, progress: Progress) -> Manifest:
    """``convert`` once the output is checked and claimed; ``before``: what is at the output
    now, which the bundle may replace only if it is still there, unchanged, at the end."""
    prepared = prepare(model_path, options, progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    export_dir = Path(tempfile.mkdtemp(prefix="edgekit-savedmodel-"))
    interrupt.remember(tmp)  # a hard exit on Ctrl-C removes them too
    interrupt.remember(export_dir)
    try:
        normal_permissions(tmp)  # mkdtemp makes it 0700; a bundle is a plain folder
        progress("exporting a batch-1 SavedModel")
        export_saved_model(prepared.model, prepared.spec.shape[1:], export_dir)
        job = Job(model=prepared.model, name=model_path.stem, spec=prepared.spec,
                  saved_model=export_dir, workdir=tmp,
                  calibration=None if prepared.calibration is None else prepared.calibration.x,
                  int8_io=options.int8_io, progress=progress, output=output,
                  validation=prepared.validation, scoring=prepared.scoring,
                  remedies=options.remedy)
        artifacts = build_formats(prepared, job, keys, options.remedy)
        prepared.warnings.extend(check_runtimes(artifacts, tmp, progress))
        manifest = publish(prepared, artifacts, tmp, output, options.val, before)
    except OSError as exc:  # the bundle's own files (manifest, validation set), or the rename
        destination.check_room(tmp if tmp.exists() else output.parent, output)
        raise WriteFailed(f"-o {output}: writing {exc.filename or 'the bundle'} failed: "
                          f"{cause(exc)}; nothing was written there") from None
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        interrupt.forget(tmp)
        interrupt.forget(export_dir)
    return manifest


def prepare(model_path: Path, options: ConvertOptions, progress: Progress) -> Prepared:
    """Phase 1: the model card, the model, its input spec and outputs, the data (checked),
    the Keras outputs on the validation set, and the gate. Nothing is written."""
    card = load_card(model_path)
    label_file = options.labels or card.get("labels")
    label_list = read_labels(label_file) if label_file else []
    warnings: list[str] = []
    quiet_tensorflow()
    progress(f"loading {model_path.name}")
    import_modules(options.imports)
    model = load_keras_model(model_path, trust=options.trust_model)
    shape = input_shape(model, options.input_shape)
    spec = inputs.input_spec(shape, card, options.spec, input_name(model),
                             "flag" if options.input_shape else "model")
    progress(spec.describe())
    try:
        probe_out = model(np.zeros(spec.shape, np.float32), training=False)
    except Exception as exc:
        raise InvalidData(f"the model does not run on an input of shape {spec.shape}: "
                          f"{first_line(exc, 200)}") from None
    keras_outputs = [np.asarray(o) for o in _as_list(probe_out)]
    task = options.task or card.get("task") or _guess_task([o.shape for o in keras_outputs])
    if task == "segmentation":
        from edgekit.tasks.segmentation import mask_layout

        mask_layout(keras_outputs[0].shape)  # H x W x C or H x W, or one line
    decoder = inputs.decoder_settings(task, card, options.detect, label_list,
                                      [o.shape for o in keras_outputs], spec)
    if decoder:
        progress(describe_decoder(decoder, decoder["origin"]))
    outputs = inputs.describe_outputs(model, keras_outputs, task, card,
                                      list(probe_out) if isinstance(probe_out, dict) else None)
    inputs.check_labels_file(label_list, outputs, str(label_file))
    calibration = inputs.load_data(options.calib or card.get("calibration"), spec, label_list,
                                   "calibration data", outputs.classes, warnings)
    val_samples = inputs.load_data(options.val or card.get("validation"), spec, label_list,
                                   "validation data", outputs.classes, warnings)
    coverage = inputs.calibration_coverage(calibration, val_samples)
    if coverage:
        warnings.append(coverage)
    learnt = not label_list and val_samples is not None and bool(val_samples.label_names)
    if learnt:
        label_list = list(val_samples.label_names)
    validation = None
    if val_samples is not None:
        progress(f"running Keras on {len(val_samples)} validation samples")
        predicted = [np.asarray(p) for p in _as_list(
            model.predict(val_samples.x, batch_size=32, verbose=0))]
        inputs.check_reference(predicted, val_samples.source)
        if learnt:
            inputs.check_learnt_labels(val_samples, predicted, outputs)
        validation = Validation(val_samples.x, val_samples.y, predicted, val_samples.boxes,
                                val_samples.masks)
    else:
        warnings.append("no validation data: give --val to measure fidelity")
    scoring = Task(task, decoder or None, tuple(label_list), (spec.width, spec.height),
                   outputs.class_scores, outputs.names)
    measurable = validation is not None and bool(scoring.class_outputs or (
        task == "detection" and scoring.decoder))
    gate = gates.make_gate(options.min_agreement, card, task, measurable,
                           "there is no validation data (give --val)" if validation is None
                           else "the model has no class-score output to agree on",
                           options.remedy)
    unsure = inputs.default_spec_warning(spec)
    if unsure:
        warnings.append(unsure)
    return Prepared(model, model_path, spec, task, card, label_list, outputs, keras_outputs,
                    calibration, validation, scoring, gate, measurable, decoder, warnings)


def build_formats(prepared: Prepared, job: Job, keys: Sequence[str],
                  remedy: bool) -> list[Artifact]:
    """Phase 2: each format in turn: build it (the int8 ones judged by the remedies), measure
    its fidelity, hold it to the gate; a failed artifact's files leave the bundle."""
    artifacts = []
    for i, key in enumerate(keys, 1):
        interrupt.check()  # a runtime that swallowed Ctrl-C (TF's calibration) went on
        fmt = FORMATS[key]
        target = prepared.gate.target(key) if prepared.measurable else None
        job.remedy = None if target is None else RemedyPlan(
            target, _judge(prepared.validation, prepared.scoring), enabled=remedy)
        job.progress(f"[{i}/{len(keys)}] {key}: converting")
        artifact = _build(fmt, job)
        if artifact.ok:
            job.progress(f"[{i}/{len(keys)}] {key}: measuring fidelity")
            _fidelity(artifact, fmt, job, prepared.validation, prepared.scoring)
        warning = gates.judge(artifact, prepared.gate)
        if warning:
            prepared.warnings.append(warning)
        if artifact.status == "failed" and artifact.files:
            destination.drop_files(artifact, job.workdir)
            job.built.pop(key, None)
        job.details[key] = artifact.details
        artifacts.append(artifact)
    return artifacts


def check_runtimes(artifacts: Sequence[Artifact], folder: Path, progress: Progress
                   ) -> list[str]:
    """Phase 3: load and invoke every .tflite artifact in every TFLite runtime configured
    (``edgekit.helpers.config.tflite_pythons``), each in its own process; the verdicts go in the
    artifacts' ``runtimes``. Returns a line for each configured Python that was skipped (it is
    missing, is not a Python, hangs, has no runtime), also shown as progress when it happens."""
    interrupt.check()
    tflite = {a.format: folder / a.file for a in artifacts
              if a.ok and a.file.endswith(".tflite") and a.format != "edgetpu"}
    if not tflite:
        return []
    progress("checking which TFLite runtimes load each artifact")
    skipped: list[str] = []

    def skip(line: str) -> None:
        skipped.append(line)
        progress(line)
    checked = check_tflite_runtimes(list(tflite.values()), skip)
    for a in artifacts:
        if a.format in tflite:
            a.runtimes = checked[tflite[a.format]]
    return skipped


def publish(prepared: Prepared, artifacts: list[Artifact], tmp: Path, output: Path,
            val: str | Path | None, before: Identity = None) -> Manifest:
    """Phase 4: the manifest and the validation set into the bundle being built, then the
    bundle renamed into place (if ``output`` is still ``before``, what was there at the
    start), unless a gate failed over an existing bundle (kept as it was: the manifest says
    ``written: false``)."""
    p = prepared
    manifest = Manifest(
        name=p.model_path.stem,
        task=p.task,
        input=p.spec,
        outputs=[{"name": name, "shape": list(o.shape), "dtype": "float32",
                  "class_scores": i in p.outputs.class_scores}
                 for i, (name, o) in enumerate(zip(p.outputs.names, p.keras_outputs))],
        labels=p.labels,
        decoder=inputs.bundled_decoder(p.decoder, tmp),
        source=_source(p.model_path, p.model),
        validation=_validation_summary(p.validation, p.scoring, val or p.card.get("validation")),
        artifacts=artifacts,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        edgekit_version=__version__,
    )
    manifest.source["warnings"] = p.warnings
    if p.gate.minimum is not None:
        manifest.validation["min_agreement"] = p.gate.minimum
    if p.validation is not None:
        p.validation.save(tmp)
    write_manifest(manifest, tmp)
    gated = [a.format for a in artifacts if a.status == "failed" and a.fidelity is not None]
    if gated and output.exists():
        p.warnings.append(f"{output} was not replaced: {', '.join(gated)} failed the fidelity "
                          "checks, so the previous bundle is left untouched")
        manifest.source["written"] = False
    else:
        destination.move_into_place(tmp, output, before)
    return manifest


def _as_list(outputs: Any) -> list[Any]:
    """A model's outputs as a list: one tensor, a list/tuple, or a dict (in its order)."""
    if isinstance(outputs, dict):
        return list(outputs.values())
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _source(model_path: Path, model: Any) -> dict[str, Any]:
    import keras

    return {"file": model_path.name, "sha256": sha256_file(model_path),
            "keras": keras.__version__, "kind": _model_kind(model),
            "parameters": int(model.count_params())}


def _validation_summary(validation: Validation | None, task: Task,
                        source: str | Path | None) -> dict[str, Any]:
    if validation is None:
        return {}
    metric = {"detection": "mAP@0.5", "segmentation": "pixel"}.get(task.name, "top-1")
    return {"file": "validation.npz", "source": str(source), "samples": int(len(validation.x)),
            "labels": validation.y is not None, "boxes": validation.boxes is not None,
            "masks": validation.masks is not None,
            "metric": metric, "keras_accuracy": keras_accuracy(validation, task)}
