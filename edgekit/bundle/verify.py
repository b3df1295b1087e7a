"""Check a bundle where it lies: every artifact file against the manifest's sha256, then a
few validation samples through a backend, compared with the Keras model's own answers.

``edgekit verify`` runs this; ``edgekit deploy`` runs it on the device as its smoke test and
compares the device's answers with the workstation's for the same artifact.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.fidelity import Task, agreeing, top1
from edgekit.bundle.integrity import compare_file
from edgekit.bundle.manifest import Manifest, bundle_folder, read_manifest


@dataclass
class FileCheck:
    """One artifact file compared with the manifest."""

    name: str
    ok: bool
    size: int = 0
    expected_sha256: str = ""
    actual_sha256: str = ""
    problem: str = ""  # "missing", "size differs", "sha256 differs"


@dataclass
class SampleResult:
    """One validation sample: the artifact's top-1 (class scores), Keras's, the label."""

    index: int
    top1: int | None
    reference_top1: int | None
    label: int | None = None
    max_abs_diff: float | None = 0.0  # None: an output held NaN or inf
    finite: bool = True  # every output of the artifact is a finite number


@dataclass
class VerifyReport:
    """What ``verify_bundle`` found."""

    bundle: str
    files: list[FileCheck] = field(default_factory=list)
    backend: str = ""
    runtime: str = ""
    device: str = ""
    format: str = ""
    artifact: str = ""
    task: str = ""
    samples: list[SampleResult] = field(default_factory=list)
    validation: bool = True  # the bundle has a validation set
    finite: bool = True  # every output on every sample run (or on zeros) was finite
    seconds: float = 0.0
    pixel_agreement: float | None = None  # a segmenter: pixels whose class equals Keras's
    miou_agreement: float | None = None  # a segmenter: mean IoU of its masks and Keras's

    @property
    def files_ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def agreement(self) -> float | None:
        """Share of samples whose top-1 equals Keras's (class-score outputs only)."""
        known = [s for s in self.samples if s.reference_top1 is not None]
        if not known:
            return None
        return agreeing([s.reference_top1 for s in known], [s.top1 for s in known]) / len(known)

    @property
    def accuracy(self) -> float | None:
        known = [s for s in self.samples if s.label is not None and s.reference_top1 is not None]
        if not known:
            return None
        return agreeing([s.label for s in known], [s.top1 for s in known]) / len(known)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(files_ok=self.files_ok, agreement=self.agreement, accuracy=self.accuracy)
        return data

    def problem(self) -> str | None:
        """Why this verification fails (None when it passes); empty runs pass only when
        ``allow_empty`` was asked for, so a check that compared nothing is never mistaken
        for one that compared well."""
        bad = [f.name for f in self.files if not f.ok]
        if bad:
            return (f"{len(bad)} artifact file(s) of {self.bundle} do not match the manifest "
                    f"({', '.join(bad)}): copy the bundle again")
        if not self.finite:
            count = sum(not s.finite for s in self.samples)
            where = f"on {count} of {len(self.samples)} samples" if self.samples else "on zeros"
            return (f"{self.artifact} outputs NaN or inf {where} on {self.backend}: the "
                    "artifact or the runtime is broken here; convert again or try another "
                    "backend")
        return None


def check_files(bundle: str | Path | Manifest) -> list[FileCheck]:
    """Every file of every built artifact in the manifest, checked by size and sha256.
    ``bundle``: its folder, or the bundle already opened (not read again)."""
    manifest = bundle if isinstance(bundle, Manifest) else read_manifest(bundle)
    bundle = bundle_folder(manifest)
    checks = []
    for artifact in manifest.artifacts:
        if not artifact.ok:
            continue
        for name, record in artifact.files.items():
            found = compare_file(bundle / name, record, cached=False)  # always hash here
            checks.append(FileCheck(name, not found.problem, record.size, record.sha256,
                                    found.sha256, found.problem))
    return checks


