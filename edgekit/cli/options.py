"""The options that mean the same thing in several commands, declared once.

Each has one name, metavar, default and help text wherever it appears (tests/test_cli.py
holds every command to that), and every default is shown one way: click's ``[default: ...]``
(in parentheses where it depends on the model or the machine). Every command takes ``--json``
and ``-q``; every command that prints a table takes ``--table markdown|csv`` too; ``--debug``
belongs to the group and is taken anywhere on the line.

``input_spec_options`` (--reference, --resize, --interpolation, --antialias, --color, --mean,
--std) hands the command one ``spec: SpecOptions``; ``detection_options`` (--decoder,
--score-threshold, --iou, --max-detections, --classes, --anchors, --decoder-param) one
``detect: DetectionOptions``. Values are checked as they are parsed, so a bad one stops the
command in one line (exit 2) before any model loads.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgekit.bundle.formats import FORMATS
from edgekit.errors import UsageError
from edgekit.preprocess import (
    COLORS,
    INTERPOLATIONS,
    REFERENCES,
    RESIZE_HELP,
    SpecOptions,
    check_normalisation,
)
from edgekit.tasks.base import TASKS
from edgekit.tasks.detection import DECODERS, DetectionOptions, decoder_param_help

F = TypeVar("F", bound=Callable[..., Any])

BACKEND_NAMES = "tflite, edgetpu, openvino, myriad, onnxruntime, or a third-party one"


class Finite(click.ParamType):
    """A float option: a finite number (NaN and infinity refused) within the bounds, the bounds
    in the message. Every float option of every command takes its value through this."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> None:
        self.bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        from edgekit.helpers.limits import finite

        try:
            return finite(value, "it", **self.bounds)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def _option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    kwargs.setdefault("show_default", "default" in kwargs)
    return click.option(*names, **kwargs)


backend = _option(
    "--backend", metavar="NAME",
    show_default="the first usable one that runs the model: tflite for a full bundle",
    help=f"Backend: {BACKEND_NAMES} (edgekit backends lists them).")

backends = _option(
    "--backends", "backend_list", metavar="LIST", show_default="every registered backend",
    help="Comma-separated backends, each optionally NAME:FORMAT for one artifact, e.g. "
         "tflite,openvino:tflite-int8.")

device = _option(
    "--device", metavar="DEVICE", show_default="the backend's own: CPU, the first Edge TPU",
    help="The backend's device: CPU, GPU, NPU, AUTO, MYRIAD for openvino; usb, usb:N, pci, "
         "pci:N for edgetpu; CPU only for tflite and onnxruntime.")

threads = _option(
    "--threads", type=click.IntRange(min=1), metavar="N", show_default="the runtime's choice",
    help="CPU threads for the runtime.")

fmt = _option(
    "--format", "fmt", type=click.Choice(list(FORMATS)), metavar="FORMAT",
    show_default="the backend's best: tflite-int8 on tflite, openvino-fp32 on openvino",
    help=f"Which artifact of a bundle to run ({', '.join(FORMATS)}); without --backend, a "
         "backend that runs it.")

labels = _option(
    "--labels", type=click.Path(path_type=Path), metavar="FILE",
    show_default="a bundle's own",
    help="Labels file: one label per line, or 'ID NAME' lines.")

samples = _option(
    "--samples", default=10, type=click.IntRange(min=0), metavar="N",
    help="Validation samples to run and compare with Keras (0: all).")

mode = _option(
    "--mode", default="latency", show_default=True, metavar="latency|throughput",
    help="latency: the runtime tuned for each inference's latency (OpenVINO's LATENCY hint; "
         "bench times one inference at a time); throughput: for the most inferences per "
         "second (the THROUGHPUT hint and its streams), with --requests in flight (bench "
         "reports inferences per second over the wall time and each request's latency).")

requests = _option(
    "--requests", type=int, metavar="N",
    show_default="1; with --mode throughput the runtime's recommendation (OpenVINO's "
                 "optimal number of requests), else the core count",
    help="Inferences kept in flight at once (the loop: frames in the infer stage, results "
         "still in frame order): OpenVINO's infer-request queue, one TFLite interpreter or "
         "ONNX Runtime session per request (the threads shared out between them); a backend "
         "without an asynchronous path (edgetpu) runs one at a time.")

