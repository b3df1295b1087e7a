"""Options shared by several commands, defined once: the same name, metavar, help and checks
everywhere.

``input_spec_options`` (--reference, --resize, --interpolation, --antialias, --color, --mean,
--std) hands the command one ``spec: SpecOptions``; ``detection_options`` (--decoder,
--score-threshold, --iou, --max-detections, --classes, --anchors, --decoder-param) one
``detect: DetectionOptions``. Values are checked as they are parsed, so a bad one stops the
command in one line (exit 2) before any model loads.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from edgekit.errors import UsageError
from edgekit.preprocess import (
    COLORS,
    INTERPOLATIONS,
    REFERENCES,
    RESIZE_HELP,
    SpecOptions,
    check_normalisation,
)
from edgekit.tasks.detection import DECODERS, DetectionOptions


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
        click.option("--std", metavar="LIST", help="Per-channel divisor after the mean "
                     "(tensor = (pixel - mean) / std; 255 for pixels scaled to 0..1)."),
        click.option("--mean", metavar="LIST", help="Per-channel mean subtracted from 0..255 "
                     "pixels (one value, or one per channel)."),
        click.option("--color", type=click.Choice(COLORS), help="Colour order the model "
                     "takes (default: the bundle's; rgb, or gray for one channel)."),
        click.option("--antialias/--no-antialias", default=None, help="Resample with Pillow's "
                     "filters, which widen when shrinking (antialiasing), with PIL's bicubic "
                     "and Lanczos-3: what PIL pipelines and tf.image.resize(antialias=True) "
                     "do. Default: the bundle's; off (OpenCV's filters)."),
        click.option("--interpolation", type=click.Choice(list(INTERPOLATIONS)),
                     help="The resize filter (default: the bundle's; bilinear). nearest is "
                     "PIL's NEAREST, byte for byte."),
        click.option("--resize", metavar="MODE", help="How a picture becomes the input size "
                     f"(default: the bundle's; stretch): {RESIZE_HELP}."),
        click.option("--reference", type=click.Choice(list(REFERENCES)), metavar="NAME",
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
        click.option("--decoder-param", multiple=True, metavar="KEY=VALUE",
                     help="One of the decoder's own parameters (repeatable): edgekit-grid "
                     "size_scale, offset_low, offset_high; yolo layout (NC, CN), objectness, "
                     "num_classes, coordinates, apply_sigmoid; ssd-raw num_layers, min_scale, "
                     "max_scale, aspect_ratios, feature_map_sizes, y_scale..w_scale, "
                     "class_agnostic_nms; ssd class_offset, output_order. An unknown key is "
                     "refused with the decoder's list."),
        click.option("--anchors", metavar="FILE", help="Anchors for raw SSD outputs "
                     "(--decoder ssd-raw): a .npy of shape (N, 4) or text lines 'y_center "
                     "x_center height width', normalised, in the model's output order. "
                     "Default: generated from the SSD anchor parameters."),
        click.option("--classes", metavar="LIST", help="Keep only these classes, by name or "
                     "id, comma-separated (person,dog or 0,16); host decoders drop the others "
                     "before their NMS."),
        click.option("--max-detections", type=click.IntRange(min=1), help="At most this "
                     "many detections per frame (default: the decoder's setting, 100)."),
        click.option("--iou", type=click.FloatRange(0, 1), help="IoU above which NMS drops "
                     "the lower-scoring of two boxes, 0 to 1 (default: the decoder's setting)."),
        click.option("--score-threshold", type=click.FloatRange(0, 1), help="Minimum score "
                     "kept, 0 to 1 (default: the decoder's setting)."),
        click.option("--decoder", type=click.Choice(list(DECODERS)), help="Output decoder "
                     "(default: the bundle's): edgekit-grid (edgekit's own head), ssd "
                     "(TFLite_Detection_PostProcess outputs), ssd-raw (box encodings and "
                     "scores before NMS), yolo."),
    ]
    for option in options:
        command = option(command)
    return command
