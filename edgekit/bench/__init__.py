"""``edgekit bench``: every (artifact, backend) pair side by side, honestly labelled.

Each pair runs in its own worker process (``edgekit.bench.worker``): a runtime
that crashes or hangs costs one row, not the run; peak memory is that pair's
own; and no two runtimes share a process. Rows that cannot run say why.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.backends import backend_class, backend_names
from edgekit.errors import UsageError
from edgekit.formats import FORMATS, Format, format_of_file
from edgekit.manifest import is_bundle, read_manifest
from edgekit.model import BARE_SUFFIXES, default_backend
from edgekit.preprocess import SpecOptions
from edgekit.stats import Latency
from edgekit.tflite_file import read_tflite

MODE = "sync, 1 request"
WORKER_TIMEOUT_S = 900


@dataclass
class BenchSettings:
    runs: int = 100
    warmup: int = 10
    duration: float | None = None  # seconds; overrides runs when given
    threads: int | None = None
    fidelity: bool = True
    spec: SpecOptions | None = None  # the input spec asked for on top of the model's own
    frame: tuple[int, int] = (640, 480)  # the frame whose pre-processing is timed (w, h)


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
    threads: str = "default"
    mode: str = MODE
    load_ms: float | None = None
    first_ms: float | None = None
    preprocess_ms: float | None = None  # median time to make the input from one frame
    input: str = ""  # the input spec used, with where each value came from
    latency: Latency | None = None
    throughput: float | None = None  # inferences per second, from the mean latency
    peak_memory_mb: float | None = None  # the worker process's peak RSS
    model_memory_mb: float | None = None  # peak RSS growth from loading and running
    agreement: float | None = None
    accuracy: float | None = None
    max_abs_diff: float | None = None
    size: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = self.latency.to_dict() if self.latency else None
        if not samples:
            data.pop("latencies_ms")
        return data


@dataclass
class Pair:
    path: Path
    format: str
    backend: str


def plan(target: Path, backends: Sequence[str] | None) -> list[Pair]:
    """Every (artifact, backend) pair to bench for a bundle or a bare model file."""
    names = list(backends) if backends else backend_names()
    unknown = [n for n in names if n not in backend_names()]
    if unknown:
        raise UsageError(f"unknown backend {', '.join(map(repr, unknown))}; choose from: "
                         f"{', '.join(backend_names())}")
    if target.is_dir():
        manifest = read_manifest(target)
        artifacts = [(target / a.file, a.format) for a in manifest.artifacts if a.ok]
    elif target.suffix.lower() in BARE_SUFFIXES and target.exists():
        default_backend(target)  # raises InvalidModel for damaged files early
        found = format_of_file(target.name)
        artifacts = [(target, found.key if found else target.suffix.lstrip("."))]
    elif not target.exists():
        raise UsageError(f"{target}: no such bundle or model file")
    else:
        raise UsageError(f"{target.name}: bench takes a bundle or a .tflite/.onnx/.xml file")
    return [Pair(path, key, name) for path, key in artifacts for name in names
            if _runs(name, path, FORMATS.get(key))]


def _runs(backend: str, path: Path, fmt: Format | None) -> bool:
    """Whether ``backend`` can run this artifact (a bundle format, or a bare file)."""
    if fmt is not None:
        return backend in fmt.backends
    if path.suffix.lower() not in backend_class(backend).suffixes:
        return False
    if path.suffix.lower() == ".tflite":  # a compiled model runs on the Edge TPU only
        return read_tflite(path).edgetpu_compiled == (backend == "edgetpu")
    return True


def _run_worker(pair: Pair, bundle: Path | None, settings: BenchSettings) -> dict[str, Any]:
    job = {"artifact": str(pair.path), "backend": pair.backend, "format": pair.format,
           "bundle": str(bundle) if bundle else None, **asdict(settings)}
    try:
        result = subprocess.run([sys.executable, "-m", "edgekit.bench.worker", json.dumps(job)],
                                capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
                                check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"no result in {WORKER_TIMEOUT_S} s (hung?)"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        how = f"signal {-result.returncode}" if result.returncode < 0 else \
            f"exit {result.returncode}"
        return {"status": "failed", "reason": f"the worker died ({how}): {tail}"}
    return json.loads(lines[-1])


def _row(pair: Pair, outcome: dict[str, Any], threads: int | None) -> BenchRow:
    extra = FORMATS[pair.format].extra_files if pair.format in FORMATS else ()
    row = BenchRow(artifact=pair.path.name, format=pair.format, backend=pair.backend,
                   status=outcome.get("status", "failed"), reason=outcome.get("reason", ""),
                   threads="default" if threads is None else str(threads),
                   size=sum(p.stat().st_size for p in [pair.path, *map(pair.path.with_suffix,
                                                                      extra)] if p.is_file()))
    if row.status != "ok":
        row.device = outcome.get("device", "")
        return row
    samples_ns = outcome["latencies_ns"]
    row.latency = Latency.from_ns(samples_ns)
    row.latencies_ms = [ns / 1e6 for ns in samples_ns]
    row.throughput = 1000.0 / row.latency.mean if row.latency.mean else None
    for key in ("device", "runtime", "load_ms", "first_ms", "preprocess_ms", "input",
                "peak_memory_mb",
                "model_memory_mb", "agreement", "accuracy", "max_abs_diff"):
        setattr(row, key, outcome.get(key))
    return row


def _missing_artifacts(bundle: Path, backends: Sequence[str] | None) -> list[BenchRow]:
    """Rows for the bundle's formats that were not built, with the reason convert gave."""
    manifest = read_manifest(bundle)
    rows = []
    for a in manifest.artifacts:
        fmt = FORMATS.get(a.format)
        if a.ok or fmt is None:
            continue
        for name in fmt.backends:
            if backends is None or name in backends:
                rows.append(BenchRow(artifact=fmt.filename(manifest.name), format=a.format,
                                     backend=name, status="skipped",
                                     reason=f"not in the bundle ({a.status} at convert: "
                                            f"{a.reason})"))
    return rows


def bench(target: str | Path, backends: Sequence[str] | None = None,
          settings: BenchSettings | None = None,
          progress: Callable[[str], None] = lambda _: None) -> list[BenchRow]:
    """Bench every runnable pair; unusable backends become skipped rows with the reason."""
    target = Path(target)
    settings = settings or BenchSettings()
    if settings.runs < 1 or settings.warmup < 0 or \
            (settings.duration is not None and settings.duration <= 0) or \
            (settings.threads is not None and settings.threads < 1):
        raise UsageError("--runs must be >= 1, --warmup >= 0, --duration > 0 and --threads >= 1")
    pairs = plan(target, backends)
    bundle = target if target.is_dir() and is_bundle(target) else None
    statuses = {name: backend_class(name).probe() for name in {p.backend for p in pairs}}
    rows = _missing_artifacts(bundle, backends) if bundle else []
    if not pairs and not rows:
        raise UsageError(f"none of the backends ({', '.join(backends or backend_names())}) runs "
                         f"an artifact of {target}; see edgekit backends")
    for i, pair in enumerate(pairs, 1):
        status = statuses[pair.backend]
        label = f"[{i}/{len(pairs)}] {pair.path.name} on {pair.backend}"
        if not status.usable:
            progress(f"{label}: skipped ({status.reason})")
            reason = status.reason + (f"; {status.hint}" if status.hint else "")
            rows.append(_row(pair, {"status": "skipped", "reason": reason}, settings.threads))
            continue
        progress(f"{label}: running")
        rows.append(_row(pair, _run_worker(pair, bundle, settings), settings.threads))
    return rows
