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

from edgekit.convert import sha256_file
from edgekit.manifest import read_manifest


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
    """One validation sample: the artifact's top-1 (classification), Keras's, the label."""

    index: int
    top1: int | None
    reference_top1: int | None
    label: int | None = None
    max_abs_diff: float = 0.0


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
    seconds: float = 0.0

    @property
    def files_ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def agreement(self) -> float | None:
        """Share of samples whose top-1 equals Keras's (classification only)."""
        known = [s for s in self.samples if s.top1 is not None and s.reference_top1 is not None]
        return sum(s.top1 == s.reference_top1 for s in known) / len(known) if known else None

    @property
    def accuracy(self) -> float | None:
        known = [s for s in self.samples if s.top1 is not None and s.label is not None]
        return sum(s.top1 == s.label for s in known) / len(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(files_ok=self.files_ok, agreement=self.agreement, accuracy=self.accuracy)
        return data


def check_files(bundle: str | Path) -> list[FileCheck]:
    """Every file of every built artifact in the manifest, checked by size and sha256."""
    bundle = Path(bundle)
    checks = []
    for artifact in read_manifest(bundle).artifacts:
        if not artifact.ok:
            continue
        for name, record in artifact.files.items():
            path = bundle / name
            check = FileCheck(name, False, record.size, record.sha256)
            if not path.is_file():
                check.problem = "missing"
            elif path.stat().st_size != record.size:
                size = path.stat().st_size
                check.problem = f"size differs ({size} bytes, manifest {record.size})"
            else:
                check.actual_sha256 = sha256_file(path)
                check.ok = check.actual_sha256 == record.sha256
                check.problem = "" if check.ok else "sha256 differs"
            checks.append(check)
    return checks


def verify_bundle(bundle: str | Path, *, backend: str | None = None, device: str | None = None,
                  fmt: str | None = None, samples: int = 10,
                  threads: int | None = None) -> VerifyReport:
    """Check the bundle's files; if they match, run ``samples`` validation samples (0: all).

    A bundle without validation.npz runs one inference on zeros instead. Raises
    InvalidModel when the bundle has no manifest; a file that does not match is reported,
    not raised, and then no model is loaded.
    """
    from edgekit.fidelity import load_validation, predict
    from edgekit.model import load_model

    bundle = Path(bundle)
    started = time.perf_counter()
    report = VerifyReport(str(bundle), files=check_files(bundle))
    if not report.files_ok:
        return report
    validation = load_validation(bundle)
    with load_model(bundle, backend=backend, device=device, threads=threads, fmt=fmt) as model:
        report.backend, report.runtime = model.backend.name, model.backend.runtime
        report.device, report.format = model.backend.device, model.format or ""
        report.artifact, report.task = Path(str(model.artifact)).name, model.task
        if validation is None:  # no samples: one inference on zeros proves it runs
            model.predict(np.zeros(model.spec.shape, np.float32))
            report.seconds = time.perf_counter() - started
            return report
        count = len(validation.x) if samples <= 0 else min(samples, len(validation.x))
        produced = predict(model.backend, validation.x[:count], model.output_order)
    reference = [r[:count] for r in validation.reference]
    labels = None if validation.y is None else validation.y[:count]
    report.samples = _per_sample(reference, produced, labels, report.task)
    report.seconds = time.perf_counter() - started
    return report


def _per_sample(reference: list[np.ndarray], produced: list[np.ndarray],
                labels: np.ndarray | None, task: str) -> list[SampleResult]:
    results = []
    for i in range(len(reference[0])):
        diff = max(float(np.abs(p[i].reshape(r[i].shape).astype(np.float64) - r[i]).max())
                   for r, p in zip(reference, produced))
        top1 = ref_top1 = None
        if task == "classification":
            top1 = int(np.argmax(produced[0][i]))
            ref_top1 = int(np.argmax(reference[0][i]))
        label = None if labels is None else int(labels[i])
        results.append(SampleResult(i, top1, ref_top1, label, diff))
    return results


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
    worst = max((s.max_abs_diff for s in report.samples), default=0.0)
    text = f"samples: {n}, largest |output - Keras| {worst:.3g}"
    if report.agreement is not None:
        text += f", top-1 agrees with Keras on {round(report.agreement * n)}/{n}"
    if report.accuracy is not None:
        text += f", accuracy {round(report.accuracy * n)}/{n}"
    lines.append(text)
    if report.task == "classification":
        lines.append("top-1: " + " ".join(str(s.top1) for s in report.samples))
    return "\n".join(lines)
