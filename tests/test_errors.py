"""The one helper that turns a runtime's multi-line exception into an error line's detail."""
from __future__ import annotations

from edgekit.errors import first_line


def test_first_line_of_a_runtime_dump() -> None:
    exc = RuntimeError("\n  Exception from src/core.cpp:84:\nCheck 'x' failed\n")
    assert first_line(exc) == "Exception from src/core.cpp:84:"
    assert first_line(exc, 9) == "Exception"


def test_empty_message_gives_the_type_or_the_default() -> None:
    assert first_line(ValueError()) == "ValueError"
    assert first_line(ValueError("  \n "), default="") == ""
