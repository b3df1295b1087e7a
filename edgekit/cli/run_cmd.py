"""``edgekit run`` and ``edgekit compare``: the camera loop, for any task."""
from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path

import click

from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, fail_on_failed_rows, progress_printer, save_plot
from edgekit.cli.events_options import events_options
from edgekit.cli.families import option
from edgekit.cli.loop_options import Outputs, compare_capture, run_capture, save_option
from edgekit.errors import EdgekitError
from edgekit.events.settings import EventsOptions
from edgekit.preprocess import SpecOptions
from edgekit.tasks.detection import DetectionOptions


def _stage_rows(stats) -> list[list[str]]:
    rows = []
    for name in ("capture", "preprocess", "infer", "postprocess", "sink"):
        lat = stats.stage(name)
        if lat.count:
            rows.append([name, f"{lat.p50:.2f}", f"{lat.p90:.2f}", f"{lat.max:.2f}"])
    wait, e2e = stats.queue_wait(), stats.end_to_end()
    if wait.count:
        rows.append(["queue wait", f"{wait.p50:.2f}", f"{wait.p90:.2f}", f"{wait.max:.2f}"])
    rows.append(["end to end", f"{e2e.p50:.2f}", f"{e2e.p90:.2f}", f"{e2e.max:.2f}"])
    return rows


def _pacing(report) -> str:
    """How frames arrived, and what that means for the end-to-end latency."""
    s = report.stats
    if report.live:
        return "frames arrive at the camera's rate"
    if report.paced_fps:
        return (f"read in real time at {report.paced_fps:g} FPS (--capture realtime), as a "
                "camera delivers")
    if not s.pipelined:
        return "read one frame at a time"
    return ("read as fast as the loop takes frames: end-to-end latency includes the queue "
            "wait in front of the slowest stage; --capture realtime=source paces it as a "
            "camera would")


def _summary(report, view: str = "text") -> str:
    """What run prints: the stage table between the source line and the totals ("text" or
    "markdown"; "csv" is the stage table alone)."""
    from edgekit.events.service import counters_line
    from edgekit.helpers.render import render_table
    from edgekit.helpers.text import printable

    s = report.stats
    stages = render_table(["stage", "p50 ms", "p90 ms", "max ms"], _stage_rows(s), view)
    if view == "csv":
        return stages
    lines = [f"{report.source} -> {Path(report.artifact).name} on {report.backend}",
             report.input, report.decoder,
             f"mode: {'pipelined (one thread per stage)' if s.pipelined else 'sequential'}"
             + (f", {report.requests} frames in the infer stage at once"
                if report.requests > 1 and s.pipelined else ""),
             f"source: {_pacing(report)}", "",
             stages, "",
             f"frames {s.frames} in {s.wall_s:.2f} s: {s.fps:.1f} FPS; dropped {s.dropped}; "
             f"failed to decode {s.decode_failures}"
             + (f"; reconnects {s.reconnects}" if s.reconnects else "")]
    if report.map50 is not None:
        lines.append(f"mAP@0.5 {report.map50:.4f} on {report.map_frames} frames"
                     + (f" ({report.map_note})" if report.map_note else ""))
    if report.accuracy is not None:
        lines.append(f"top-1 accuracy {100 * report.accuracy:.1f}% on {report.accuracy_frames} "
                     f"frames (labels: {report.accuracy_source})")
    lines += report.summary.lines
    lines += [f"wrote {p}" for p in report.outputs]
    lines += [counters_line(row) for row in report.events]
    lines += [f"note: {n}" for n in report.notes]
    return ("\n\n" if view == "markdown" else "\n").join(
        line if line is stages else printable(line)  # the table escapes its own cells
        for line in lines if line or view != "markdown")


WINDOW = "window"  # --serve window: a window on this screen instead of a browser


def _live_view(serve: str | None):
    """The live view, listening before the model loads (a port in use fails at once); its
    token comes from $EDGEKIT_SERVE_TOKEN only, never the command line."""
    if serve is None or serve == WINDOW:
        return nullcontext()
    from edgekit.live.server import TOKEN_ENV, LiveView, serve_options

    settings = serve_options(serve, os.environ.get(TOKEN_ENV) or None)
    live = LiveView(settings)
    needs = "; open it once with ?token=TOKEN" if settings.token else ""
    click.echo(f"live view: {live.url}{needs}", err=True)
    return live


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@options.source
@run_capture
@options.backend
@options.infer(("device", "threads", "mode", "requests", "format"))
@options.postprocess(tuple(k for k in options.POSTPROCESS_KEYS))
@options.preprocess()
@save_option
@option("--serve", metavar="[HOST:]PORT|window", help="A live view at "
        "http://HOST:PORT/ (off 127.0.0.1: $EDGEKIT_SERVE_TOKEN), or a window.",
        moved={"--token": "$EDGEKIT_SERVE_TOKEN (a credential stays off the command line)"})
