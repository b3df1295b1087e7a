"""One bench pair in its own process: ``python -m edgekit.bench.worker JOB_JSON``.

Prints one JSON line: load and first-inference times, every timed latency in
nanoseconds, inferences per second, peak memory, and fidelity on the bundle's
validation set.

Latency mode times one inference at a time. Throughput mode keeps the backend's
``requests`` in flight (``Backend.start``), starting a new one as soon as the oldest is
collected, and times each from its start to the moment the runtime finished it;
inferences per second are those completed over the wall time from the first start to
the last completion (as OpenVINO's benchmark_app counts them).
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import DeviceNotFound, EdgekitError, UsageError
from edgekit.helpers.quiet import captured_stderr
from edgekit.preprocess import SpecOptions


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    """This process's peak RSS. Linux keeps ru_maxrss across execve (a worker started from a
    big parent would report the parent's peak), so VmHWM, which is per address space, first."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sample(model: Any, bundle: Path | None) -> np.ndarray:
    from edgekit.bundle.fidelity import load_validation

    validation = load_validation(bundle) if bundle else None
    if validation is not None:
        return validation.x[:1].astype(np.float32)
    shape = model.spec.shape
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def _preprocess_ms(model: Any, frame_size: Sequence[int], runs: int = 30) -> float:
    """Median milliseconds to turn one camera-sized BGR frame into the model's input with its
    spec (resize mode, filter, colour, normalisation): what a camera loop pays per frame."""
    width, height = frame_size
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        model.tensor(frame)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e6


def run(job: dict[str, Any]) -> dict[str, Any]:
    from edgekit.backends import Concurrency, backend_class
    from edgekit.model import load_model

    backend_class(job["backend"]).probe()  # imports the runtime before the baseline
    baseline = _rss_mb()
    start = time.perf_counter_ns()
    spec = SpecOptions(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in (job.get("spec") or {}).items()})
    model = load_model(job["bundle"] or job["artifact"], backend=job["backend"],
                       device=job["device"], threads=job["threads"],
                       fmt=job["format"] if job["bundle"] else None, spec=spec,
                       concurrency=Concurrency(job["mode"], job["requests"], job["streams"]))
    load_ns = time.perf_counter_ns() - start
    x = _sample(model, Path(job["bundle"]) if job["bundle"] else None)
    start = time.perf_counter_ns()
    model.predict(x)
    first_ns = time.perf_counter_ns() - start
    timed = _one_at_a_time if job["mode"] == "latency" else _in_flight
    latencies, wall_ns = timed(model, x, job)
    backend = model.backend
    result = {"status": "ok", "device": backend.device or "default",
              "runtime": backend.runtime, "load_ms": load_ns / 1e6,
              "first_ms": first_ns / 1e6, "latencies_ns": latencies,
              "throughput": len(latencies) / (wall_ns / 1e9) if wall_ns else None,
              "requests": backend.requests, "streams": backend.streams,
              "threads_per_request": backend.threads_per_request,
              "peak_memory_mb": _peak_mb(), "model_memory_mb": max(0.0, _peak_mb() - baseline)}
    # after the memory figures: OpenCV's own memory is not the model's
    result["preprocess_ms"] = _preprocess_ms(model, job.get("frame") or (640, 480))
    result["input"] = model.spec.describe()
    if job["fidelity"] and job["bundle"]:
        result.update(_fidelity(model, Path(job["bundle"])))
    model.close()
    return result


def _more(done: int, job: dict[str, Any], deadline: float | None) -> bool:
    return done < job["runs"] if deadline is None else time.perf_counter() < deadline


def _one_at_a_time(model: Any, x: np.ndarray, job: dict[str, Any]) -> tuple[list[int], int]:
    """Latency mode: each inference timed on its own; the wall time is their sum."""
    for _ in range(job["warmup"]):
        model.predict(x)
    latencies: list[int] = []
    deadline = time.perf_counter() + job["duration"] if job["duration"] else None
    while _more(len(latencies), job, deadline):
        start = time.perf_counter_ns()
        model.predict(x)
        latencies.append(time.perf_counter_ns() - start)
    return latencies, sum(latencies)


def _in_flight(model: Any, x: np.ndarray, job: dict[str, Any]) -> tuple[list[int], int]:
    """Throughput mode: ``requests`` inferences in flight until ``runs`` have started (or the
    duration is over); each timed from its start to its completion by the runtime."""
    backend = model.backend
    depth = backend.requests
    for _ in range(max(1, job["warmup"] // depth)):  # every request warmed up
        for pending in [backend.start(x) for _ in range(depth)]:
            pending.result()
    inflight: deque = deque()
    latencies: list[int] = []
    started = 0
    deadline = time.perf_counter() + job["duration"] if job["duration"] else None
    first_ns = time.perf_counter_ns()
    last_ns = first_ns
    while True:
        if len(inflight) < depth and _more(started, job, deadline):
            inflight.append(backend.start(x))
            started += 1
            continue
        if not inflight:
            break
        pending = inflight.popleft()
        pending.result()
        latencies.append(pending.done_ns - pending.started_ns)
        last_ns = max(last_ns, pending.done_ns)
    return latencies, last_ns - first_ns


def _fidelity(model: Any, bundle: Path) -> dict[str, Any]:
    from edgekit.bundle.fidelity import compare, load_validation, predict, task_of

    validation = load_validation(bundle)
    if validation is None:
        return {}
    produced = predict(model.backend, validation.x, model.output_order)
    f = compare(validation.reference, produced, validation, task_of(model.manifest), "")
    return {"agreement": f.top1_agreement, "accuracy": f.accuracy,
            "max_abs_diff": f.max_abs_diff}


def _end_with_parent(parent: int | None) -> None:
    """Die with the bench process that started this worker, even when that one is SIGKILLed
    and cannot end its children (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0:  # PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it was gone before the line above
        os._exit(1)


def main() -> None:
    job = json.loads(sys.argv[1])
    _end_with_parent(job.get("parent"))
    try:
        with captured_stderr():
            result = run(job)
    except DeviceNotFound as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except UsageError as exc:  # the row is read on the command line: flags, not parameters
        result = {"status": "failed", "reason": exc.naming()}
    except EdgekitError as exc:
        result = {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # one pair's surprise must still come back as a row
        result = {"status": "failed", "reason": f"unexpected {type(exc).__name__}: {exc}"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
