"""The compare table: one row per backend, per-stage and end-to-end latency, FPS, and the
task's score: a detector's mAP@0.5, a classifier's top-1 accuracy against the source's labels
(or, without labels, its top-1 agreement with the first backend)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edgekit.helpers.render import Notes, render_table
from edgekit.loop.run import CompareRow

HEADERS = ["backend", "artifact", "status", "pre p50/p90", "infer p50/p90", "post p50/p90",
           "sink p50/p90", "queue wait p50", "e2e p50/p90 ms", "FPS", "frames", "mAP@0.5"]


def _score_header(rows: Sequence[CompareRow]) -> str:
    """The last column: what the task's score is."""
    ran = [r for r in rows if r.report]
    task = ran[0].report.task if ran else "detection"
    if task == "classification":
        return "top-1 accuracy" if any(r.report.accuracy is not None for r in ran) else \
            f"top-1 = {ran[0].backend}'s"
    if task == "segmentation":
        return f"pixels = {ran[0].backend}'s"
    return "mAP@0.5" if task == "detection" else "score"


def _score(row: CompareRow) -> str:
    r = row.report
    for value in (r.map50, r.accuracy, row.agreement):
        if value is not None:
            return f"{value:.4f}" if value is r.map50 else f"{100 * value:.1f}%"
    return "-"


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
            _pair(s, "postprocess"), _pair(s, "sink"),
            f"{s.queue_wait().p50:.2f}" if s.queue_wait().count else "-",
            f"{e2e.p50:.2f} / {e2e.p90:.2f}",
            f"{s.fps:.1f}", str(s.frames), _score(row)]


def compare_table(rows: Sequence[CompareRow], view: str = "text") -> str:
    """The comparison as "text" (with the source and the notes under it), "markdown" or
    "csv"."""
    notes = Notes()
    ran = [r.report for r in rows if r.report]
    source = ran[0].source if ran else ""
    used = f"\n{ran[0].input}\n{ran[0].decoder}" if ran else ""
    requests = max((r.requests for r in ran), default=1)
    paced = any(r.paced_fps for r in ran)
    headers = [*HEADERS[:-1], _score_header(rows)]
    return render_table(headers, [_cells(r, notes) for r in rows], view, notes,
                        f"source: {source}; stage times in ms; pipelined"
                        + (f", {requests} frames in the infer stage at once" if requests > 1
                           else "")
                        + ("" if paced or (ran and ran[0].live) else
                           "; the file is read as fast as the loop takes it, so end to end "
                           "includes the queue wait (--capture realtime paces it)") + used)


def compare_markdown(rows: Sequence[CompareRow]) -> str:
    return compare_table(rows, "markdown") + "\n"


def compare_csv(rows: Sequence[CompareRow]) -> str:
    return compare_table(rows, "csv")


def compare_plot(rows: Sequence[CompareRow], path: Path, bundle: str = "") -> Path:
    """End-to-end latency per backend with its FPS and mAP beside it; backends that did not
    run are listed under the plot."""
    from edgekit.helpers.plot import comparison

    ran = {f"{r.backend} ({Path(r.report.artifact).name})": {
        "latency_ms": list(r.report.stats.latency_ns.values() / 1e6),
        "fps": r.report.stats.fps, "map": r.report.map50} for r in rows if r.report}
    source = next((Path(r.report.source).name for r in rows if r.report), "")
    name = Path(bundle).name if bundle else ""
    return comparison(ran, f"edgekit compare{': ' + name if name else ''} on {source}, "
                           "every backend (pipelined loop)", path,
                      notes=[f"{r.status}: {r.backend}: {r.reason.split('; ')[0]}"
                             for r in rows if r.report is None])


def compare_json(rows: Sequence[CompareRow]) -> str:
    out = []
    for r in rows:
        report = r.report.to_dict() if r.report else {}
        runs_on = report.pop("backend", "")  # the backend's description: runtime, device, threads
        out.append({"backend": r.backend, "status": r.status, "reason": r.reason,
                    "runs_on": runs_on, **report})
    return json.dumps(out, indent=2)
