"""The smoke test's verdict: what the device ran and answered, against the workstation.

The device runs ``edgekit backends --json`` and ``edgekit verify --json`` with the new
release's own environment (see agent/smoke.py). Here its top-1 answers are compared with the
workstation's for the same artifact format (through a backend that runs it here), and with
the Keras model's answers stored in the bundle.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle.formats import FORMATS
from edgekit.deploy.checks import smoke_problem
from edgekit.errors import DeployError


@dataclass
class SampleCheck:
    """One validation sample's top-1 on the device, on the workstation, in Keras; its label."""

    index: int
    device: int | None
    workstation: int | None
    keras: int | None
    label: int | None


@dataclass
class SmokeReport:
    """What the device ran, what it found, and how its answers compare."""

    backend: str
    runtime: str
    device: str
    devices: list[str]  # what `edgekit backends` on the device found for that backend
    format: str
    artifact: str
    samples: list[SampleCheck] = field(default_factory=list)
    compared_with: str = ""  # "tflite (ai-edge-litert 2.3.0) here", or "" (Keras only)
    max_abs_diff: float = 0.0  # the device's outputs against Keras's
    pixel_agreement: float | None = None  # a segmenter's masks against Keras's, on the device
    miou_agreement: float | None = None

    @property
    def matches(self) -> int | None:
        """Samples whose device top-1 equals the workstation's (or Keras's, without one);
        None when the model has no top-1 (a detector: see max_abs_diff)."""
        from edgekit.bundle.fidelity import agreeing

        if not any(s.device is not None for s in self.samples):
            return None
        reference = [s.workstation if self.compared_with else s.keras for s in self.samples]
        return agreeing(reference, [s.device for s in self.samples])


def smoke_report(answer: dict[str, Any], bundle: Path, samples: int,
                 workstation: Callable[[Path, str, int], tuple[list[int | None], str]]
                 | None = None) -> SmokeReport:
    """Turn the agent's smoke answer into a report; DeployError when the device failed.
    ``workstation``: what gives the workstation's top-1 answers (default: workstation_top1)."""
    problem = smoke_problem(answer)
    if problem:
        raise DeployError(f"the smoke test failed on the device: {problem}")
    verify = answer["verify"]
    statuses = {s["name"]: s for s in answer.get("backends") or []}
    found = statuses.get(verify["backend"], {}).get("devices", [])
    report = SmokeReport(verify["backend"], verify["runtime"], verify["device"], found,
                         verify["format"], verify["artifact"])
    report.max_abs_diff = max((s["max_abs_diff"] for s in verify["samples"]
                               if s["max_abs_diff"] is not None), default=0.0)
    report.pixel_agreement = verify.get("pixel_agreement")
    report.miou_agreement = verify.get("miou_agreement")
    local, report.compared_with = (workstation or workstation_top1)(
        bundle, verify["format"], samples)
    for i, s in enumerate(verify["samples"]):
        report.samples.append(SampleCheck(s["index"], s["top1"],
                                          local[i] if i < len(local) else None,
                                          s["reference_top1"], s["label"]))
    return report


def workstation_top1(bundle: Path, fmt: str, samples: int) -> tuple[list[int | None], str]:
    """Top-1 answers for the same artifact format here, and what ran it ("" if nothing can)."""
    from edgekit.backends import backend_status
    from edgekit.bundle.verify import verify_bundle
    from edgekit.errors import EdgekitError

    for name in FORMATS[fmt].backends:
        try:
            if not backend_status(name).usable:
                continue
            report = verify_bundle(bundle, backend=name, fmt=fmt, samples=samples)
        except EdgekitError:
            continue
        return [s.top1 for s in report.samples], f"{report.backend} ({report.runtime}) here"
    return [], ""
