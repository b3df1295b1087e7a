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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit import __version__, interrupt
from edgekit.backends import backend_class, open_backend
from edgekit.convert import gates, inputs
from edgekit.convert.job import Job, Skipped
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
from edgekit.datasets import read_labels
from edgekit.errors import EdgekitError, InvalidData, UsageError, WriteFailed, first_line
from edgekit.fidelity import Task, Validation, keras_accuracy, measure
from edgekit.formats import FORMATS, Format, parse_formats
from edgekit.integrity import sha256_file
from edgekit.manifest import (
    Artifact,
    FileRecord,
    Manifest,
    is_bundle,
    tensor_to_dict,
    write_manifest,
)
from edgekit.outputs import cause, write_probe
from edgekit.preprocess import SpecOptions
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
        card = json.loads(card_path.read_text())
    except ValueError as exc:
        raise UsageError(f"{card_path}: not valid JSON ({exc})") from None
    for key in ("labels", "calibration", "validation"):
        if card.get(key):
            card[key] = str(card_path.parent / card[key])
    return card


def _check_output(output: Path, force: bool) -> None:
    if not output.exists():
        if not output.parent.exists():
            raise UsageError(f"cannot write {output}: {output.parent} does not exist")
        return
    if not force:
        raise UsageError(f"{output} already exists; pass --force to replace it, or choose "
                         "another folder with -o")
    if not output.is_dir() or (any(output.iterdir()) and not is_bundle(output)):
        raise UsageError(f"{output} exists and is not an edgekit bundle; refusing to replace it "
                         "even with --force")


def _check_room(folder: Path, output: Path) -> None:
    """WriteFailed when ``folder`` cannot be written now (a full disk, a read-only mount):
    a format that failed for that reason must stop the conversion, not be reported failed."""
    problem = write_probe(folder)
    if problem is not None:
        raise WriteFailed(f"-o {output}: writing the bundle failed: {cause(problem)}; nothing "
                          "was written there" + (" (the earlier bundle is kept)"
                                                 if output.exists() else ""))


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
        _check_room(job.workdir, job.output)
        return Artifact(fmt.key, "failed", reason=str(exc))
    except Exception as exc:  # a converter bug must not stop the other formats
        interrupt.check()
        _check_room(job.workdir, job.output)
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
        status = backend_class(name).probe()
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
    """Load the artifact on the first usable backend of its format: tensors, then fidelity."""
    def use(backend: Any) -> bool:
        artifact.inputs = [tensor_to_dict(t) for t in backend.inputs]
        artifact.outputs = [tensor_to_dict(t) for t in backend.outputs]
        if validation is not None:
            artifact.fidelity, artifact.output_order = measure(backend, validation, task)
        else:
            artifact.output_order = list(range(len(backend.outputs)))
        return True

    done, reasons = _on_backend(fmt, job.workdir / artifact.file, use)
    if not done:
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


def _drop_files(artifact: Artifact, folder: Path) -> None:
    """A failed artifact leaves the bundle; its record (and figures) stays in the manifest."""
    for name in artifact.files:
        (folder / name).unlink(missing_ok=True)
    artifact.file, artifact.files, artifact.size = "", {}, 0


def _publish(tmp: Path, output: Path) -> None:
    """Move the finished bundle into place; an older bundle there is replaced only now.

    Ctrl-C waits for the two renames: never the old bundle moved aside and the new one not in.
    """
    with interrupt.deferred():
        _swap_in(tmp, output)


def _swap_in(tmp: Path, output: Path) -> None:
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
        output.rename(old / output.name)
        tmp.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output)


