"""Bench rows as a table, CSV, Markdown, JSON, and a latency-distribution plot."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from edgekit.bench import BenchRow
from edgekit.helpers.plot import distributions
from edgekit.helpers.render import Notes, markdown_table, percent, size, table

COLUMNS = ["artifact", "backend", "device", "mode", "requests", "streams", "threads", "status",
           "load ms", "first ms", "pre ms", "p50 ms", "p90 ms", "p99 ms", "min ms", "max ms",
           "mean ms", "inf/s", "peak MB", "agreement", "accuracy", "size"]


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}" if x < 1 else f"{x:.2f}"


def _cells(row: BenchRow, notes: Notes) -> list[str]:
    status = notes.mark(row.status, row.reason and f"{row.artifact} on {row.backend}: {row.reason}")
    lat = row.latency
    return [row.artifact, row.backend, row.device or "-", row.mode,
            "-" if row.requests is None else str(row.requests), row.streams, row.threads, status,
            _ms(row.load_ms), _ms(row.first_ms), _ms(row.preprocess_ms),
            *([_ms(lat.p50), _ms(lat.p90), _ms(lat.p99), _ms(lat.min), _ms(lat.max),
               _ms(lat.mean)] if lat else ["-"] * 6),
            "-" if row.throughput is None else f"{row.throughput:.0f}",
            "-" if row.peak_memory_mb is None else f"{row.peak_memory_mb:.0f}",
            percent(row.agreement), percent(row.accuracy), size(row.size)]


def text_table(rows: Sequence[BenchRow]) -> str:
    notes = Notes()
    body = table(COLUMNS, [_cells(r, notes) for r in rows])
    throughput = any(r.mode == "throughput" for r in rows)
    footer = ("\nlatency per inference (pre-processed input, quantisation included"
              + ("; in throughput mode from its start to its completion, requests in flight "
                 "queueing for the cores" if throughput else "")
              + "); pre ms: the median time to make that input from a 640x480 frame; inf/s: "
              "inferences completed per second of wall time; peak MB is the worker process's "
              "peak RSS")
    used = next((r.input for r in rows if r.input), "")
    return body + footer + (f"\n{used}" if used else "") + notes.render()


def markdown(rows: Sequence[BenchRow]) -> str:
    notes = Notes()
    return markdown_table(COLUMNS, [_cells(r, notes) for r in rows]) + notes.render("\n\n") + "\n"


def csv_text(rows: Sequence[BenchRow]) -> str:
    out = io.StringIO()
    fields = ["artifact", "format", "backend", "device", "runtime", "mode", "requests",
              "streams", "threads", "status", "reason", "load_ms", "first_ms", "preprocess_ms",
              "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "mean_ms", "runs", "throughput",
              "peak_memory_mb", "model_memory_mb", "agreement", "accuracy", "max_abs_diff",
              "size", "input"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        lat = r.latency
        writer.writerow({
            **{k: getattr(r, k) for k in fields if hasattr(r, k)},
            **({"p50_ms": lat.p50, "p90_ms": lat.p90, "p99_ms": lat.p99, "min_ms": lat.min,
                "max_ms": lat.max, "mean_ms": lat.mean, "runs": lat.count} if lat else {}),
        })
    return out.getvalue()


def json_text(rows: Sequence[BenchRow]) -> str:
    return json.dumps([r.to_dict() for r in rows], indent=2)


def plot(rows: Sequence[BenchRow], path: Path, model: str = "") -> Path:
    """Latency distribution per row (box plot over every timed run, log scale), titled with
    the model; rows that did not run are listed under it with the reason."""
    ran = [r for r in rows if r.latencies_ms]
    name = Path(model).name if model else ""
    threads = {r.threads for r in ran}
    return distributions(
        {f"{r.artifact} on {r.backend} ({r.device or 'default'}, {r.setting()})": r.latencies_ms
         for r in ran},
        f"edgekit bench{': ' + name if name else ''} - latency per inference "
        f"(threads {', '.join(sorted(threads)) or '-'})",
        "ms per inference, pre-processed input, quantisation included "
        "(box: p25-p75, whiskers: p1-p99)", path,
        notes=[f"{r.status}: {r.artifact} on {r.backend}: {r.reason.split('; ')[0]}"
               for r in rows if not r.latencies_ms])
