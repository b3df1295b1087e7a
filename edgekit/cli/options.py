"""The options that mean the same thing in several commands, declared once.

Each has one name, metavar, default and help text wherever it appears (tests/test_cli.py
holds every command to that), and every default is shown one way: click's ``[default: ...]``
(in parentheses where it depends on the model or the machine). Every command takes ``--json``
and ``-q``; every command that prints a table takes ``--markdown`` and ``--csv`` too.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgekit.errors import UsageError
from edgekit.formats import FORMATS

F = TypeVar("F", bound=Callable[..., Any])

BACKEND_NAMES = "tflite, edgetpu, openvino, myriad, onnxruntime, or a third-party one"


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

color = _option(
    "--color", type=click.Choice(["rgb", "bgr", "gray"]),
    show_default="the model card's, else rgb; gray for one channel",
    help="Colour order the model takes.")

mean = _option(
    "--mean", metavar="LIST", show_default="the model card's, else 0",
    help="Per-channel mean subtracted from 0..255 pixels: tensor = (pixel - mean) / std.")

std = _option(
    "--std", metavar="LIST", show_default="the model card's, else 255",
    help="Per-channel divisor after the mean.")

samples = _option(
    "--samples", default=10, type=click.IntRange(min=0), metavar="N",
    help="Validation samples to run and compare with Keras (0: all).")

runs = _option(
    "--runs", default=100, type=click.IntRange(min=1), metavar="N",
    help="Timed inferences per bench row.")

max_frames = _option(
    "--max-frames", type=click.IntRange(min=1), metavar="N", show_default="the whole source",
    help="Stop after this many frames.")

source = _option(
    "--source", required=True, metavar="SOURCE",
    help="Camera index (0), video file, folder of images, stream URL (anything OpenCV's "
         "VideoCapture opens), or picamera2[:N] (a Raspberry Pi camera module, through "
         "Picamera2).")

truth = _option(
    "--truth", type=click.Path(path_type=Path), metavar="FILE",
    show_default="SOURCE.json beside a video or folder",
    help="Ground-truth JSON to score mAP@0.5 against.")

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
    """--json (and for a table --markdown and --csv) as one ``view`` argument: "text",
    "json", "markdown" or "csv"; asking for two is a UsageError."""
    kinds = ("json", "markdown", "csv") if table else ("json",)
    helps = {"json": "Print the same facts as JSON, for machines.",
             "markdown": "Print the table as Markdown.",
             "csv": "Print the table as CSV."}

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            asked = [kind for kind in kinds if kwargs.pop(f"as_{kind}", False)]
            if len(asked) > 1:
                raise UsageError(f"choose one of {', '.join('--' + k for k in asked)}")
            return f(*args, view=asked[0] if asked else "text", **kwargs)

        for kind in reversed(kinds):
            command = click.option(f"--{kind}", f"as_{kind}", is_flag=True,
                                   help=helps[kind])(command)
        return command  # type: ignore[return-value]
    return decorate


json_output = _output_options(table=False)
table_output = _output_options(table=True)
