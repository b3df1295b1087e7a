"""``edgekit convert``, ``edgekit inspect`` and ``edgekit demo``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.bundle.formats import FORMATS
from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, progress_printer
from edgekit.errors import EdgekitError
from edgekit.preprocess import SpecOptions
from edgekit.tasks.detection import DetectionOptions


def _report(manifest, view: str, folder: Path | None) -> None:
    from edgekit.bundle.tables import conversion_table

    if view == "json":
        click.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        click.echo(conversion_table(manifest, view))
        if view == "text" and folder is not None and \
                manifest.source.get("written") is not False:
            click.echo(f"\nbundle: {folder}")
    failed = [a.format for a in manifest.artifacts if a.status == "failed"]
    if failed:
        where = (f"{folder} was left as it was" if manifest.source.get("written") is False
                 else "the bundle holds the others")
        raise EdgekitError(f"{len(failed)} format(s) failed ({', '.join(failed)}); {where}. "
                           "The notes under the table say why")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@options.output
@click.option("--formats", metavar="LIST",
              show_default="all but " + ", ".join(k for k, f in FORMATS.items()
                                                  if not f.by_default),
              help=f"Comma-separated formats: {', '.join(FORMATS)}; or all.")
@click.option("--calib", type=click.Path(path_type=Path), metavar="PATH",
              show_default="the model card's",
              help="Calibration data for int8: images, or a .npy/.npz (100+ samples).")
@click.option("--val", type=click.Path(path_type=Path), metavar="PATH",
              show_default="the model card's",
              help="Validation data for fidelity: .npz (x, y), .npy, or images (in "
                   "sub-folders named after labels for accuracy; docs/convert.md).")
@options.labels
@click.option("--force", is_flag=True, help="Replace an existing bundle at --output.")
@options.preprocess()
@options.postprocess(("task", "decoder", "score_threshold", "iou", "max_detections", "classes",
                      "anchors", *options.DECODER_KEYS))
@options.quantize()
@options.load()
@options.table_output
@options.quiet
@debug_option
def convert(model: Path, out_dir: Path, formats: str | None, calib: Path | None,
            val: Path | None, labels: Path | None, force: bool,
            input_shape: tuple[int, ...] | None, int8_io: str, spec: SpecOptions,
            task: str | None, detect: DetectionOptions, imports: tuple[str, ...],
            trust_model: bool, min_agreement: float | None, remedy: bool, view: str,
            quiet: bool) -> None:
    """Convert a Keras model to every edge format, with fidelity per artifact.

    \b
    Writes a bundle folder (built aside, renamed into place): each format's
    artifact, the validation set with the Keras outputs on it, and
    edgekit.json, the manifest bench, run and deploy read. A
    MODEL.edgekit.json beside the model gives defaults; options override
    it. An int8 artifact below the fidelity bar tries remedies
    (docs/convert.md).

    \b
    Example:
      edgekit convert models/lenet5_digits/lenet5_digits.keras -o out/lenet5
    """
    from edgekit.convert import ConvertOptions
    from edgekit.convert import convert as run_convert

    settings = ConvertOptions(
        formats=formats, calib=calib, val=val, labels=labels, force=force,
        input_shape=input_shape, int8_io=int8_io, spec=spec, detect=detect, task=task,
        imports=imports, trust_model=trust_model, min_agreement=min_agreement, remedy=remedy)
    manifest = run_convert(model, out_dir, settings, progress=progress_printer(not quiet))
    _report(manifest, view, out_dir)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@options.table_output
@options.quiet
@debug_option
def inspect(path: Path, view: str, quiet: bool) -> None:
    """Show what a bundle or a model file holds, without running it.

    \b
    A bundle: its manifest as the convert table. A .tflite: its operators
    with their versions, the inputs and outputs with dtype, shape and
    quantisation, and whether it is compiled for the Edge TPU. An .onnx
    (needs the onnx package): opset, producer, int8 or not, operators. An
    OpenVINO .xml: IR version, constants' precision, layers, and its .bin.
    A .keras: the model class, Keras version, parameters, input shape and
    layers, read from the archive (no TensorFlow needed). A detector's
    bundle also lists its decoder's parameters.
    """
    from edgekit.bundle.contents import inspect_path

    facts, text = inspect_path(path, "text" if view == "json" else view)
    decoder = facts.get("decoder") or {}
    if view == "text" and decoder.get("name"):
        text += "\n" + _decoder_text(decoder)
    click.echo(json.dumps(facts, indent=2) if view == "json" else text)


def _decoder_text(decoder: dict) -> str:
    """A detector bundle's decoder: the values it keeps, and every parameter the decoder
    declares (what it takes, its default, its help), each one a --decoder-param away."""
    from edgekit.tasks.detection import PARAMS, describe_params

    name = decoder["name"]
    kept = ", ".join(f"{k} {v}" for k, v in decoder.items() if k not in ("name", "origin"))
    lines = [f"decoder {name}: {kept or 'its defaults'}"]
    if name in PARAMS:
        lines += ["its parameters (change one with --decoder-param KEY=VALUE; the thresholds, "
                  "max_detections and classes have flags of their own):",
                  *(f"  {line}" for line in describe_params(name))]
    return "\n".join(lines)


@cli.command()
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path),
              default=Path("out/demo"), metavar="DIR", show_default=True,
              help="Folder to write into: a bundle per example and report/.")
@options.runs
@options.table_output
@options.quiet
@debug_option
def demo(out_dir: Path, runs: int, view: str, quiet: bool) -> None:
    """The whole path on the bundled examples, into a report folder.

    \b
    1. converts LeNet-5 (real handwritten digits), the digit detector and the
       digit segmenter to every format, with fidelity per artifact;
    2. benches every artifact of the first two on every backend (unusable
       ones say why);
    3. makes a clip of digits moving over photos, with ground truth, and a
       clip of held-out digits one at a time, with their labels;
    4. runs the loop through every backend (edgekit compare): the detector
       and the segmenter on the first clip, the classifier on the second;
    5. saves the detector's annotated video from the default backend;
    6. writes DIR/report/REPORT.md with every table, as Markdown and JSON,
       and latency plots.

    The examples come from the checkout's models/ or, installed, from the
    wheel; needs the convert and train extras. Re-running replaces the demo's own output.
    --table markdown prints REPORT.md; --table csv the loop comparison's table.
    """
    from edgekit.demo import demo_json, run_demo
    from edgekit.loop.report import compare_csv, compare_table

    report = run_demo(out_dir, progress=progress_printer(not quiet), runs=runs)
    if view == "json":
        click.echo(demo_json(report))
        return
    if view == "markdown":
        click.echo((report.folder / "REPORT.md").read_text().rstrip("\n"))
        return
    if view == "csv":
        click.echo(compare_csv(report.compare))
        return
    from edgekit.bundle.tables import conversion_table

    for name, manifest in report.manifests.items():
        click.echo(f"{name}\n{conversion_table(manifest)}\n")
    click.echo(f"the detection loop on the demo clip, every backend\n"
               f"{compare_table(report.compare)}\n")
    for task, rows in report.compare_tasks.items():
        click.echo(f"the {task} loop, every backend\n{compare_table(rows)}\n")
    click.echo(f"report: {report.folder / 'REPORT.md'} (bench tables, plots, annotated video)")
