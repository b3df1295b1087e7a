"""What every converter receives: the loaded model, its exported SavedModel, the data."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.bundle.fidelity import Task, Validation
from edgekit.convert.remedy import RemedyPlan
from edgekit.preprocess import InputSpec


@dataclass
class Job:
    """One conversion: shared by the converters of every format."""

    model: Any  # the keras.Model
    name: str  # file stem of every artifact
    spec: InputSpec
    saved_model: Path
    workdir: Path  # the bundle being built (a temporary folder until the end)
    calibration: np.ndarray | None = None
    int8_io: str = "int8"  # or "uint8"
    built: dict[str, Path] = field(default_factory=dict)  # format -> artifact path
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # format -> its details
    remedy: RemedyPlan | None = None  # int8 quantisers judge their candidates with this
    remedies: bool = True  # False: --quantize remedy=off (a quantiser keeps its default)
    progress: Callable[[str], None] = lambda _: None
    output: Path = Path()  # where the bundle goes when it is complete (for messages)
    # For a format no backend here runs (imx500): the validation set and how it is scored,
    # and the outputs its converter simulated on it (format -> outputs, in Keras order).
    validation: Validation | None = None
    scoring: Task | None = None
    simulated: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def artifact_path(self, suffix: str) -> Path:
        return self.workdir / (self.name + suffix)
