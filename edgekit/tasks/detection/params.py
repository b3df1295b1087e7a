"""The decoders' parameters, declared once per decoder as a frozen dataclass and built from a
manifest's decoder object or a person's options: each value coerced to its field's type and
checked, an unknown key refused; the class filter; a decoder's output arrays picked."""
from __future__ import annotations

import functools
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError, InvalidModel, UsageError


def make_params(cls: type, params: Mapping[str, Any] | None, decoder: str,
                error: type[EdgekitError] = InvalidModel) -> Any:
    """Build the frozen params dataclass ``cls`` from a manifest's decoder object, each value
    brought to its field's type and checked (``error``: InvalidModel for a manifest,
    UsageError for flags)."""
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
    hints = _type_hints(cls)
    values = {key: _coerce(value, hints[key], f"{decoder} {key}", error)
              for key, value in given.items()}
    built = cls(**values)
    _check_common(built, decoder, error)
    return built


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The field types of a params class (resolved once: decoders run on every frame)."""
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, what: str, error: type[EdgekitError]) -> Any:
    """A JSON value or a flag's text as the type ``hint`` names (bool, int, float, str, a
    tuple of those, or None where the hint allows it); ``error`` when it is not one."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        item = args[0]
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else \
                [v for v in text.replace(" ", "").split(",") if v]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return tuple(_coerce(v, item, what, error) for v in items)
    try:
        if hint is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            if isinstance(value, bool):
                return value
            raise ValueError
        if hint is int:
            number = float(value)
            if number != int(number) or isinstance(value, bool):
                raise ValueError
            return int(number)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int("inf")
        kind = {bool: "true or false", int: "a whole number", float: "a finite number"}.get(
            hint, "text")
        raise error(f"{what} takes {kind}, not {value!r}") from None


def _check_common(p: Any, decoder: str, error: type[EdgekitError]) -> None:
    """The shared parameters in range: scores and IoU 0..1, at least one detection."""
    for key in ("score_threshold", "iou_threshold"):
        value = getattr(p, key, None)
        if value is not None and not 0 <= value <= 1:
            raise error(f"{decoder} {key} {value:g} is outside 0..1")
    if getattr(p, "max_detections", 1) < 1:
        raise error(f"{decoder} max_detections {p.max_detections} must be 1 or more")
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


