"""The Backend contract: load one artifact, ``infer(inputs) -> outputs``, ``close()``.

Subclasses implement ``_invoke`` on tensors already in the artifact's own
shapes and dtypes; ``infer`` checks the inputs, quantises float data for an
integer artifact and dequantises the outputs, once, for every backend.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Union

import numpy as np

from edgekit.errors import InferenceError, InvalidModel
from edgekit.quant import dequantize, prepare_input
from edgekit.tflite_file import TensorInfo

Inputs = Union[np.ndarray, Sequence[np.ndarray]]


@dataclass
class BackendStatus:
    """Whether a backend can run here, and if not, why and how to fix it."""

    name: str
    usable: bool
    runtime: str = ""  # e.g. "ai-edge-litert 2.3.0"
    devices: list[str] = field(default_factory=list)
    reason: str = ""
    hint: str = ""


@dataclass
class _Plan:
    inputs: list[tuple[TensorInfo, tuple[int, ...], np.dtype]]
    dequantize: bool


class Backend(ABC):
    """One loaded artifact on one runtime and device. Use as a context manager."""

    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()  # file suffixes it reads
    install_hint: ClassVar[str] = ""
    default_device: ClassVar[str] = "CPU"

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    runtime: str  # "<package> <version>" of the runtime that loaded the artifact
    device: str
    threads: int | None
    precision: str = ""  # the precision the runtime computes in, where it chooses one (OpenVINO)

    def __init__(self, model: str | Path, *, device: str | None = None,
                 threads: int | None = None) -> None:
        self.model_path = Path(model)
        self.device = device or self.default_device
        self.threads = threads
        if not self.model_path.exists():
            raise InvalidModel(f"{self.model_path}: no such file")
        if self.suffixes and self.model_path.suffix.lower() not in self.suffixes:
            raise InvalidModel(
                f"{self.model_path.name}: the {self.name} backend reads "
                f"{', '.join(self.suffixes)} files, not {self.model_path.suffix or 'this file'}"
            )

    @classmethod
    def preferred_formats(cls) -> tuple[str, ...]:
        """Bundle formats this backend runs, best first (see formats.preferred_formats)."""
        from edgekit.formats import preferred_formats

        return preferred_formats(cls.name)

    @classmethod
    @abstractmethod
    def probe(cls) -> BackendStatus:
        """Say whether this backend's runtime (and device) is usable here; never raises."""

    @abstractmethod
    def _invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the artifact on inputs in its own dtypes; return its raw outputs."""

    def infer(self, inputs: Inputs) -> list[np.ndarray]:
        """Run one inference. Float inputs in the pre-processed space; float32 outputs."""
        arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        plan = self._plan or self._make_plan()
        if len(arrays) != len(plan.inputs):
            raise InferenceError(
                f"{self.model_path.name} takes {len(self.inputs)} input(s), got {len(arrays)}"
            )
        ready = [
            a if (a.__class__ is np.ndarray and a.shape == shape and a.dtype == dtype
                  and a.flags.c_contiguous) else prepare_input(a, spec, i)
            for i, (a, (spec, shape, dtype)) in enumerate(zip(arrays, plan.inputs))
        ]
        raw = self._invoke(ready)
        if not plan.dequantize:  # float outputs: nothing to do (the hot path for small models)
            return raw
        return [dequantize(r, spec) for r, spec in zip(raw, self.outputs)]

    _plan: _Plan | None = None

    def _make_plan(self) -> _Plan:
        """What infer checks per call, worked out once (shapes, numpy dtypes, quantisation)."""
        self._plan = _Plan(
            inputs=[(t, tuple(t.shape), np.dtype(t.dtype)) for t in self.inputs],
            dequantize=any(t.quantization is not None or t.dtype != "float32"
                           for t in self.outputs),
        )
        return self._plan

    def close(self) -> None:
        """Release the runtime's resources. Safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        threads = "default" if self.threads is None else str(self.threads)
        precision = f", precision {self.precision}" if self.precision else ""
        return f"{self.name} ({self.runtime}, device {self.device}, threads {threads}{precision})"
