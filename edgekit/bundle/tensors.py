"""A model's inputs and outputs as every backend describes them: name, shape, dtype and
quantisation. Plain records, free of any runtime: the TFLite reader, the backends, the
quantiser and the manifest all speak them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Quantization:
    """Affine quantisation: real = scale * (q - zero_point), per tensor or per channel."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name
    quantization: Quantization | None = None
    dynamic_dims: tuple[int, ...] = ()  # indices whose size is unknown (-1 in the model)

    def to_dict(self) -> dict[str, Any]:
        """As the manifest and ``--json`` record it."""
        q = self.quantization
        return {
            "name": self.name, "shape": list(self.shape), "dtype": self.dtype,
            "quantization": None if q is None else {
                "scale": list(q.scale), "zero_point": list(q.zero_point), "axis": q.axis},
        }
