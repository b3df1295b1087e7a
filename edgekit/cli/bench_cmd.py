"""``edgekit backends``, ``edgekit classify`` and ``edgekit bench``."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from edgekit.cli.app import cli, debug_option, fail_on_failed_rows, progress_printer
from edgekit.cli.options import input_spec_options, references_epilog
from edgekit.errors import UsageError
from edgekit.preprocess import SpecOptions


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the statuses as JSON.")
@debug_option
def backends(as_json: bool) -> None:
    """List every backend: usable here or not, runtime version, devices, how to fix.

    Third-party backends registered under the entry-point group
    "edgekit.backends" are listed too.
    """
    from edgekit.backends import probe_all
    from edgekit.render import table

    statuses = probe_all()
    if as_json:
        click.echo(json.dumps([asdict(s) for s in statuses], indent=2))
        return
    notes = [f"{s.name}: {s.hint}" for s in statuses if not s.usable and s.hint]
    rows = [[s.name, "yes" if s.usable else "no", s.runtime or "-",
             ", ".join(s.devices) or "-", "" if s.usable else s.reason] for s in statuses]
    click.echo(table(["backend", "usable", "runtime", "devices", "why not"], rows))
    if notes:
        click.echo("\nhow to fix:\n" + "\n".join(f"  {n}" for n in notes))


def _backend_options(f):
    f = click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the "
                     "runtime (default: its own choice).")(f)
    f = click.option("--device", help="Device: CPU, GPU, NPU, AUTO, MYRIAD for openvino; usb, "
                     "usb:N, pci, pci:N for edgetpu.")(f)
    f = click.option("--backend", help="tflite, edgetpu, openvino, myriad, onnxruntime, or a "
                     "third-party one (default: tflite for a bundle, by file type otherwise).")(f)
    return f


@cli.command(epilog=references_epilog())
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@_backend_options
@click.option("--format", "fmt", help="Which artifact of a bundle to run (default: the best "
              "one for the backend, e.g. tflite-int8 for tflite).")
@click.option("--labels", type=click.Path(path_type=Path), help="Labels file (one per line, "
              "or 'ID NAME' lines); a bundle has its own.")
@click.option("-k", "--top-k", default=5, show_default=True, help="How many classes to show.")
@input_spec_options
@click.option("--max-megapixels", default=50.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Refuse an image whose header declares more pixels (checked before it is "
                   "decoded: a small file can declare a gigantic image).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@debug_option
def classify(model: Path, images: tuple[Path, ...], backend: str | None, device: str | None,
             threads: int | None, fmt: str | None, labels: Path | None, top_k: int,
             spec: SpecOptions, max_megapixels: float, as_json: bool) -> None:
    """Classify images with a bundle or a bare .tflite / .onnx / OpenVINO .xml.

    \b
    A bundle brings its own input spec (colour, mean, std, resize,
    interpolation). A bare model's normalisation is read from its own
    input: an int8/uint8 input's scale and zero point say how pixels map
    onto it; for a float model give --mean/--std (default: pixels / 255).
    Flags override either; --reference NAME pre-processes as a known
    pipeline does. The first line says every value used and where it came
    from.

    \b
    Examples (Coral's MobileNet):
      edgekit classify mobilenet_v1_0.25_128_quant.tflite cat.bmp --labels imagenet_labels.txt
      edgekit classify mobilenet_v1_0.5_160_quant.tflite cat.bmp --labels imagenet_labels.txt \\
          --reference pycoral            # = --resize stretch --interpolation nearest
      edgekit classify mobilenet_v1_0.25_128_quant.tflite cat.bmp --labels imagenet_labels.txt \\
          --backend openvino
    """
    from edgekit.model import load_model
    from edgekit.preprocess import read_image
    from edgekit.tasks.classification import classify as run_classify

    if top_k < 1:
        raise UsageError("--top-k must be 1 or more")
    results = []
    with load_model(model, backend=backend, device=device, threads=threads, fmt=fmt,
                    labels=labels, spec=spec) as loaded:
        if loaded.task == "detection":
            raise UsageError(f"{model} is a detector: classify answers one class per image; "
                             f"run it with: edgekit run {model} --source IMAGE_OR_FOLDER")
        for image in images:
            pixels = read_image(image, max_megapixels * 1e6)
            classes = run_classify(loaded, pixels, top_k)
            results.append({"image": str(image), "classes": [asdict(c) for c in classes]})
        where = {"backend": loaded.backend.name, "runtime": loaded.backend.runtime,
                 "device": loaded.backend.device, "artifact": str(loaded.artifact),
                 "input": loaded.spec.to_dict()}
        described = loaded.spec.describe()
    if as_json:
        click.echo(json.dumps({**where, "results": results}, indent=2))
        return
    click.echo(f"{Path(where['artifact']).name} on {where['backend']} ({where['runtime']}, "
               f"{where['device'] or 'default device'})\n{described}")
    for result in results:
        click.echo(f"\n{result['image']}")
        for rank, c in enumerate(result["classes"], 1):
            name = c["label"] or f"class {c['id']}"
            click.echo(f"  {rank}. {name:30} {c['score']:.4f}  (id {c['id']})")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--backends", "backend_list", metavar="LIST",
              help="Comma-separated backends (default: all registered).")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(min=1),
              help="Timed inferences per row.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0),
              help="Untimed inferences first.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Time each row for this many seconds instead of --runs.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for every runtime "
              "(default: each runtime's own choice).")
@click.option("--no-fidelity", is_flag=True, help="Skip the validation-set run per row.")
@input_spec_options
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Rows as CSV.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Rows as a Markdown table.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write the latency "
              "distribution per row to this PNG (needs matplotlib).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@debug_option
def bench(model: Path, backend_list: str | None, runs: int, warmup: int,
          duration: float | None, threads: int | None, no_fidelity: bool, spec: SpecOptions,
          as_json: bool, as_csv: bool, as_markdown: bool, plot: Path | None,
          quiet: bool) -> None:
    """Time every artifact on every backend that can run it, side by side.

    \b
    For a bundle, each (artifact, backend) pair gets a row: load time,
    first-inference time, latency min/p50/p90/p99/max/mean, throughput,
    peak memory, and agreement/accuracy on the bundle's validation set;
    "pre ms" is the time to make the input from a 640x480 frame with the
    input spec (the bundle's, or the flags': resize mode and filter cost).
    Each pair runs in its own process; a backend that is not usable here
    gives a "skipped" row with the reason, a failing pair a "failed" row,
    and neither stops the rest. Mode: synchronous, one request. The exit
    code is 1 when any row failed (an artifact that no longer matches the
    bundle's manifest fails its rows).

    \b
    Example:
      edgekit bench out/demo/lenet5_digits --runs 500 --plot bench.png
    """
    from edgekit.bench import BenchSettings
    from edgekit.bench import bench as run_bench
    from edgekit.bench.report import csv_text, json_text, markdown, text_table
    from edgekit.bench.report import plot as draw

    if sum((as_json, as_csv, as_markdown)) > 1:
        raise UsageError("choose one of --json, --csv and --markdown")
    from edgekit.outputs import check as check_outputs
    from edgekit.plot import SUFFIXES

    check_outputs({"--plot": plot}, [model], {"--plot": SUFFIXES})
    names = [n.strip() for n in backend_list.split(",") if n.strip()] if backend_list else None
    settings = BenchSettings(runs=runs, warmup=warmup, duration=duration, threads=threads,
                             fidelity=not no_fidelity, spec=spec)
    rows = run_bench(model, names, settings, progress=progress_printer(not quiet))
    render = json_text if as_json else csv_text if as_csv else markdown if as_markdown \
        else text_table
    click.echo(render(rows))
    if plot is not None:
        ran = any(r.latencies_ms for r in rows)
        click.echo(f"plot: {draw(rows, plot)}" if ran else "plot: no row ran, so none was drawn",
                   err=True)
    fail_on_failed_rows([(f"{r.artifact} on {r.backend}", r.status, r.reason) for r in rows],
                        "row")
