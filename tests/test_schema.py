"""The schema helper: one declaration per setting (type, range, choices, default, help), and
``parse`` giving one error that names the field."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgekit.helpers.schema import Field, SchemaError, describe_all, parse, record, setting


@dataclass(frozen=True)
class Knobs:
    ratio: float = setting(0.5, low=0, high=1, help="a share")
    count: int = setting(3, low=1)
    mode: str = setting("auto", choices=("auto", "fast"))
    names: tuple[str, ...] = ()
    limit: int | None = None
    flag: bool = False


def test_a_record_from_text_and_from_typed_values() -> None:
    assert record(Knobs, {"ratio": "0.25", "names": "a,b", "limit": "none", "flag": "yes"},
                  coerce=True) == Knobs(ratio=0.25, names=("a", "b"), flag=True)
    assert record(Knobs, {"count": 2.0, "names": ["x"]}) == Knobs(count=2, names=("x",))


@pytest.mark.parametrize(("given", "coerce", "key", "problem"), [
    ({"ratio": 1.5}, False, "ratio", "1.5 is outside 0..1"),
    ({"count": 0}, False, "count", "0 must be 1 or more"),
    ({"count": 2.5}, False, "count", "must be a whole number, not 2.5"),
    ({"count": "2"}, False, "count", "must be a whole number, not '2'"),  # a file says 2
    ({"count": True}, True, "count", "must be a whole number, not True"),
    ({"ratio": "nan"}, True, "ratio", "must be a finite number, not 'nan'"),
    ({"mode": "slow"}, False, "mode", "must be one of auto, fast, not 'slow'"),
    ({"names": "a"}, False, "names", "must be a list of strings, not 'a'"),
    ({"flag": "perhaps"}, True, "flag", "must be true or false, not 'perhaps'"),
    ({"colour": "red"}, False, "colour", "unknown field"),
])
def test_a_wrong_value_names_its_field(given: dict, coerce: bool, key: str,
                                       problem: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse(Knobs, given, coerce=coerce)
    assert (caught.value.key, caught.value.problem) == (key, problem)
    assert str(caught.value) == f"{key}: {problem}"


def test_required_fields_unknown_keys_ignored_and_help() -> None:
    fields = [Field("name", str), Field("files", dict, {})]
    with pytest.raises(SchemaError, match="name: missing"):
        parse(fields, {"files": {}})
    assert parse(fields, {"name": "x", "later": 1}, unknown="ignore") == {"name": "x", "files": {}}
    with pytest.raises(SchemaError, match="files: must be a table, not a list"):
        parse(fields, {"name": "x", "files": []})
    assert describe_all(Knobs)[0] == "ratio (a finite number in 0..1, default 0.5): a share"
