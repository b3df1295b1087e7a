"""``edgekit bench``: every (artifact, backend) pair side by side, honestly labelled.

Each pair runs in its own worker process (``edgekit.bench.worker``): a runtime
that crashes or hangs costs one row, not the run; peak memory is that pair's
own; and no two runtimes share a process. Rows that cannot run say why.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.backends import (
    Concurrency,
    backend_class,
    backend_names,
    backend_status,
    check_concurrency,
    parse_backends,
)
from edgekit.bundle.formats import FORMATS, why_not
from edgekit.bundle.manifest import is_bundle, read_manifest
from edgekit.errors import BackendUnavailable, UsageError
from edgekit.helpers.limits import MAX_BENCH_SECONDS, MAX_RUNS, checked, finite, parallel, whole
from edgekit.helpers.records import keyword_only
from edgekit.helpers.stats import Latency
from edgekit.helpers.subproc import run_json
from edgekit.model import BARE_SUFFIXES, file_format
from edgekit.preprocess import SpecOptions

WORKER_TIMEOUT_S = 900


@keyword_only
@dataclass
class BenchSettings:
    runs: int = 100  # timed inferences (in throughput mode: completed ones)
    warmup: int = 10
    duration: float | None = None  # seconds; overrides runs when given
    threads: int | None = None
    device: str | None = None  # for every backend (None: each backend's default)
    fidelity: bool = True
    spec: SpecOptions | None = None  # the input spec asked for on top of the model's own
    frame: tuple[int, int] = (640, 480)  # the frame whose pre-processing is timed (w, h)
    mode: str = "latency"  # latency: one at a time; throughput: ``requests`` in flight
    requests: int | None = None  # None: 1 in latency mode, the runtime's choice in throughput
    streams: int | None = None  # OpenVINO's execution streams (None: its choice)

    def concurrency(self) -> Concurrency:
        """The settings' mode, requests and streams (UsageError for a bad one)."""
        return Concurrency(self.mode, self.requests, self.streams)


@dataclass
class BenchRow:
    """One (artifact, backend) pair: its status and, when it ran, its numbers."""

    artifact: str  # file name
    format: str
    backend: str
    status: str  # ok, skipped, failed
    reason: str = ""
    device: str = ""
    runtime: str = ""
    threads: str = "default"  # the runtime's threads; "N per request" where requests share
    mode: str = "latency"
    requests: int | None = None  # inferences in flight (None: the row did not run)
    streams: str = "-"  # OpenVINO's execution streams; "-" for a runtime without them
    load_ms: float | None = None
    first_ms: float | None = None
    preprocess_ms: float | None = None  # median time to make the input from one frame
    input: str = ""  # the input spec used, with where each value came from
    latency: Latency | None = None
    throughput: float | None = None  # inferences per second: completed / wall time
    peak_memory_mb: float | None = None  # the worker process's peak RSS
    model_memory_mb: float | None = None  # peak RSS growth from loading and running
    agreement: float | None = None
    accuracy: float | None = None
    max_abs_diff: float | None = None
    size: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def setting(self) -> str:
        """"latency, 1 request" or "throughput, 4 requests, 2 streams"."""
        requests = "-" if self.requests is None else str(self.requests)
        text = f"{self.mode}, {requests} request{'' if self.requests == 1 else 's'}"
        return text + (f", {self.streams} streams" if self.streams != "-" else "")

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = self.latency.to_dict() if self.latency else None
        if not samples:
            data.pop("latencies_ms")
        return data


@dataclass
class Pair:
    """One row to bench: an artifact on a backend, or why it will not run."""

    path: Path
    format: str
    backend: str
    skip: str = ""  # set when it will not run: not built, or the backend is not usable here


def plan(target: Path, backends: Sequence[str] | None,
         concurrency: Concurrency | None = None) -> list[Pair]:
    """Every row to bench for a bundle or a bare model file, in the format table's order: each
    artifact on every chosen backend that runs its format (``runs_on``). ``backends``: names,
    each optionally ``name:format`` for one artifact (None: every registered backend). A
    format the bundle did not build gets skipped rows with convert's reason. ``--streams`` on
    a backend named in ``backends`` that has no streams is a UsageError; with every backend,
    those rows are skipped with the reason."""
    chosen = parse_backends(",".join(backends) if backends else None)
    if target.is_dir():
        manifest = read_manifest(target)
        artifacts = [(target / (a.file or FORMATS[a.format].filename(manifest.name)), a.format,
                      "" if a.ok else f"not in the bundle ({a.status} at convert: {a.reason})")
                     for a in manifest.artifacts if a.format in FORMATS]
    elif target.suffix.lower() in BARE_SUFFIXES and target.exists():
        artifacts = [(target, file_format(target).key, "")]  # InvalidModel for a damaged file
    elif not target.exists():
        raise UsageError(f"{target}: no such bundle or model file")
    else:
        raise UsageError(f"{target.name}: bench takes a bundle or a .tflite/.onnx/.xml file")
    have = [key for _, key, _ in artifacts]
    for fmt in {fmt for _, fmt in chosen if fmt is not None}:
        if fmt not in have:
            raise UsageError(f"{target} has no {fmt} artifact (it has: {', '.join(have)}); "
                             f"see edgekit inspect {target}")
    pairs, broken = [], {}
    for path, key, missing in artifacts:
        if FORMATS[key].elsewhere and not backends:  # imx500: listed, never run here
            pairs.append(Pair(path, key, "sensor", skip=missing or FORMATS[key].elsewhere))
        for name, fmt in chosen:
            if fmt not in (None, key) or name in broken:
                continue
            try:
                cls = backend_class(name)
            except BackendUnavailable as exc:
                broken[name] = Pair(Path("-"), "-", name, skip=str(exc))
                continue
            skip = missing
            try:
                check_concurrency(cls, concurrency)
            except UsageError as exc:
                if backends:
                    raise
                skip = skip or exc.naming().removeprefix("streams: ")
            if cls.runs(key):
                pairs.append(Pair(path, key, name, skip))
            elif fmt is not None:
                pairs.append(Pair(path, key, name, why_not(name, key, cls.runtime_version())))
    return pairs + list(broken.values())


