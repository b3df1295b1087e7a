"""Typed settings read from a file or from a person, declared once.

A setting is a ``Field``: its type, default, range, choices and help. A record class is a frozen
dataclass whose fields say the same through ``setting(...)``; ``fields_of`` reads them. ``parse``
checks a mapping against the fields: unknown keys refused (or ignored), required ones present,
each value of its type (with ``coerce``, a person's text brought to it: "0.5", "true", "a,b"),
inside its range and choices, defaults filled in. A wrong value is one ``SchemaError`` that
names the field; the caller says where the mapping came from (a file, a manifest, a flag).

Used by the detection decoders' parameters, the target profiles, the bundle manifest and the
input spec, so each of them declares what it takes instead of checking it by hand.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import sys
import typing
from collections.abc import Mapping, Sequence
from typing import Any


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # the default of a field a mapping must give


class SchemaError(ValueError):
    """One field is wrong: ``key`` names it, ``problem`` says how."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Field:
    """One setting: its name, type (``str``, ``int``, ``float``, ``bool``, ``dict``, ``list``,
    ``tuple[X, ...]``, ``dict[str, str]``, or ``Optional[X]``), default (REQUIRED: the
    mapping must give it), range (``low``..``high``, inclusive), choices and help."""

    name: str
    type: Any
    default: Any = REQUIRED
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        """The field for a person: name, what it takes, its default, its help."""
        takes = "|".join(map(str, self.choices)) if self.choices else _kind(self.type)
        if self.low is not None and self.high is not None:
            takes += f" in {self.low:g}..{self.high:g}"
        elif self.low is not None or self.high is not None:
            takes += f" >= {self.low:g}" if self.low is not None else f" <= {self.high:g}"
        default = "" if self.required else f", default {_show(self.default)}"
        return f"{self.name} ({takes}{default})" + (f": {self.help}" if self.help else "")


def setting(default: Any = dataclasses.MISSING, *, help: str = "", low: float | None = None,
            high: float | None = None, choices: Sequence[Any] = ()) -> Any:
    """A dataclass field carrying its range, choices and help (read back by ``fields_of``)."""
    rule = {"help": help, "low": low, "high": high, "choices": tuple(choices)}
    return dataclasses.field(default=default, metadata={"schema": rule})


@functools.cache
def fields_of(cls: type) -> tuple[Field, ...]:
    """A record class's fields, each with its resolved type and ``setting`` metadata (once per
    class: decoders parse their parameters on every frame)."""
    hints = _type_hints(cls)
    return tuple(Field(f.name, hints[f.name], _default(f), **f.metadata.get("schema", {}))
                 for f in dataclasses.fields(cls) if f.init)


def _type_hints(cls: type) -> dict[str, Any]:
    """The class's field types. Python 3.9 (the NCS2's OpenVINO) cannot evaluate ``X | None``
    written as an annotation: there each side is evaluated and joined as Optional."""
    try:
        return typing.get_type_hints(cls)
    except TypeError:
        namespace = vars(sys.modules[cls.__module__])
        hints = {}
        for klass in reversed(cls.__mro__):
            for name, text in getattr(klass, "__annotations__", {}).items():
                parts = [eval(part, namespace) for part in str(text).split("|")]
                hints[name] = typing.Union[tuple(parts)] if len(parts) > 1 else parts[0]
        return hints


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()  # for describe(): the record makes its own
    return REQUIRED


def describe_all(cls: type) -> list[str]:
    """Each field of a record class for a person (help pages, docs), one line each."""
    return [field.describe() for field in fields_of(cls)]


def parse(fields: Sequence[Field] | type, mapping: Mapping[str, Any], *, coerce: bool = False,
          unknown: str = "refuse", skip: Sequence[str] = ()) -> dict[str, Any]:
    """``mapping``'s values checked against ``fields`` (or a record class's own: then its
    defaults are left to the record), the defaults of a list of fields filled in (copied).
    ``coerce``: values are a person's text, brought to each field's type. ``unknown``:
    "refuse" or "ignore" keys no field has; ``skip``: keys to leave out."""
    declared = fields_of(fields) if isinstance(fields, type) else tuple(fields)
    if not isinstance(mapping, Mapping):
        raise SchemaError("(all)", f"must be a table, not {_value(mapping)}")
    names = {f.name for f in declared}
    if unknown == "refuse":
        extra = [key for key in mapping if key not in names and key not in skip]
        if extra:
            raise SchemaError(str(extra[0]), "unknown field")
    out: dict[str, Any] = {}
    for field in declared:
        if field.name in skip:
            continue
        if field.name not in mapping:
            if field.required:
                raise SchemaError(field.name, "missing")
            if not isinstance(fields, type):  # else the record's own default applies
                out[field.name] = copy.copy(field.default)
            continue
        out[field.name] = check(field, mapping[field.name], coerce)
    return out


