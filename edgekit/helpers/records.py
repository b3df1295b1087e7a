"""Options records built by keyword only.

``@dataclass(kw_only=True)`` needs Python 3.10 and edgekit runs on 3.9, so ``keyword_only``
puts a keyword-only ``__init__`` in front of the dataclass's own: a record with many fields is
never filled by position (where adding a field would silently shift the others), and its
defaults stay where the dataclass declares them.
"""
from __future__ import annotations

import functools
from typing import Any, TypeVar

T = TypeVar("T")


def keyword_only(cls: type[T]) -> type[T]:
    """Make ``cls`` (a dataclass) refuse positional arguments with a TypeError."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            raise TypeError(f"{cls.__name__} takes keyword arguments only "
                            f"({len(args)} given by position)")
        init(self, **kwargs)

    cls.__init__ = __init__  # type: ignore[assignment,method-assign]
    cls.__keyword_only__ = True  # type: ignore[attr-defined]
    return cls