def verify_bundle(bundle: str | Path, *, backend: str | None = None, device: str | None = None,
                  fmt: str | None = None, samples: int = 10,
                  threads: int | None = None) -> VerifyReport:
    """Check the bundle's files; if they match, run ``samples`` validation samples (0: all).

    A bundle without validation.npz runs one inference on zeros instead. Raises
    InvalidModel when the bundle has no manifest; a file that does not match is reported,
    not raised, and then no model is loaded.
    """
    from edgekit.bundle.fidelity import load_validation, predict, task_of
    from edgekit.model import load_model

    bundle = Path(bundle)
    started = time.perf_counter()
    manifest = read_manifest(bundle)  # opened once, passed on
    report = VerifyReport(str(bundle), files=check_files(manifest))
    if not report.files_ok:
        return report
    validation = load_validation(bundle)
    with load_model(manifest, backend=backend, device=device, threads=threads,
                    fmt=fmt) as model:
        report.backend, report.runtime = model.backend.name, model.backend.runtime
        report.device, report.format = model.backend.device, model.format or ""
        report.artifact, report.task = Path(str(model.artifact)).name, model.task
        if validation is None or not len(validation.x):
            # nothing to compare: one inference on zeros shows whether it runs at all
            report.validation = False
            outputs = model.predict(np.zeros(model.spec.shape, np.float32))
            report.finite = all(np.all(np.isfinite(o)) for o in outputs)
            report.seconds = time.perf_counter() - started
            return report
        count = len(validation.x) if samples <= 0 else min(samples, len(validation.x))
        produced = predict(model.backend, validation.x[:count], model.output_order)
        task = task_of(model.manifest) if model.manifest else Task(model.task)
    reference = [r[:count] for r in validation.reference]
    labels = None if validation.y is None else validation.y[:count]
    report.samples = _per_sample(reference, produced, labels, task)
    if task.name == "segmentation" and task.class_outputs:
        report.pixel_agreement, report.miou_agreement = _mask_agreement(
            reference[task.class_outputs[0]], produced[task.class_outputs[0]])
    report.finite = all(s.finite for s in report.samples)
    report.seconds = time.perf_counter() - started
    return report


def _per_sample(reference: list[np.ndarray], produced: list[np.ndarray],
                labels: np.ndarray | None, task: Task) -> list[SampleResult]:
    """Each sample's top-1 answers (the first class-score output; fidelity.top1, the one
    definition) and its largest difference from Keras over every output."""
    scores = task.class_outputs[0] if task.class_outputs and task.name != "detection" else None
    answers = ref_answers = None
    if scores is not None and top1(reference[scores][:1]).shape[1] == 1:
        answers = top1(produced[scores].reshape(reference[scores].shape))[:, 0]
        ref_answers = top1(reference[scores])[:, 0]
    results = []
    for i in range(len(reference[0])):
        outs = [p[i].reshape(r[i].shape).astype(np.float64) for r, p in zip(reference, produced)]
        finite = all(np.all(np.isfinite(o)) for o in outs)
        diff = max(float(np.abs(o - r[i]).max()) for o, r in zip(outs, reference)) \
            if finite else None
        label = None if labels is None else int(labels[i])
        results.append(SampleResult(
            i, None if answers is None else int(answers[i]),
            None if ref_answers is None else int(ref_answers[i]), label, diff, finite))
    return results


def _mask_agreement(reference: np.ndarray, produced: np.ndarray) -> tuple[float, float]:
    """A segmenter's (pixel agreement, mean-IoU agreement) with Keras's masks: the figures
    convert gives (fidelity.class_maps, the one definition of a mask)."""
    from edgekit.bundle.fidelity import agreement, class_maps
    from edgekit.tasks.metrics import mean_iou

    keras, got = class_maps(reference), class_maps(produced.reshape(reference.shape))
    return agreement(keras.reshape(-1), got.reshape(-1)), mean_iou(keras, got)


def summary(report: VerifyReport) -> str:
    """What ``edgekit verify`` prints."""
    bad = [f for f in report.files if not f.ok]
    lines = [f"files: {len(report.files)} artifact file(s) checked against the manifest "
             f"(sha256): " + ("all match" if not bad else f"{len(bad)} do not match")]
    lines += [f"  {f.name}: {f.problem}" for f in bad]
    if bad:
        return "\n".join(lines)
    lines.append(f"model: {report.artifact} ({report.format}) on {report.backend} "
                 f"({report.runtime}, {report.device})")
    n = len(report.samples)
    if not report.validation:
        return "\n".join(lines + ["samples: none (the bundle has no validation set); one "
                                   "inference on zeros " + ("ran" if report.finite else
                                                            "gave NaN or inf")])
    diffs = [s.max_abs_diff for s in report.samples if s.max_abs_diff is not None]
    text = f"samples: {n}, largest |output - Keras| {max(diffs, default=0.0):.3g}"
    if not report.finite:
        text += f", NaN or inf on {sum(not s.finite for s in report.samples)}"
    if report.agreement is not None:
        text += f", top-1 agrees with Keras on {round(report.agreement * n)}/{n}"
    if report.pixel_agreement is not None:
        text += (f", {100 * report.pixel_agreement:.2f}% of pixels in Keras's class (mask "
                 f"mIoU agreement {report.miou_agreement:.3f})")
    if report.accuracy is not None:
        text += f", accuracy {round(report.accuracy * n)}/{n}"
    lines.append(text)
    if report.agreement is not None:
        lines.append("top-1: " + " ".join(str(s.top1) for s in report.samples))
    return "\n".join(lines)
