"""Accuracy-aware int8: when a quantised artifact misses the agreement bar, try remedies.

A quantiser is given candidates in order: its default quantisation first, then
better calibration (per-tensor or per-channel weights, entropy or percentile
ranges), then keeping the few most sensitive layers in float. Each candidate is
built, run on the validation set and judged by its agreement with Keras; the
first that reaches the bar is kept. When none does, the one that agrees most
is kept if it gains at least a point over the default (else the default: a
dozen float layers for a tenth of a point is no remedy). Every attempt is
recorded: its agreement, size, latency and the time it took.

The sensitivity of a tensor is measured the same way for every quantiser: the
error int8 puts on each of its channels, relative to that channel's own signal
(``channel_error``). A per-tensor int8 scale set by one loud channel flattens
the quiet ones; that is the damage the mean over channels shows.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError, first_line
from edgekit.helpers import interrupt

MAX_FLOAT_TENSORS = 4  # keep at most this many tensors' layers in float before giving up
MIN_GAIN = 0.01  # below the bar, a remedy must gain this much agreement to replace the default


@dataclass
class Measured:
    """What the judge found for one candidate file."""

    agreement: float | None
    latency_ms: float | None  # median per inference over the validation set, on this machine


@dataclass
class RemedyPlan:
    """The bar an int8 artifact must reach, and how to measure a candidate against it."""

    target: float
    judge: Callable[[Path, str], Measured]  # (candidate file, its format) -> what it measured
    enabled: bool = True  # False: --quantize remedy=off (the default quantisation is kept as it is)


@dataclass
class Candidate:
    """One way to quantise: ``build(path)`` writes the model and returns the layers kept float."""

    remedy: str
    build: Callable[[Path], list[str]]


@dataclass
class Attempt:
    remedy: str
    agreement: float | None
    size: int
    latency_ms: float | None
    seconds: float  # building and judging it
    judge_seconds: float = 0.0  # of which judging it
    float_layers: list[str] = field(default_factory=list)
    error: str = ""  # a remedy that could not be built


def search(out: Path, fmt: str, candidates: Iterable[Candidate], plan: RemedyPlan | None,
           progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Build the first candidate at ``out``; if it misses the bar, try the others.

    Returns the manifest details ({} when nothing was judged): the bar, the
    remedy kept, the layers it keeps float, and every attempt.
    """
    candidates = iter(candidates)
    first = next(candidates)
    if plan is None or not plan.enabled:
        first.build(out)
        return {}
    with tempfile.TemporaryDirectory(prefix="edgekit-remedy-", dir=out.parent) as tmp:
        attempts: list[tuple[Attempt, Path]] = []
        for i, candidate in enumerate(_chain(first, candidates)):
            path = Path(tmp) / f"{i}{out.suffix}"
            try:
                attempt = _attempt(candidate, path, fmt, plan)
            except EdgekitError as exc:
                interrupt.check()  # a runtime that turned Ctrl-C into its own error
                if not i:
                    raise  # the default quantisation failing is the artifact failing
                attempts.append((Attempt(candidate.remedy, None, 0, None, 0.0,
                                         error=first_line(exc, 200)), path))
                continue
            attempts.append((attempt, path))
            if i:
                progress(f"int8 remedy {candidate.remedy}: agreement "
                         f"{_percent(attempt.agreement)}")
            if _passes(attempt, plan.target):
                break
        kept, path = _best(attempts, plan.target)
        shutil.move(str(path), out)
    default = attempts[0][0]
    return {"target": plan.target, "remedy": kept.remedy, "float_layers": kept.float_layers,
            "passed": _passes(kept, plan.target),
            "agreement_before": default.agreement, "agreement_after": kept.agreement,
            # what the remedies cost: judging the default, then every further attempt
            "remedy_seconds": round(default.judge_seconds + sum(a.seconds
                                                                for a, _ in attempts[1:]), 3),
            "attempts": [asdict(a) for a, _ in attempts]}


def _chain(first: Candidate, rest: Iterator[Candidate]) -> Iterator[Candidate]:
    yield first
    yield from rest


