"""The agreement bar an artifact must reach, and what happens below it.

With ``--quantize min_agreement=X`` (or ``min_agreement`` in the model card) an artifact
that agrees with Keras less than X is ``failed``: its files leave the bundle and
the run exits 1. Without it, an int8 artifact below the usual bar (0.99 top-1
for class scores, 0.98 mAP-agreement for a detector) gets one warning line. The
same bar is what the int8 remedies aim for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekit.bundle.manifest import Artifact
from edgekit.errors import UsageError

INT8_FORMATS = ("tflite-int8", "onnx-int8", "edgetpu", "imx500")
INT8_BAR = 0.99  # top-1 agreement of class scores
DETECTOR_INT8_BAR = 0.98  # mAP@0.5 against the Keras model's own detections


@dataclass(frozen=True)
class Gate:
    """``minimum`` from --quantize min_agreement or the model card (None: only the int8 warning)."""

    minimum: float | None
    origin: str  # "--quantize min_agreement" or "min_agreement in the model card"
    task: str
    remedies: bool = True  # False: --quantize remedy=off

    @property
    def int8_bar(self) -> float:
        return DETECTOR_INT8_BAR if self.task == "detection" else INT8_BAR

    def target(self, fmt: str) -> float | None:
        """The agreement the int8 remedies aim for in this format (None: no aim)."""
        if self.minimum is not None:
            return self.minimum
        return self.int8_bar if fmt in INT8_FORMATS else None


def make_gate(flag: float | None, card: dict[str, Any], task: str, measurable: bool,
              why_not: str, remedies: bool = True) -> Gate:
    """The gate for this run; UsageError when a bar is asked for but cannot be measured."""
    if flag is not None:
        minimum, origin = flag, "--quantize min_agreement"
    elif card.get("min_agreement") is not None:
        minimum, origin = card["min_agreement"], "min_agreement in the model card"
    else:
        return Gate(None, "", task, remedies)
    if not isinstance(minimum, (int, float)) or not 0 <= float(minimum) <= 1:
        raise UsageError(f"{origin} takes a share between 0 and 1 (e.g. 0.99), not {minimum!r}")
    if not measurable:
        raise UsageError(f"{origin} needs an agreement to judge, but {why_not}")
    return Gate(float(minimum), origin, task, remedies)


def judge(artifact: Artifact, gate: Gate) -> str | None:
    """Fail ``artifact`` when it is below the gate; return a warning line when an int8
    artifact is below the usual bar without a gate (None when all is well)."""
    if not artifact.ok:
        return None
    f = artifact.fidelity
    agreement = None if f is None else f.top1_agreement
    what = {"detection": "mAP-agreement", "segmentation": "pixel agreement"}.get(
        gate.task, "top-1 agreement")
    worst = f" (worst output: {f.worst})" if f is not None and f.worst else ""
    if f is not None and f.nonfinite:
        artifact.status = "failed"
        artifact.reason = (f"its outputs hold NaN or inf on {f.nonfinite} of {f.samples} "
                           "validation samples")
        return None
    if gate.minimum is not None:
        if agreement is None:
            artifact.status = "failed"
            artifact.reason = f"{what} could not be measured, so {gate.origin} cannot be met"
        elif agreement < gate.minimum:
            artifact.status = "failed"
            artifact.reason = (f"{what} {100 * agreement:.1f}%{worst} is below {gate.origin} "
                               f"{gate.minimum:g}{_tried(artifact, gate)}")
        return None
    if artifact.format in INT8_FORMATS and agreement is not None and agreement < gate.int8_bar:
        return (f"{artifact.format} reaches only {100 * agreement:.1f}% {what} with Keras"
                f"{worst} (below {100 * gate.int8_bar:g}%){_tried(artifact, gate)}: give more, "
                "representative --calib data, or --quantize min_agreement=X to refuse such "
                "artifacts")
    return None


def _tried(artifact: Artifact, gate: Gate) -> str:
    if artifact.format not in INT8_FORMATS or artifact.format == "edgetpu":
        return ""
    if not gate.remedies:
        return "; --quantize remedy=off kept the default quantisation"
    remedy = artifact.details.get("int8_remedy")
    if not remedy or len(remedy.get("attempts", [])) < 2:
        return ""
    tried = [a["remedy"] for a in remedy["attempts"][1:]]
    return f"; the remedies tried ({', '.join(tried)}) did not reach it"
