"""The compare table: one row per backend, per-stage and end-to-end latency, FPS, mAP."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edgekit.loop.run import CompareRow
from edgekit.render import Notes, markdown_table, table

HEADERS = ["backend", "artifact", "status", "pre p50/p90", "infer p50/p90", "post p50/p90",
           "sink p50/p90", "e2e p50/p90 ms", "FPS", "frames", "mAP@0.5"]


def _pair(stats, name: str) -> str:
    lat = stats.stage(name)
    return f"{lat.p50:.2f} / {lat.p90:.2f}" if lat.count else "-"


def _cells(row: CompareRow, notes: Notes) -> list[str]:
    status = notes.mark(row.status, row.reason and f"{row.backend}: {row.reason}")
    r = row.report
    if r is None:
        return [row.backend, "-", status] + ["-"] * (len(HEADERS) - 3)
    s = r.stats
    e2e = s.end_to_end()
    return [row.backend, Path(r.artifact).name, status, _pair(s, "preprocess"), _pair(s, "infer"),
            _pair(s, "postprocess"), _pair(s, "sink"), f"{e2e.p50:.2f} / {e2e.p90:.2f}",
            f"{s.fps:.1f}", str(s.frames), "-" if r.map50 is None else f"{r.map50:.4f}"]


def compare_table(rows: Sequence[CompareRow]) -> str:
    notes = Notes()
    body = table(HEADERS, [_cells(r, notes) for r in rows])
    ran = next((r.report for r in rows if r.report), None)
    source = ran.source if ran else ""
    used = f"\n{ran.input}\n{ran.decoder}" if ran else ""
    return body + f"\nsource: {source}; stage times in ms; pipelined" + used + notes.render()


def compare_markdown(rows: Sequence[CompareRow]) -> str:
    notes = Notes()
    return markdown_table(HEADERS, [_cells(r, notes) for r in rows]) + notes.render("\n\n") \
        + "\n"


def compare_json(rows: Sequence[CompareRow]) -> str:
    out = []
    for r in rows:
        report = r.report.to_dict() if r.report else {}
        runs_on = report.pop("backend", "")  # the backend's description: runtime, device, threads
        out.append({"backend": r.backend, "status": r.status, "reason": r.reason,
                    "runs_on": runs_on, **report})
    return json.dumps(out, indent=2)
