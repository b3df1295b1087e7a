"""Latency statistics from perf_counter_ns samples: medians and percentiles, never one time."""
from __future__ import annotations

import random
from collections import deque
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

    @classmethod
    def from_samples(cls, samples: Samples) -> Latency:
        """Exact count, min, max and mean; percentiles of the samples kept."""
        if not samples.count:
            return cls.from_ns(())
        kept = cls.from_ns(samples.values())
        return cls(samples.count, samples.min / 1e6, kept.p50, kept.p90, kept.p99,
                   samples.max / 1e6, samples.total / samples.count / 1e6)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class Samples:
    """Nanosecond samples of a loop that may run for days, in bounded memory.

    Count, min, max and mean are exact; the last ``recent`` samples are kept for a live
    display; percentiles come from a uniform random sample of at most ``capacity`` (reservoir
    sampling), which is every sample until there are more than ``capacity``.
    """

    def __init__(self, capacity: int = 20_000, recent: int = 30, seed: int = 0) -> None:
        self.capacity = capacity
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0
        self._kept = np.empty(min(capacity, 1024), np.int64)
        self._recent: deque[int] = deque(maxlen=recent)
        self._random = random.Random(seed)

    def add(self, ns: int) -> None:
        if self.count == 0 or ns < self.min:
            self.min = ns
        if ns > self.max:
            self.max = ns
        self.total += ns
        self._recent.append(ns)
        slot = self.count if self.count < self.capacity else self._random.randrange(self.count + 1)
        self.count += 1
        if slot < self.capacity:
            if slot >= len(self._kept):
                grown = np.empty(min(self.capacity, 2 * len(self._kept)), np.int64)
                grown[:len(self._kept)] = self._kept
                self._kept = grown
            self._kept[slot] = ns

    def values(self) -> np.ndarray:
        """The samples kept (all of them up to ``capacity``), in no particular order."""
        return self._kept[:min(self.count, self.capacity)].copy()

    def recent(self) -> list[int]:
        return list(self._recent)

    def __len__(self) -> int:
        return self.count
