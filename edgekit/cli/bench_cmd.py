"""``edgekit backends``, ``edgekit classify`` and ``edgekit bench``."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, fail_on_failed_rows, progress_printer, save_plot
from edgekit.cli.options import Finite
from edgekit.errors import UsageError
from edgekit.helpers.limits import MAX_BENCH_SECONDS, MAX_DECODE_PIXELS
from edgekit.preprocess import SpecOptions


@cli.command()
@options.table_output
@options.quiet
@debug_option
def backends(view: str, quiet: bool) -> None:
    """List every backend: usable here or not, runtime version, devices, how to fix.

    Third-party backends registered under the entry-point group
    "edgekit.backends" are listed too.
    """
    from edgekit.backends import backend_class, probe_all
    from edgekit.errors import EdgekitError
    from edgekit.helpers.render import Notes, render_table
    from edgekit.loop.imx500 import sensor_status

    statuses = [*probe_all(), sensor_status()]  # the IMX500 runs its network in the sensor
    if view == "json":
        click.echo(json.dumps([asdict(s) for s in statuses], indent=2))
        return

    def formats(name: str) -> str:
        if name == sensor_status().name:
            return "imx500"
        try:
            return ", ".join(backend_class(name).preferred_formats()) or "-"
        except EdgekitError:
            return "-"

    notes = Notes()
    rows = [[s.name, notes.mark("yes" if s.usable else "no", s.hint and f"{s.name}: {s.hint}"),
             s.runtime or "-", ", ".join(s.devices) or "-", formats(s.name),
             "" if s.usable else s.reason] for s in statuses]
    click.echo(render_table(["backend", "usable", "runtime", "devices", "runs (best first)",
                             "why not"], rows, view, notes))


def _classify_rows(results: list[dict]) -> list[list[object]]:
    rows: list[list[object]] = []
    for result in results:
        if "error" in result:
            rows.append([result["image"], "-", f"error: {result['error']}", "-", "-"])
        for rank, c in enumerate(result.get("classes", []), 1):
            rows.append([result["image"], rank, c["label"] or f"class {c['id']}",
                         f"{c['score']:.4f}", c["id"]])
    return rows


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@options.backend
@options.infer(("device", "threads"))
@options.fmt
@options.labels
@options.top_k
@options.preprocess()
@click.option("--max-megapixels", default=50.0, show_default=True, metavar="N",
              type=Finite(0, MAX_DECODE_PIXELS / 1e6, low_open=True),
              help="Refuse an image whose header declares more pixels (checked before it is "
                   "decoded: a small file can declare a gigantic image).")
@options.table_output
@options.quiet
@debug_option
def classify(model: Path, images: tuple[Path, ...], backend: str | None, device: str | None,
             threads: int | None, fmt: str | None, labels: Path | None, top_k: int,
             spec: SpecOptions, max_megapixels: float, view: str, quiet: bool) -> None:
    """Classify images with a bundle or a bare .tflite / .onnx / OpenVINO .xml.

    \b
    A bundle brings its own input spec, a bare model's int8 input its scale
    and zero point; --preprocess overrides either (the first line says each
    value used and where it came from). An image that cannot be read gets a
    line saying why; the others are still classified (exit code 1).

    \b
    Example (Coral's MobileNet):
      edgekit classify mobilenet_v1_0.5_160_quant.tflite cat.bmp --labels imagenet_labels.txt \\
          --preprocess reference=pycoral
    """
    from edgekit.errors import InvalidData
    from edgekit.helpers.render import render_table
    from edgekit.helpers.text import printable
    from edgekit.model import load_model
    from edgekit.preprocess import read_image

    results = []
    with load_model(model, backend=backend, device=device, threads=threads, fmt=fmt,
                    labels=labels, spec=spec) as loaded:
        if loaded.task == "detection":
            raise UsageError(f"{model} is a detector: classify answers one class per image; "
                             f"run it with: edgekit run {model} --source IMAGE_OR_FOLDER")
        for image in images:
            try:
                pixels = read_image(image, max_megapixels * 1e6)
            except InvalidData as exc:  # this image only: the others are still classified
                results.append({"image": str(image), "error": str(exc)})
                continue
            classes = loaded.classify(pixels, top_k)
            results.append({"image": str(image), "classes": [asdict(c) for c in classes]})
        where = {"backend": loaded.backend.name, "runtime": loaded.backend.runtime,
                 "device": loaded.backend.device, "format": loaded.format,
                 "artifact": str(loaded.artifact), "input": loaded.spec.to_dict()}
        described = loaded.spec.describe()
    if view == "json":
        click.echo(json.dumps({**where, "results": results}, indent=2))
    elif view in ("markdown", "csv"):
        click.echo(render_table(["image", "rank", "class", "score", "id"],
                                _classify_rows(results), view))
    else:
        click.echo(printable(f"{Path(where['artifact']).name} on {where['backend']} "
                             f"({where['runtime']}, {where['device'] or 'default device'})"))
        click.echo(printable(described))
        for result in results:
            click.echo(f"\n{printable(result['image'])}")
            if "error" in result:
                click.echo(f"  could not read it: {printable(result['error'])}")
            for rank, c in enumerate(result.get("classes", []), 1):
                name = printable(c["label"] or f"class {c['id']}")
                click.echo(f"  {rank}. {name:30} {c['score']:.4f}  (id {c['id']})")
    failed = [r for r in results if "error" in r]
    if len(failed) == 1:
        raise InvalidData(failed[0]["error"])
    if failed:
        raise InvalidData(f"{len(failed)} of {len(results)} images could not be read: "
                          f"{failed[0]['error']} (the others are named above)")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@options.backends
@options.infer(("device", "threads", "mode", "requests", "streams"))
@options.runs
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0),
              metavar="N", help="Untimed inferences before the timed ones.")
@click.option("--duration", type=Finite(0, MAX_BENCH_SECONDS, low_open=True), metavar="SECONDS",
              show_default="--runs decides", help="Time each row for this long instead.")
@click.option("--no-fidelity", is_flag=True, help="Skip the validation-set run per row.")
@options.preprocess()
@options.plot
@options.table_output
@options.quiet
@debug_option
def bench(model: Path, backend_list: str | None, device: str | None, threads: int | None,
          runs: int, warmup: int, duration: float | None, mode: str, requests: int | None,
          streams: int | None, no_fidelity: bool, spec: SpecOptions, plot: Path | None,
          view: str, quiet: bool) -> None:
    """Time every artifact on every backend that can run it, side by side.

    \b
    Each (artifact, backend) pair gets a row, in its own process: load and
    first-inference time, latency percentiles, throughput, peak memory,
    agreement/accuracy on the validation set, and "pre ms" (the input made
    from a 640x480 frame). An unusable backend gives a "skipped" row, a
    failing pair a "failed" row (exit code 1); neither stops the rest.
    --infer mode=throughput keeps requests in flight and reports how many
    complete per second (docs/bench.md).

    \b
    Examples:
      edgekit bench out/demo/lenet5_digits --runs 500 --plot bench.png
      edgekit bench out/demo/lenet5_digits --backends openvino --infer device=GPU
      edgekit bench out/demo/lenet5_digits --infer mode=throughput,streams=2
    """
    from edgekit.bench import BenchSettings
    from edgekit.bench import bench as run_bench
    from edgekit.bench.report import csv_text, json_text, markdown, text_table
    from edgekit.bench.report import plot as draw
    from edgekit.helpers.output_files import check as check_outputs
    from edgekit.helpers.plot import SUFFIXES

    check_outputs({"--plot": plot}, [model], {"--plot": SUFFIXES})
    names = [n.strip() for n in backend_list.split(",") if n.strip()] if backend_list else None
    settings = BenchSettings(runs=runs, warmup=warmup, duration=duration, threads=threads,
                             device=device, fidelity=not no_fidelity, spec=spec, mode=mode,
                             requests=requests, streams=streams)
    settings.concurrency()  # a bad mode, requests or streams: one line, before any row
    rows = run_bench(model, names, settings, progress=progress_printer(not quiet))
    render = {"json": json_text, "csv": csv_text, "markdown": markdown}.get(view, text_table)
    click.echo(render(rows).rstrip("\n"))
    save_plot(plot, any(r.latencies_ms for r in rows), lambda: draw(rows, plot, str(model)),
              quiet, "row")
    fail_on_failed_rows([(f"{r.artifact} on {r.backend}", r.status, r.reason) for r in rows],
                        "row")