def _attempt(candidate: Candidate, path: Path, fmt: str, plan: RemedyPlan) -> Attempt:
    start = time.perf_counter()
    float_layers = candidate.build(path)
    built = time.perf_counter()
    measured = plan.judge(path, fmt)
    end = time.perf_counter()
    return Attempt(candidate.remedy, measured.agreement, path.stat().st_size,
                   measured.latency_ms, round(end - start, 3), round(end - built, 3),
                   float_layers)


def _passes(attempt: Attempt, target: float) -> bool:
    return attempt.agreement is not None and attempt.agreement >= target


def _best(attempts: list[tuple[Attempt, Path]], target: float) -> tuple[Attempt, Path]:
    """The first that passes; else the one that agrees most (the earliest of equals) when it
    gains MIN_GAIN over the default; else the default."""
    built = [(a, p) for a, p in attempts if not a.error]
    for attempt, path in built:
        if _passes(attempt, target):
            return attempt, path
    best = max(built, key=lambda item: -1.0 if item[0].agreement is None
               else item[0].agreement)
    default = attempts[0]
    if default[0].agreement is None or best[0].agreement is None:
        return default
    return best if best[0].agreement >= default[0].agreement + MIN_GAIN else default


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def channel_error(reference: np.ndarray, quantised: np.ndarray, axis: int = -1) -> float:
    """Mean over channels of the rms int8 error relative to the channel's rms signal.

    ``reference`` is the float tensor, ``quantised`` the same tensor after int8
    (dequantised), both (..., channels) along ``axis``. Dead channels count 0.
    """
    ref = np.moveaxis(np.asarray(reference, np.float64), axis, -1)
    got = np.moveaxis(np.asarray(quantised, np.float64), axis, -1)
    ref, got = ref.reshape(-1, ref.shape[-1]), got.reshape(-1, got.shape[-1])
    signal = np.sqrt((ref ** 2).mean(axis=0))
    error = np.sqrt(((got - ref) ** 2).mean(axis=0))
    return float(np.where(signal > 0, error / np.where(signal > 0, signal, 1), 0.0).mean())


# Ops that pass their input's values (and so its int8 scale) on unchanged or clipped: a tensor
# stays float only if the whole run of them around it does (ONNX and TFLite spellings).
PASS_THROUGH = frozenset({
    "Relu", "Clip", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "MaxPool",
    "Identity", "RELU", "RELU6", "RESHAPE", "SQUEEZE", "TRANSPOSE", "MAX_POOL_2D",
})


@dataclass(frozen=True)
class GraphNode:
    """A node of the float graph: its id (what the quantiser's exclusion list takes), op type,
    and the names of the tensors it reads and writes."""

    id: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def keep_float(nodes: Sequence[GraphNode], tensors: Sequence[str]) -> list[str]:
    """The nodes to keep in float so that each of ``tensors`` stays float.

    A tensor shares its int8 scale with the tensors that pass-through ops (ReLU,
    reshape, transpose, max pooling) make of it; that whole run stays float when
    its producer and every consumer do.
    """
    chosen: list[str] = []
    for tensor in tensors:
        region, todo = {tensor}, [tensor]
        while todo:
            current = todo.pop()
            for node in nodes:
                touches = current in node.outputs or current in node.inputs
                if touches and node.op in PASS_THROUGH:
                    for t in node.inputs[:1] + node.outputs:
                        if t not in region:
                            region.add(t)
                            todo.append(t)
        for node in nodes:
            if region & set(node.inputs + node.outputs) and node.id not in chosen:
                chosen.append(node.id)
    return chosen


def float_layer_candidates(ranked: Sequence[str], nodes: Sequence[GraphNode],
                           build: Callable[[Path, list[str]], None]) -> Iterator[Candidate]:
    """Candidates keeping the 1, 2, ... most sensitive tensors float (their layers listed)."""
    seen: list[str] = []
    for k in range(1, min(MAX_FLOAT_TENSORS, len(ranked)) + 1):
        layers = keep_float(nodes, ranked[:k])
        if layers == seen:
            continue
        seen = layers

        def make(path: Path, layers: list[str] = layers) -> list[str]:
            build(path, layers)
            return layers

        yield Candidate(f"{len(layers)} layer(s) kept float", make)