def _run_worker(pair: Pair, bundle: Path | None, settings: BenchSettings) -> dict[str, Any]:
    job = {"artifact": str(pair.path), "backend": pair.backend, "format": pair.format,
           "bundle": str(bundle) if bundle else None, "parent": os.getpid(), **asdict(settings)}
    answer = run_json([sys.executable, "-m", "edgekit.bench.worker", json.dumps(job)],
                      WORKER_TIMEOUT_S + (settings.duration or 0))
    if not isinstance(answer.value, dict):
        why = answer.why()  # "crashed (signal 11, SIGSEGV)" for a worker that died of one
        return {"status": "failed", "reason": f"the bench worker {why}" if answer.died_of
                else f"the bench worker gave no result ({why})"}
    return answer.value


def _row(pair: Pair, outcome: dict[str, Any], settings: BenchSettings) -> BenchRow:
    extra = FORMATS[pair.format].extra_files if pair.format in FORMATS else ()
    row = BenchRow(artifact=pair.path.name, format=pair.format, backend=pair.backend,
                   status=outcome.get("status", "failed"), reason=outcome.get("reason", ""),
                   threads="default" if settings.threads is None else str(settings.threads),
                   mode=settings.mode,
                   size=sum(p.stat().st_size for p in [pair.path, *map(pair.path.with_suffix,
                                                                      extra)] if p.is_file()))
    if row.status != "ok":
        row.device = outcome.get("device", settings.device or "")
        return row
    samples_ns = outcome["latencies_ns"]
    row.latency = Latency.from_ns(samples_ns)
    row.latencies_ms = [ns / 1e6 for ns in samples_ns]
    row.throughput = outcome.get("throughput")
    row.requests = outcome.get("requests", 1)
    row.streams = str(outcome["streams"]) if outcome.get("streams") else "-"
    per_request = outcome.get("threads_per_request")
    if row.requests > 1 and per_request is not None and str(per_request) != row.threads:
        row.threads = f"{per_request} per request"
    for key in ("device", "runtime", "load_ms", "first_ms", "preprocess_ms", "input",
                "peak_memory_mb", "model_memory_mb", "agreement", "accuracy", "max_abs_diff"):
        setattr(row, key, outcome.get(key))
    return row


def check_settings(settings: BenchSettings) -> None:
    """UsageError for settings out of range, each bound in the message: the runs and warm-up
    (every latency is kept and sent back), the duration (a row's worker has a deadline), the
    threads, requests and streams (what this machine's cores can use)."""
    why = "every latency is kept and reported"
    whole(settings.runs, "runs", high=MAX_RUNS, why=why)
    whole(settings.warmup, "warmup", low=0, high=MAX_RUNS, why=why)
    if settings.duration is not None:
        finite(settings.duration, "duration (seconds per row)", low=0, low_open=True,
               high=MAX_BENCH_SECONDS)
    parallel(settings.threads, "threads")
    settings.concurrency()


@checked
def bench(target: str | Path, backends: Sequence[str] | None = None,
          settings: BenchSettings | None = None,
          progress: Callable[[str], None] = lambda _: None) -> list[BenchRow]:
    """Bench every planned pair, each in its own worker process; a pair that cannot run here
    (not built, a backend not usable) becomes a skipped row with the reason and the fix."""
    target = Path(target)
    settings = settings or BenchSettings()
    check_settings(settings)
    pairs = plan(target, backends, settings.concurrency())
    if not pairs:
        raise UsageError(f"none of the backends ({', '.join(backends or backend_names())}) runs "
                         f"an artifact of {target}; see edgekit backends")
    bundle = target if target.is_dir() and is_bundle(target) else None
    statuses = {name: backend_status(name) for name in {p.backend for p in pairs if not p.skip}}
    for pair in pairs:
        status = statuses.get(pair.backend)
        if not pair.skip and status is not None and not status.usable:
            pair.skip = status.reason + (f"; {status.hint}" if status.hint else "")
    rows = []
    for i, pair in enumerate(pairs, 1):
        label = f"[{i}/{len(pairs)}] {pair.path.name} on {pair.backend}"
        if pair.skip:
            progress(f"{label}: skipped ({pair.skip.split('; ')[0]})")
            rows.append(_row(pair, {"status": "skipped", "reason": pair.skip}, settings))
            continue
        progress(f"{label}: running")
        rows.append(_row(pair, _run_worker(pair, bundle, settings), settings))
    return rows