def convert(
    model_path: str | Path,
    output: str | Path,
    *,
    formats: str | Sequence[str] | None = None,
    calib: str | Path | None = None,
    val: str | Path | None = None,
    labels: str | Path | None = None,
    force: bool = False,
    input_shape_override: Sequence[int] | None = None,
    int8_io: str = "int8",
    spec: SpecOptions | None = None,
    detect: DetectionOptions | None = None,
    task: str | None = None,
    imports: Sequence[str] = (),
    trust_model: bool = False,
    min_agreement: float | None = None,
    remedy: bool = True,
    progress: Progress = _silent,
) -> Manifest:
    """Convert a Keras model file to every requested format; return the bundle's manifest.

    ``spec``: the input spec asked for (flags, a reference pipeline) over the model card's.
    ``detect``: the decoder and its parameters over the card's ``decoder`` (a detector).
    ``min_agreement``: artifacts that agree with Keras less are ``failed`` (and an existing
    bundle is then left as it was). ``remedy``: let an int8 artifact below the bar try the
    remedies (better calibration, sensitive layers kept float).
    """
    model_path, output = Path(model_path), Path(output)
    keys = parse_formats(formats if isinstance(formats, str) or formats is None
                         else ",".join(formats))
    if int8_io not in ("int8", "uint8"):
        raise UsageError(f"--int8-io must be int8 or uint8, not {int8_io!r}")
    _check_output(output, force)
    _check_room(output.parent, output)
    card = load_card(model_path)
    label_file = labels or card.get("labels")
    label_list = read_labels(label_file) if label_file else []
    warnings: list[str] = []

    quiet_tensorflow()
    progress(f"loading {model_path.name}")
    import_modules(imports)
    model = load_keras_model(model_path, trust=trust_model)
    shape = input_shape(model, input_shape_override)
    spec = inputs.input_spec(shape, card, spec, input_name(model),
                             "flag" if input_shape_override else "model")
    progress(spec.describe())
    reference_input = np.zeros(spec.shape, np.float32)
    try:
        probe_out = model(reference_input, training=False)
    except Exception as exc:
        raise InvalidData(f"the model does not run on an input of shape {spec.shape}: "
                          f"{first_line(exc, 200)}") from None
    keras_outputs = [np.asarray(o) for o in _as_list(probe_out)]
    task = task or card.get("task") or _guess_task([o.shape for o in keras_outputs])
    decoder = inputs.decoder_settings(task, card, detect, label_list,
                                      [o.shape for o in keras_outputs], spec)
    if decoder:
        progress(describe_decoder(decoder, decoder["origin"]))
    outputs = inputs.describe_outputs(model, keras_outputs, task, card,
                                      list(probe_out) if isinstance(probe_out, dict) else None)
    inputs.check_labels_file(label_list, outputs, str(label_file))
    calibration = inputs.load_data(calib or card.get("calibration"), spec, label_list,
                                   "calibration data", outputs.classes, warnings)
    val_samples = inputs.load_data(val or card.get("validation"), spec, label_list,
                                   "validation data", outputs.classes, warnings)
    coverage = inputs.calibration_coverage(calibration, val_samples)
    if coverage:
        warnings.append(coverage)
    if not label_list and val_samples is not None and val_samples.label_names:
        label_list = list(val_samples.label_names)
    validation = None
    if val_samples is not None:
        progress(f"running Keras on {len(val_samples)} validation samples")
        predicted = [np.asarray(p) for p in _as_list(
            model.predict(val_samples.x, batch_size=32, verbose=0))]
        inputs.check_reference(predicted, val_samples.source)
        validation = Validation(val_samples.x, val_samples.y, predicted, val_samples.boxes)
    else:
        warnings.append("no validation data: give --val to measure fidelity")
    scoring = Task(task, decoder or None, tuple(label_list), (spec.width, spec.height),
                   outputs.class_scores, outputs.names)
    measurable = validation is not None and bool(scoring.class_outputs or (
        task == "detection" and scoring.decoder))
    gate = gates.make_gate(min_agreement, card, task, measurable,
                           "there is no validation data (give --val)" if validation is None
                           else "the model has no class-score output to agree on", remedy)
    unsure = inputs.default_spec_warning(spec)
    if unsure:
        warnings.append(unsure)

    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    export_dir = Path(tempfile.mkdtemp(prefix="edgekit-savedmodel-"))
    interrupt.remember(tmp)  # a hard exit on Ctrl-C removes them too
    interrupt.remember(export_dir)
    try:
        progress("exporting a batch-1 SavedModel")
        export_saved_model(model, shape, export_dir)
        job = Job(model=model, name=model_path.stem, spec=spec, saved_model=export_dir,
                  workdir=tmp, calibration=None if calibration is None else calibration.x,
                  int8_io=int8_io, progress=progress, output=output)
        artifacts = []
        for i, key in enumerate(keys, 1):
            fmt = FORMATS[key]
            target = gate.target(key) if measurable else None
            job.remedy = None if target is None else RemedyPlan(
                target, _judge(validation, scoring), enabled=remedy)
            progress(f"[{i}/{len(keys)}] {key}: converting")
            artifact = _build(fmt, job)
            if artifact.ok:
                progress(f"[{i}/{len(keys)}] {key}: measuring fidelity")
                _fidelity(artifact, fmt, job, validation, scoring)
            warning = gates.judge(artifact, gate)
            if warning:
                warnings.append(warning)
            if artifact.status == "failed" and artifact.files:
                _drop_files(artifact, tmp)
                job.built.pop(key, None)
            job.details[key] = artifact.details
            artifacts.append(artifact)
        tflite = {a.format: tmp / a.file for a in artifacts
                  if a.ok and a.file.endswith(".tflite") and a.format != "edgetpu"}
        if tflite:
            progress("checking which TFLite runtimes load each artifact")
            checked = check_tflite_runtimes(list(tflite.values()))
            for a in artifacts:
                if a.format in tflite:
                    a.runtimes = checked[tflite[a.format]]
        manifest = Manifest(
            name=model_path.stem,
            task=task,
            input=spec,
            outputs=[{"name": name, "shape": list(o.shape), "dtype": "float32",
                      "class_scores": i in outputs.class_scores}
                     for i, (name, o) in enumerate(zip(outputs.names, keras_outputs))],
            labels=label_list,
            decoder=inputs.bundled_decoder(decoder, tmp),
            source=_source(model_path, model),
            validation=_validation_summary(validation, scoring, val or card.get("validation")),
            artifacts=artifacts,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            edgekit_version=__version__,
        )
        manifest.source["warnings"] = warnings
        if gate.minimum is not None:
            manifest.validation["min_agreement"] = gate.minimum
        if validation is not None:
            validation.save(tmp)
        write_manifest(manifest, tmp)
        gated = [a.format for a in artifacts if a.status == "failed" and a.fidelity is not None]
        if gated and output.exists():
            warnings.append(f"{output} was not replaced: {', '.join(gated)} failed the fidelity "
                            "checks, so the previous bundle is left untouched")
            manifest.source["written"] = False
        else:
            _publish(tmp, output)
    except OSError as exc:  # the bundle's own files (manifest, validation set), or the rename
        _check_room(tmp if tmp.exists() else output.parent, output)
        raise WriteFailed(f"-o {output}: writing {exc.filename or 'the bundle'} failed: "
                          f"{cause(exc)}; nothing was written there") from None
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        interrupt.forget(tmp)
        interrupt.forget(export_dir)
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
    metric = "mAP@0.5" if task.name == "detection" else "top-1"
    return {"file": "validation.npz", "source": str(source), "samples": int(len(validation.x)),
            "labels": validation.y is not None, "boxes": validation.boxes is not None,
            "metric": metric, "keras_accuracy": keras_accuracy(validation, task)}
