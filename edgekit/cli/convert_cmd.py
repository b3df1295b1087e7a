"""``edgekit convert``, ``edgekit inspect`` and ``edgekit demo``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.bundle.formats import FORMATS
from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, progress_printer
from edgekit.cli.options import detection_options, input_spec_options
from edgekit.errors import EdgekitError, UsageError
from edgekit.preprocess import SpecOptions
from edgekit.tasks.detection import DetectionOptions


def _share(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise UsageError(f"--min-agreement takes a share between 0 and 1 (e.g. 0.99), not "
                         f"{text!r}")
    return value


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v)
    except ValueError:
        raise UsageError(f"--input-shape takes H,W,C (e.g. 224,224,3), not {text!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise UsageError(f"--input-shape takes three positive sizes H,W,C, not {text!r}")
    return dims


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
              help="Calibration data for int8: a folder of images, or a .npy/.npz of "
                   "pre-processed samples (100+ recommended).")
@click.option("--val", type=click.Path(path_type=Path), metavar="PATH",
              show_default="the model card's",
              help="Validation data to measure fidelity (.npz with x and y, .npy, or a folder "
                   "of images, in sub-folders named after their labels for accuracy: matched "
                   "to the labels by name, a numeric name is the class number).")
@options.labels
@click.option("--force", is_flag=True, help="Replace an existing bundle at --output.")
@click.option("--input-shape", metavar="H,W,C", show_default="the model's",
              help="Fix the input size of a model with unknown spatial dimensions.")
@click.option("--int8-io", type=click.Choice(["int8", "uint8"]), default="int8",
              show_default=True, help="Input/output type of the full-integer model.")
@input_spec_options
@options.task
@detection_options
@click.option("--import", "imports", multiple=True, metavar="MODULE",
              help="Module or .py file to import first: one that registers custom layers or "
                   "a subclassed model with keras.saving.register_keras_serializable.")
@click.option("--trust-model", is_flag=True,
              help="Let Keras load Python code (Lambda layers) from the file. Only for files "
                   "you made yourself: safe mode is on without it.")
@click.option("--min-agreement", metavar="X", show_default="the model card's, else none",
              help="Fail any artifact that agrees with Keras less than X (0..1: top-1 "
                   "agreement, or mAP-agreement for a detector); then exit 1 and leave an "
                   "existing bundle untouched.")
@click.option("--no-remedy", is_flag=True,
              help="Keep the default int8 quantisation even when it misses the bar (by default "
                   "edgekit tries per-tensor/per-channel weights, entropy and percentile "
                   "calibration, then keeping the most sensitive layers float).")
@options.table_output
@options.quiet
@debug_option
def convert(model: Path, out_dir: Path, formats: str | None, calib: Path | None,
            val: Path | None, labels: Path | None, force: bool, input_shape: str | None,
            int8_io: str, spec: SpecOptions, task: str | None, detect: DetectionOptions,
            imports: tuple[str, ...], trust_model: bool, min_agreement: str | None,
            no_remedy: bool, view: str, quiet: bool) -> None:
    """Convert a Keras model to every edge format, with fidelity per artifact.

    \b
    Writes a bundle folder: the artifacts (TFLite float32, dynamic-range and
    full-int8, Edge-TPU-compiled TFLite, ONNX and ONNX int8, OpenVINO IR
    FP32/FP16), the validation set with the Keras outputs on it, and
    edgekit.json, the manifest that bench, run and deploy read. It is built
    aside and renamed into place at the end.

    \b
    A MODEL.edgekit.json beside the model can give the defaults for
    --calib, --val, --labels, the task, the input spec (colour, mean, std,
    resize, interpolation, antialias), a detector's decoder and its
    parameters, and min_agreement (see models/lenet5_digits/ and
    models/digit_detector/). Flags override it. The output starts with the
    input spec (and the decoder) and where each value came from (flag,
    model card or default); the manifest keeps both.

    \b
    Calibration and validation data are checked first: NaN/inf, no
    samples, wrong shape, values on another scale than the input spec
    gives 0..255 pixels, labels the model does not have. Every output gets
    max/mean |diff| and cosine similarity; class-score outputs top-1
    agreement. An int8 artifact below 99% agreement (98% mAP for a
    detector) tries remedies and, if none reaches it, gets a warning.
    Every .tflite is loaded by each TFLite runtime configured: this
    Python's, $EDGEKIT_TFLITE_PYTHONS, else [convert] tflite_pythons in
    ~/.config/edgekit/config.toml, else .venv-legacy beside the checkout.

    \b
    Example:
      edgekit convert models/lenet5_digits/lenet5_digits.keras -o out/lenet5
    """
    from edgekit.convert import ConvertOptions
    from edgekit.convert import convert as run_convert

    settings = ConvertOptions(
        formats=formats, calib=calib, val=val, labels=labels, force=force,
        input_shape=_shape(input_shape), int8_io=int8_io, spec=spec, detect=detect, task=task,
        imports=imports, trust_model=trust_model, min_agreement=_share(min_agreement),
        remedy=not no_remedy)
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
