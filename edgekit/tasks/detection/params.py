"""The decoders' parameters, declared once per decoder as a frozen dataclass whose fields carry
their range, choices and help (``edgekit.helpers.schema``), and built from a manifest's decoder
object or a person's options: each value coerced to its field's type and checked, an unknown key
refused; the shared fields; the class filter; a decoder's output arrays picked."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError, InvalidModel, UsageError
from edgekit.helpers.schema import Field, SchemaError, fields_of, record, setting


def make_params(cls: type, params: Mapping[str, Any] | None, decoder: str,
                error: type[EdgekitError] = InvalidModel) -> Any:
    """Build the frozen params dataclass ``cls`` from a manifest's decoder object or a
    person's options: its fields (``schema.setting``) say each value's type, range and
    choices (``error``: InvalidModel for a manifest, UsageError for flags)."""
    given = dict(params or {})
    given.pop("name", None)
    given.pop("origin", None)  # where each value came from: for people, not the decoder
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise error(
            f"decoder {decoder!r} has no parameter(s) {', '.join(unknown)}; "
            f"fix the manifest's \"decoder\" object (known: {', '.join(sorted(known))})"
            if error is InvalidModel else
            f"the {decoder} decoder has no parameter {', '.join(unknown)} (its parameters: "
            f"{', '.join(sorted(known))})"
        )
    try:
        built = record(cls, given, coerce=True)  # a manifest may hold "0.5" as text too
    except SchemaError as exc:
        raise error(f"{decoder} {exc.key} {exc.problem}") from None
    _check_roles(built, decoder, error)
    return built


def score_setting(default: float) -> Any:
    """The shared score threshold field (``score_threshold``)."""
    return setting(default, low=0, high=1, help="the lowest score a detection keeps")


def iou_setting(default: float) -> Any:
    """The shared NMS threshold field (``iou``)."""
    return setting(default, low=0, high=1,
                   help="boxes of a class overlapping more than this are suppressed")


def max_detections_setting(default: int = 100) -> Any:
    """The shared cap on detections per frame (``max_detections``)."""
    return setting(default, low=1, help="at most this many detections per frame")


def classes_setting() -> Any:
    """The shared class filter (``classes``)."""
    return setting((), help="keep only these classes, by label or id")


def output_order_setting(roles: tuple[str, ...]) -> Any:
    """The roles of the outputs in the model's order, when their shapes do not tell."""
    return setting(None, help=f"the role of each output in the model's order "
                              f"({', '.join(roles)}), when their shapes do not tell")


SHARED = ("score_threshold", "iou_threshold", "max_detections", "classes", "anchors")  # flags


def own_fields(cls: type) -> list[Field]:
    """A decoder's own parameters: those without a flag of their own."""
    return [f for f in fields_of(cls) if f.name not in SHARED]


def _check_roles(p: Any, decoder: str, error: type[EdgekitError]) -> None:
    """The output roles named once each (one field against the class's roles)."""
    roles = getattr(p, "output_roles", None)  # the decoder's outputs, by role
    order = getattr(p, "output_order", None)
    if roles and order is not None and sorted(order) != sorted(roles):
        raise error(f"{decoder} output_order names the role of each output in the model's "
                    f"order: each of {', '.join(roles)} once, not {','.join(order)}")


def class_filter(classes: Sequence[str | int], labels: Sequence[str]) -> frozenset[int] | None:
    """The class ids ``classes`` names (by label or id); None for no filter. A name that is
    no label is a UsageError that lists some of them."""
    if not classes:
        return None
    ids = set()
    lowered = [label.lower() for label in labels]
    for item in classes:
        text = str(item).strip()
        if text.isdigit():
            if labels and int(text) >= len(labels):
                raise UsageError(f"classes {text}: this model's labels number its classes "
                                 f"0 to {len(labels) - 1}", param="classes")
            ids.add(int(text))
        elif text in labels:
            ids.add(list(labels).index(text))
        elif text.lower() in lowered:
            ids.add(lowered.index(text.lower()))
        else:
            known = [f"{i} {name}" for i, name in enumerate(labels) if name][:12]
            more = ", ..." if len([n for n in labels if n]) > 12 else ""
            raise UsageError(
                f"classes {text!r} is not a class of this model ("
                + (", ".join(known) + more if known else "it has no labels: give ids, or "
                   "`labels`") + ")", param="classes")
    return frozenset(ids)


def pick_outputs(outputs: Sequence[np.ndarray], decoder: str, count: int) -> list[np.ndarray]:
    """The outputs as float arrays, checked to be ``count`` tensors."""
    arrays = [np.asarray(o, np.float32) for o in outputs]
    if len(arrays) != count:
        raise InvalidModel(
            f"decoder {decoder!r} expects {count} output tensor(s), the model gave "
            f"{len(arrays)} with shapes {[a.shape for a in arrays]}; pick the decoder that "
            "matches the model in its manifest"
        )
    return arrays