task = _option(
    "--task", type=click.Choice(list(TASKS)),
    show_default="convert: the model card's, else guessed from the outputs; run and compare: "
                 "the bundle's (a bare model: classification for one score vector, else generic)",
    help="What the model's outputs mean: classification (top-k), detection (boxes), "
         "segmentation (H x W x C class scores or H x W class ids: a mask), generic (each "
         "output's shape and summary). convert records it in the bundle; run and compare "
         "cannot change a bundle's own, except to generic.")

top_k = _option(
    "-k", "--top-k", default=5, type=click.IntRange(min=1), metavar="K",
    help="A classifier's best classes to show per image or frame (at most the model's class "
         "count); the loop draws them as bars and writes them to --jsonl and the live view.")

smooth = _option(
    "--smooth", default=1, type=click.IntRange(min=1), metavar="N",
    help="Average a classifier's scores over the last N frames, against per-frame flicker "
         "(1: none); --jsonl then has the raw and the smoothed top-1.")

runs = _option(
    "--runs", default=100, type=click.IntRange(min=1), metavar="N",
    help="Timed inferences per bench row.")

source = _option(
    "--source", required=True, metavar="SOURCE",
    help="Camera index (0), video file, folder of images, stream URL (anything OpenCV's "
         "VideoCapture opens), or picamera2[:N] (a Raspberry Pi camera module, through "
         "Picamera2).")

plot = _option(
    "--plot", type=click.Path(path_type=Path), metavar="FILE.png",
    help="Also draw the latency distributions (and figures) to this PNG, SVG or PDF (needs "
         "matplotlib).")

output = _option(
    "-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path), metavar="DIR",
    help="Folder to write into: the bundle (built aside, renamed into place at the end).")

quiet = _option("-q", "--quiet", is_flag=True,
                help="Print only the result: no progress lines on stderr.")


def _output_options(table: bool) -> Callable[[F], F]:
    """--json (and for a table --table markdown|csv) as one ``view`` argument: "text", "json",
    "markdown" or "csv"; asking for two is a UsageError."""

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            as_json, as_table = kwargs.pop("as_json"), kwargs.pop("as_table", None)
            if as_json and as_table:
                raise UsageError(f"choose one of --json, --table {as_table}")
            return f(*args, view="json" if as_json else as_table or "text", **kwargs)

        if table:
            command = click.option("--table", "as_table", type=click.Choice(["markdown", "csv"]),
                                   help="Print the table as Markdown or CSV.")(command)
        command = click.option("--json", "as_json", is_flag=True,
                               help="Print the same facts as JSON, for machines.")(command)
        return command  # type: ignore[return-value]
    return decorate


json_output = _output_options(table=False)
table_output = _output_options(table=True)


