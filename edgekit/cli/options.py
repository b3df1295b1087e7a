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
from edgekit.cli.families import Key, family, option
from edgekit.errors import UsageError
from edgekit.preprocess import (
    COLORS,
    INTERPOLATIONS,
    REFERENCES,
    SpecOptions,
    check_normalisation,
)
from edgekit.tasks.base import TASKS
from edgekit.tasks.detection import DECODERS, DetectionOptions

F = TypeVar("F", bound=Callable[..., Any])



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
    show_default="the first usable one that runs the model",
    help="Backend: tflite, openvino, onnxruntime, edgetpu, myriad, ... (edgekit backends).")

backends = _option(
    "--backends", "backend_list", metavar="LIST", show_default="every registered backend",
    help="Comma-separated backends, each optionally NAME:FORMAT for one artifact, e.g. "
         "tflite,openvino:tflite-int8.")

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


top_k = _option(
    "-k", "--top-k", default=5, type=click.IntRange(min=1), metavar="K",
    help="The best classes to show per image (at most the model's class count).")

runs = _option(
    "--runs", default=100, type=click.IntRange(min=1), metavar="N",
    help="Timed inferences per bench row.")

source = _option(
    "--source", required=True, metavar="SOURCE",
    help="Camera index (0), video, folder of images, stream URL, picamera2[:N], imx500[:N] "
         "or env:NAME (docs/loop.md).")

plot = _option(
    "--plot", type=click.Path(path_type=Path), metavar="FILE.png",
    help="Also draw the latency distributions (and figures) to this PNG, SVG or PDF (needs "
         "matplotlib).")

output = _option(
    "-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path), metavar="DIR",
    help="Folder to write into: the bundle (built aside, renamed into place at the end).")

quiet = _option("-q", "--quiet", is_flag=True,
                help="Only the result: no progress lines.")


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
            command = option("--table", "as_table", type=click.Choice(["markdown", "csv"]),
                             help="Print the table as Markdown or CSV.",
                             moved={"--markdown": "--table markdown",
                                    "--csv": "--table csv"})(command)
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




# --- the families: one repeatable --NAME KEY=VALUE option per group of settings ---------------
# Each is declared once; a command that takes one says which of its keys it uses (``uses``),
# and a key it would ignore is refused in one line, exit 2.

def _on_off(text: str) -> bool:
    if text.lower() in ("on", "yes", "true", "1"):
        return True
    if text.lower() in ("off", "no", "false", "0"):
        return False
    raise ValueError(f"{text!r}: give on or off")


def _numbers(what: str) -> Callable[[str], tuple[float, ...]]:
    def convert(text: str) -> tuple[float, ...]:
        try:
            values = numbers(text, what)
        except UsageError as exc:  # the family names the key: "--preprocess std: 0: ..."
            raise ValueError(str(exc).removeprefix(f"--preprocess {what} ")) from None
        return values or ()
    return convert