def record(cls: type, mapping: Mapping[str, Any], *, coerce: bool = False,
           unknown: str = "refuse", skip: Sequence[str] = ()) -> Any:
    """An instance of the record class ``cls`` from ``mapping`` (see ``parse``)."""
    return cls(**parse(cls, mapping, coerce=coerce, unknown=unknown, skip=skip))


def check(field: Field, value: Any, coerce: bool = False) -> Any:
    """``value`` as ``field`` takes it; SchemaError naming the field when it cannot be."""
    try:
        value = _typed(value, field.type, coerce)
    except (TypeError, ValueError, OverflowError):
        raise SchemaError(field.name, f"must be {_kind(field.type)}, not {_value(value)}") \
            from None
    if field.choices and value not in field.choices:
        raise SchemaError(field.name, f"must be one of {', '.join(map(str, field.choices))}, "
                          f"not {_value(value)}")
    numbers = value if isinstance(value, tuple) else (value,)
    for number in numbers:
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            _in_range(field, number)
    return value


def _in_range(field: Field, number: float) -> None:
    low, high = field.low, field.high
    if low is not None and high is not None and not low <= number <= high:
        raise SchemaError(field.name, f"{number:g} is outside {low:g}..{high:g}")
    if low is not None and number < low:
        raise SchemaError(field.name, f"{number:g} must be {low:g} or more")
    if high is not None and number > high:
        raise SchemaError(field.name, f"{number:g} must be {high:g} or less")


def _optional(hint: Any) -> Any:
    """The X of Optional[X]; None when ``hint`` is not optional."""
    args = typing.get_args(hint)  # Optional[X] and X | None alike
    if typing.get_origin(hint) not in (tuple, dict) and type(None) in args:
        return next(a for a in args if a is not type(None))
    return None


def _typed(value: Any, hint: Any, coerce: bool) -> Any:
    """``value`` as the type ``hint`` names; TypeError or ValueError when it is not one."""
    inner = _optional(hint)
    if inner is not None:
        if value is None or (coerce and isinstance(value, str)
                             and value.strip().lower() in ("none", "")):
            return None
        return _typed(value, inner, coerce)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if coerce and isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else \
                [v for v in text.replace(" ", "").split(",") if v]
        elif coerce and not isinstance(value, (list, tuple)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return tuple(_typed(v, args[0], coerce) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError
        if args and not all(isinstance(v, args[1]) for v in value.values()):
            raise TypeError
        return dict(value)
    if hint is list:
        if not isinstance(value, list):
            raise TypeError
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if coerce and isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if coerce and isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise TypeError
    if isinstance(value, bool):  # a bool is an int to Python, never to a person
        raise TypeError
    if hint is int:
        if isinstance(value, str) and not coerce:
            raise TypeError
        number = float(value)
        if number != int(number):
            raise ValueError
        return int(number)
    if hint is float:
        if isinstance(value, str) and not coerce:
            raise TypeError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        if coerce and isinstance(value, (int, float)):
            return str(value)
        raise TypeError
    raise TypeError(f"the schema has no rule for {hint!r}")


def _kind(hint: Any) -> str:
    """What a type takes, in words."""
    inner = _optional(hint)
    if inner is not None:
        return f"{_kind(inner)} or none"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return {str: "a list of strings", int: "a list of whole numbers",
                float: "a list of numbers"}.get(args[0], "a list")
    if origin is dict:
        return "a table of strings"
    return {str: "a str", int: "a whole number", float: "a finite number",
            bool: "true or false", dict: "a table", list: "a list"}.get(hint, str(hint))


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool, type(None))) \
        else f"a {type(value).__name__}"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
