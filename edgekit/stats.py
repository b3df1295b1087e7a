"""Latency statistics from perf_counter_ns samples: medians and percentiles, never one time."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Milliseconds."""

    count: int
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def from_ns(cls, samples: Sequence[int]) -> Latency:
        if not len(samples):
            return cls(0, *([float("nan")] * 6))
        ms = np.asarray(samples, np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(len(ms), float(ms.min()), float(p50), float(p90), float(p99),
                   float(ms.max()), float(ms.mean()))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