def _classes(text: str) -> tuple[str, ...]:
    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    if not classes:
        raise ValueError("give class names or ids, comma-separated: person,dog or 0,16")
    return classes


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v)
    except ValueError:
        raise ValueError(f"give H,W,C (e.g. 224,224,3), not {text!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"give three positive sizes H,W,C, not {text!r}")
    return dims



PREPROCESS_KEYS: dict[str, Key] = {
    "reference": Key("a known pipeline's values", click.Choice(list(REFERENCES)), "NAME"),
    "resize": Key("stretch, letterbox, center-crop[:F], shorter-side[:N]", metavar="MODE"),
    "interpolation": Key(", ".join(INTERPOLATIONS), click.Choice(list(INTERPOLATIONS)),
                         "FILTER"),
    "antialias": Key("Pillow's filters", _on_off, "on|off"),
    "color": Key("colour order", click.Choice(COLORS), "|".join(COLORS)),
    "mean": Key("subtracted from pixels", _numbers("mean"), "LIST"),
    "std": Key("divisor after it", _numbers("std"), "LIST"),
}
PREPROCESS_HELP = "Input pre-processing (docs/preprocessing.md)."


def _decoder_keys() -> dict[str, Key]:
    """Each decoder's own parameters, by name (checked against the decoder when it is known)."""
    from edgekit.tasks.detection.params import own_fields
    from edgekit.tasks.detection.registry import PARAMS

    names = dict.fromkeys(f.name for cls in PARAMS.values() for f in own_fields(cls))
    return {name: Key("", metavar="VALUE") for name in names}


DECODER_KEYS = tuple(_decoder_keys())
POSTPROCESS_KEYS: dict[str, Key] = {
    "task": Key("what the outputs mean",
                click.Choice(list(TASKS)), "TASK"),
    "top_k": Key("classes shown, 5", click.IntRange(min=1), "K"),
    "smooth": Key("frames averaged, 1", click.IntRange(min=1), "N"),
    "decoder": Key(", ".join(DECODERS), click.Choice(list(DECODERS)), "NAME"),
    "score_threshold": Key("minimum score", Finite(0, 1), "X"),
    "iou": Key("NMS overlap", Finite(0, 1), "X"),
    "max_detections": Key("boxes per frame", click.IntRange(min=1), "N"),
    "classes": Key("names or ids kept", _classes, "LIST"),
    "anchors": Key("ssd-raw's anchors", metavar="FILE"),
    "labels": Key("a bare model's labels", click.Path(path_type=Path), "FILE"),
    **_decoder_keys(),
}
POSTPROCESS_HELP = "Decoding the outputs (docs/preprocessing.md; decoder parameters too)."

INFER_KEYS: dict[str, Key] = {
    "device": Key("CPU, GPU, NPU, AUTO, usb[:N], pci[:N]", metavar="DEVICE"),
    "threads": Key("CPU threads", click.IntRange(min=1), "N"),
    "mode": Key("what to tune for", click.Choice(["latency",
                "throughput"]), "latency|throughput"),
    "requests": Key("in flight at once", int, "N"),
    "streams": Key("OpenVINO's streams", int, "N"),
    "format": Key("the bundle's artifact", click.Choice(list(FORMATS)), "FORMAT"),
}
INFER_HELP = "How the backend runs it (docs/backends.md)."

QUANTIZE_KEYS: dict[str, Key] = {
    "int8_io": Key("int8 model's I/O type",
                   click.Choice(["int8", "uint8"]), "int8|uint8"),
    "min_agreement": Key("fidelity bar", Finite(0, 1), "X"),
    "remedy": Key("try fixes below the bar", _on_off, "on|off"),
}
LOAD_KEYS: dict[str, Key] = {
    "import": Key("custom layers' module", metavar="MODULE",
                  multiple=True),
    "trust_model": Key("allow Lambda code", _on_off, "on|off"),
    "input_shape": Key("a fixed input size", _shape, "H,W,C"),
}


def _family_of(flag: str, keys: dict[str, Key], help: str, renames: dict[str, str],
               build: Callable[[dict[str, Any], frozenset[str]], dict[str, Any]],
               moved: dict[str, str] | None = None) -> Callable[..., Callable[[F], F]]:
    """A family declared once: ``decorator(uses)`` adds it to a command, which receives what
    ``build(found, uses)`` makes of the keys given (``family(..., uses=)`` refuses the
    others)."""
    dest = flag.lstrip("-")

    def decorator(uses: tuple[str, ...] | None = None) -> Callable[[F], F]:
        used = frozenset(uses or keys)
        add = family(flag, dest, keys, help, renamed=renames, uses=used, moved=moved)

        def decorate(f: F) -> F:
            @functools.wraps(f)
            def command(*args: Any, **kwargs: Any) -> Any:
                kwargs.update(build(kwargs.pop(dest), used))
                return f(*args, **kwargs)

            command.__click_params__ = list(getattr(f, "__click_params__", []))
            return add(command)  # type: ignore[return-value]
        return decorate
    return decorator


def _spec(found: dict[str, Any], used: frozenset[str]) -> dict[str, Any]:
    return {"spec": SpecOptions(**found)}


def _post(found: dict[str, Any], used: frozenset[str]) -> dict[str, Any]:
    shared = {"decoder", "score_threshold", "iou", "max_detections", "classes", "anchors"}
    own = tuple(f"{k}={v}" for k, v in found.items() if k not in shared and k not in
                ("task", "top_k", "smooth", "labels"))
    detect = DetectionOptions(
        decoder=found.get("decoder"), score_threshold=found.get("score_threshold"),
        iou_threshold=found.get("iou"), max_detections=found.get("max_detections"),
        classes=found.get("classes"), anchors=found.get("anchors"), params=own)
    detect.given()
    out: dict[str, Any] = {"detect": detect}
    defaults = {"task": None, "top_k": 5, "smooth": 1, "labels": None}
    out.update({k: found.get(k, d) for k, d in defaults.items() if k in used})
    return out


def _infer(found: dict[str, Any], used: frozenset[str]) -> dict[str, Any]:
    defaults = {"device": None, "threads": None, "mode": "latency", "requests": None,
                "streams": None, "format": None}
    out = {k: found.get(k, d) for k, d in defaults.items() if k in used}
    if "format" in out:  # the library's parameter is fmt
        out["fmt"] = out.pop("format")
    return out


def _quantize(found: dict[str, Any], used: frozenset[str]) -> dict[str, Any]:
    return {"int8_io": found.get("int8_io", "int8"),
            "min_agreement": found.get("min_agreement"), "remedy": found.get("remedy", True)}


def _load(found: dict[str, Any], used: frozenset[str]) -> dict[str, Any]:
    return {"imports": found.get("import", ()), "trust_model": found.get("trust_model", False),
            "input_shape": found.get("input_shape")}


preprocess = _family_of("--preprocess", PREPROCESS_KEYS, PREPROCESS_HELP, {
    f"--{k}": k for k in PREPROCESS_KEYS}, _spec,
    {"--no-antialias": "--preprocess antialias=off"})
postprocess = _family_of("--postprocess", POSTPROCESS_KEYS, POSTPROCESS_HELP, {
    "--task": "task", "--top-k": "top_k", "--smooth": "smooth", "--decoder": "decoder",
    "--score-threshold": "score_threshold", "--iou": "iou",
    "--max-detections": "max_detections", "--classes": "classes", "--anchors": "anchors",
    "--labels": "labels"}, _post,
    {"--decoder-param": "--postprocess KEY=VALUE (each decoder parameter is a key)"})
infer = _family_of("--infer", INFER_KEYS, INFER_HELP, {f"--{k}": k for k in INFER_KEYS}, _infer)
quantize = _family_of("--quantize", QUANTIZE_KEYS, "Int8 and fidelity (docs/convert.md).", {
    "--int8-io": "int8_io", "--min-agreement": "min_agreement"}, _quantize,
    {"--no-remedy": "--quantize remedy=off"})
load = _family_of("--load", LOAD_KEYS, "Loading Keras (docs/convert.md).", {
    "--import": "import", "--trust-model": "trust_model", "--input-shape": "input_shape"}, _load)
