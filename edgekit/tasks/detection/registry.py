"""The decoders by name, their parameter classes and output roles, and what a person asks for
on top of a bundle's decoder (``DetectionOptions``, ``configure``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.errors import UsageError
from edgekit.helpers.records import keyword_only
from edgekit.tasks.detection.boxes import Detection
from edgekit.tasks.detection.grid import GRID_ROLES, GridParams, decode_edgekit_grid
from edgekit.tasks.detection.params import make_params, own_fields
from edgekit.tasks.detection.ssd import SSD_ROLES, SsdParams, decode_ssd_postprocess
from edgekit.tasks.detection.ssd_raw import (
    SSD_RAW_ROLES,
    RawSsdParams,
    decode_ssd_raw,
    read_anchors,
)
from edgekit.tasks.detection.yolo import YoloParams, decode_yolo

Decoder = Callable[..., "list[Detection]"]
DECODERS: dict[str, Decoder] = {
    "edgekit-grid": decode_edgekit_grid,
    "ssd": decode_ssd_postprocess,
    "ssd-raw": decode_ssd_raw,
    "yolo": decode_yolo,
}
PARAMS: dict[str, type] = {"edgekit-grid": GridParams, "ssd": SsdParams,
                           "ssd-raw": RawSsdParams, "yolo": YoloParams}
OUTPUT_ROLES: dict[str, tuple[str, ...]] = {"edgekit-grid": GRID_ROLES, "ssd": SSD_ROLES,
                                            "ssd-raw": SSD_RAW_ROLES}


def decoder_param_help() -> str:
    """Each decoder's own parameters by name (keys of ``--postprocess``), from their fields."""
    return "; ".join(f"{name} {', '.join(f.name for f in own_fields(cls))}"
                     for name, cls in PARAMS.items())


def describe_params(name: str) -> list[str]:
    """One line per parameter of the decoder ``name``: what it takes, its default, its help."""
    from edgekit.helpers.schema import describe_all

    return describe_all(PARAMS[name])


def decoder_params(decoder: Mapping[str, Any]) -> Any:
    """The parameters object (``GridParams``, ...) of a decoder object, defaults filled in."""
    name = decoder.get("name")
    if name not in PARAMS:
        raise UsageError(f"unknown detection decoder {name!r}; choose from {', '.join(PARAMS)}")
    return make_params(PARAMS[name], decoder, name)


def decode(
    outputs: Sequence[np.ndarray],
    decoder: Mapping[str, Any],
    input_size: tuple[int, int],
    labels: Sequence[str] = (),
) -> list[Detection]:
    """Run the decoder a manifest's ``"decoder"`` object names, with its parameters."""
    name = decoder.get("name")
    if name not in DECODERS:
        raise UsageError(
            f"unknown detection decoder {name!r}; the manifest's decoder \"name\" must be one "
            f"of {', '.join(sorted(DECODERS))}"
        )
    return DECODERS[name](outputs, input_size=input_size, labels=labels, params=decoder)




@keyword_only
@dataclass(frozen=True)
class DetectionOptions:
    """What a person asks for on top of a bundle's decoder (or for a bare detector): None
    keeps the bundle's value (or the decoder's default). ``params`` are the decoder's own
    parameters as KEY=VALUE texts (``--postprocess`` keys)."""

    decoder: str | None = None
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    classes: tuple[str, ...] | None = None
    anchors: str | None = None
    params: tuple[str, ...] = ()

    def given(self) -> dict[str, Any]:
        """The parameters asked for, by the decoder's key."""
        out: dict[str, Any] = {}
        for text in self.params:
            key, sep, value = text.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"decoder_param {text!r}: give KEY=VALUE, e.g. "
                                 "`decoder_param` size_scale=0.5", param="decoder_param")
            out[key.strip()] = value.strip()
        for key in ("score_threshold", "iou_threshold", "max_detections", "classes", "anchors"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


# A decoder parameter as a UsageError names it: the option that sets it, quoted (the CLI shows
# its flag there), else the key itself (a postprocess key on the command line).
FLAG_OF = {"score_threshold": "`score_threshold`", "iou_threshold": "`iou`",
           "max_detections": "`max_detections`", "classes": "`classes`", "anchors": "`anchors`"}


def option_of(key: str) -> str:
    """How a UsageError names the option that sets decoder parameter ``key``."""
    return FLAG_OF.get(key, f"`{key}`")


def configure(decoder: Mapping[str, Any], options: DetectionOptions | None,
              own: str = "bundle") -> tuple[dict[str, Any], dict[str, str]]:
    """The decoder object to use: the model's own (``own`` names where it came from), with
    what ``options`` asks for on top; and where each value came from ("flag", ``own``).

    Everything is checked here, before a frame is read: the decoder's name, each parameter's
    name, type and range, the anchors file. A UsageError says which flag is wrong.
    """
    options = options or DetectionOptions()
    name = options.decoder or decoder.get("name")
    if name not in DECODERS:
        raise UsageError(f"unknown detection decoder {name!r}; choose from "
                         f"{', '.join(DECODERS)}" if options.decoder else
                         f"no detection decoder: give `decoder` ({', '.join(DECODERS)})")
    base = {k: v for k, v in decoder.items() if k not in ("name", "origin")} \
        if decoder.get("name") in (None, name) else {}
    origin = {key: own for key in base}
    given = options.given()
    cls = PARAMS[name]
    known = {f.name for f in fields(cls)}
    for key in given:
        if key not in known:
            flag = option_of(key)
            why = (" (the model ran TFLite_Detection_PostProcess, which did the NMS: there is "
                   "no IoU left to set; give the op's own threshold when converting)"
                   if name == "ssd" and key == "iou_threshold" else
                   " (anchors are for raw SSD outputs: `decoder` ssd-raw)"
                   if key == "anchors" else "")
            raise UsageError(f"{flag}: the {name} decoder has no such parameter{why}; its "
                             f"parameters: {', '.join(sorted(known))}")
    merged = {**base, **given}
    origin.update({key: "flag" for key in given})
    params = make_params(cls, merged, name, UsageError)
    if getattr(params, "anchors", None):
        read_anchors(params.anchors)
    checked = {key: value for key, value in asdict(params).items() if key in merged}
    return {"name": name, **checked}, origin


def with_bundle_files(decoder: Mapping[str, Any], folder: str | Path | None) -> dict[str, Any]:
    """The decoder object with a file it names inside a bundle (``anchors``) made a path
    from here; the manifest keeps it relative, so the bundle can move."""
    out = dict(decoder)
    if folder is not None and out.get("anchors") and not Path(out["anchors"]).is_absolute():
        out["anchors"] = str(Path(folder) / out["anchors"])
    return out


def describe_decoder(decoder: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    """One line: the decoder and its parameters (the shared ones always, the rest when set),
    each with where it came from."""
    name = decoder.get("name", "?")
    p = make_params(PARAMS[name], decoder, name) if name in PARAMS else None
    shown = [k for k in ("score_threshold", "iou_threshold", "max_detections", "classes")
             if p is not None and hasattr(p, k) and (k != "classes" or p.classes)]
    shown += [k for k in decoder if k not in shown and k not in ("name", "origin")]

    def value(key: str) -> str:
        v = getattr(p, key) if p is not None and hasattr(p, key) else decoder[key]
        if isinstance(v, (tuple, list)):
            return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v)

    return f"decoder {name}: " + ", ".join(
        f"{k} {value(k)} ({origin.get(k, 'default')})" for k in shown)