def numbers(text: str | None, what: str) -> tuple[float, ...] | None:
    """Comma-separated numbers (``--mean 127.5,127.5,127.5``), checked as a mean or std."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UsageError(f"{what} takes comma-separated numbers, e.g. 127.5,127.5,127.5") from None
    if not values:
        raise UsageError(f"{what} takes comma-separated numbers, e.g. 127.5,127.5,127.5")
    check_normalisation(what.lstrip("-"), values, len(values), "flag")  # before the model loads
    return values


def references_epilog() -> str:
    """The reference pipelines, for a command's --help."""
    import textwrap

    lines = ["\b", "Reference pipelines (--reference NAME):"]
    for r in REFERENCES.values():
        lines.append(f"  {r.name}")
        lines += textwrap.wrap(r.source, 86, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


SPEC_OPTION_NAMES = ("reference", "resize", "interpolation", "antialias", "color", "mean", "std")


def input_spec_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the input-spec options; the command receives them as ``spec: SpecOptions``."""
    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in SPEC_OPTION_NAMES}
        kwargs["spec"] = SpecOptions(
            reference=given["reference"], resize=given["resize"],
            interpolation=given["interpolation"], antialias=given["antialias"],
            color=given["color"], mean=numbers(given["mean"], "--mean"),
            std=numbers(given["std"], "--std"))
        return f(*args, **kwargs)

    command.__click_params__ = list(getattr(f, "__click_params__", []))  # not shared with f
    options = [
        _option("--std", metavar="LIST", show_default="the model card's, else 255",
                help="Per-channel divisor after the mean (tensor = (pixel - mean) / std; 255 "
                     "for pixels scaled to 0..1)."),
        _option("--mean", metavar="LIST", show_default="the model card's, else 0",
                help="Per-channel mean subtracted from 0..255 pixels (one value, or one per "
                     "channel)."),
        _option("--color", type=click.Choice(COLORS),
                show_default="the model card's, else rgb; gray for one channel",
                help="Colour order the model takes."),
        _option("--antialias/--no-antialias", default=None,
                show_default="the model card's, else off: OpenCV's filters",
                help="Resample with Pillow's filters, which widen when shrinking "
                     "(antialiasing), with PIL's bicubic and Lanczos-3: what PIL pipelines and "
                     "tf.image.resize(antialias=True) do."),
        _option("--interpolation", type=click.Choice(list(INTERPOLATIONS)),
                show_default="the model card's, else bilinear",
                help="The resize filter. nearest is PIL's NEAREST, byte for byte."),
        _option("--resize", metavar="MODE", show_default="the model card's, else stretch",
                help=f"How a picture becomes the input size: {RESIZE_HELP}."),
        _option("--reference", type=click.Choice(list(REFERENCES)), metavar="NAME",
                help=f"Pre-process as a reference pipeline does: {', '.join(REFERENCES)} "
                     "(each described at the end of edgekit classify --help); the other flags "
                     "here override its values."),
    ]
    for option in options:
        command = option(command)
    return command


DETECTION_OPTION_NAMES = ("decoder", "score_threshold", "iou", "max_detections", "classes",
                          "anchors", "decoder_param")


def detection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the detection options; the command receives them as ``detect: DetectionOptions``."""
    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in DETECTION_OPTION_NAMES}
        classes = None
        if given["classes"] is not None:
            classes = tuple(c.strip() for c in given["classes"].split(",") if c.strip())
            if not classes:
                raise UsageError("--classes takes class names or ids, comma-separated, e.g. "
                                 "--classes person,dog or --classes 0,16")
        kwargs["detect"] = DetectionOptions(
            decoder=given["decoder"], score_threshold=given["score_threshold"],
            iou_threshold=given["iou"], max_detections=given["max_detections"],
            classes=classes, anchors=given["anchors"], params=tuple(given["decoder_param"]))
        kwargs["detect"].given()  # KEY=VALUE checked now
        return f(*args, **kwargs)

    command.__click_params__ = list(getattr(f, "__click_params__", []))
    options = [
        _option("--decoder-param", multiple=True, metavar="KEY=VALUE",
                help=f"One of the decoder's own parameters (repeatable): "
                     f"{decoder_param_help()}. An unknown key is refused with the decoder's "
                     "list; docs/preprocessing.md gives each one's type, default and meaning."),
        _option("--anchors", metavar="FILE",
                show_default="made from the SSD anchor parameters",
                help="Anchors for raw SSD outputs (--decoder ssd-raw): a .npy of shape (N, 4) "
                     "or text lines 'y_center x_center height width', normalised, in the "
                     "model's output order."),
        _option("--classes", metavar="LIST", help="Keep only these classes, by name or id, "
                "comma-separated (person,dog or 0,16); host decoders drop the others before "
                "their NMS."),
        _option("--max-detections", type=click.IntRange(min=1), metavar="N",
                show_default="the decoder's setting, 100",
                help="At most this many detections per frame."),
        _option("--iou", type=Finite(0, 1), metavar="X",
                show_default="the decoder's setting",
                help="IoU above which NMS drops the lower-scoring of two boxes, 0 to 1."),
        _option("--score-threshold", type=Finite(0, 1), metavar="X",
                show_default="the decoder's setting", help="Minimum score kept, 0 to 1."),
        _option("--decoder", type=click.Choice(list(DECODERS)),
                show_default="the bundle's", help="Output decoder: edgekit-grid (edgekit's "
                "own head), ssd (TFLite_Detection_PostProcess outputs), ssd-raw (box "
                "encodings and scores before NMS), yolo."),
    ]
    for option in options:
        command = option(command)
    return command