@events_options
@options.table_output
@options.quiet
@debug_option
def run(model: Path, source: str, capture: dict,
        backend: str | None, device: str | None, threads: int | None, fmt: str | None,
        labels: Path | None, task: str | None, top_k: int, smooth: int,
        detect: DetectionOptions, spec: SpecOptions, outputs: Outputs, serve: str | None,
        events: EventsOptions, mode: str,
        requests: int | None, view: str, quiet: bool) -> None:
    """Run the camera loop on a camera, a video, a folder of images or a stream.

    \b
    Any model: the bundle brings its task, input spec and decoder; the summary
    says every value used and where it came from (docs/loop.md).

    \b
    Examples:
      edgekit run out/demo/digit_detector --source out/demo/clip.avi --save annotated.avi
      edgekit run out/demo/digit_detector --source 0 --serve 8080
    """
    from edgekit.backends import Concurrency
    from edgekit.loop.picamera import is_imx500
    from edgekit.loop.run import check_run_outputs, loop_model, run_loop
    from edgekit.loop.sinks import check_mask_folder

    Concurrency(mode, requests)  # requests=0: one line, before anything loads
    truth, pipelined = capture.get("truth"), capture.get("pipeline", True)
    check_run_outputs(outputs.video, outputs.jsonl, source, truth,
                      [model, labels, model / "edgekit.json" if model.is_dir() else None],
                      raw_outputs=outputs.raw)
    if outputs.masks is not None:
        check_mask_folder(outputs.masks, [source, model, labels])
    with _live_view(serve) as live, \
            loop_model(model, task=task, backend=backend, device=device, threads=threads,
                       fmt=fmt, labels=labels, spec=spec, detect=detect, mode=mode,
                       requests=requests, pipelined=pipelined,
                       sensor=is_imx500(source)) as loaded:
        report = run_loop(loaded, source, save=outputs.video, jsonl=outputs.jsonl,
                          show=serve == WINDOW,
                          max_frames=capture.get("max_frames"), pipelined=pipelined,
                          queue_size=capture.get("queue", 2), truth=truth,
                          repeat=capture.get("repeat", False), serve=live,
                          realtime=capture.get("realtime", False), top_k=top_k, smooth=smooth,
                          save_masks=outputs.masks, raw_outputs=outputs.raw, events=events)
    click.echo(json.dumps(report.to_dict(), indent=2) if view == "json"
               else _summary(report, view))
    if report.stopped:
        kept = f"; what was processed is in {', '.join(report.outputs)}" if report.outputs else ""
        raise EdgekitError(report.stopped + kept)


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@options.source
@compare_capture
@options.backends
@options.infer(("threads", "mode", "requests"))
@options.postprocess(tuple(k for k in options.POSTPROCESS_KEYS if k != "labels"))
@options.preprocess()
@options.plot
@options.table_output
@options.quiet
@debug_option
def compare(bundle: Path, source: str, capture: dict,
            backend_list: str | None, threads: int | None, mode: str,
            requests: int | None, task: str | None, top_k: int,
            smooth: int, detect: DetectionOptions, spec: SpecOptions,
            plot: Path | None, view: str, quiet: bool) -> None:
    """Run the same frames through each usable backend: one table, per-stage latency.

    \b
    Backends that cannot run here are listed as skipped, with the reason.
    Every backend gets the bundle's input spec and decoder, with
    --preprocess and --postprocess on top; the lines under the table say
    which values were used. For a camera, give --capture max_frames=N (each
    backend gets its own frames).
    The exit code is 1 when a backend failed.

    \b
    Example:
      edgekit compare out/demo/digit_detector --source out/demo/clip.avi --table markdown
    """
    from edgekit.backends import parse_backends
    from edgekit.helpers.output_files import check as check_outputs
    from edgekit.helpers.plot import SUFFIXES
    from edgekit.loop.report import compare_json, compare_plot, compare_table
    from edgekit.loop.run import compare as run_compare

    check_outputs({"--plot": plot}, [bundle, source], {"--plot": SUFFIXES})
    chosen = parse_backends(backend_list)
    rows = run_compare(bundle, source, [f"{n}:{f}" if f else n for n, f in chosen],
                       max_frames=capture.get("max_frames"), threads=threads,
                       truth=capture.get("truth"), spec=spec, detect=detect, mode=mode,
                       requests=requests, realtime=capture.get("realtime", False), task=task,
                       top_k=top_k, smooth=smooth, progress=progress_printer(not quiet))
    click.echo(compare_json(rows) if view == "json" else compare_table(rows, view))
    save_plot(plot, any(r.report for r in rows), lambda: compare_plot(rows, plot, str(bundle)),
              quiet, "backend")
    fail_on_failed_rows([(r.backend, r.status, r.reason) for r in rows], "backend")
