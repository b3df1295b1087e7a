"""The ``edgekit`` command line: thin click commands over the library."""
from __future__ import annotations

from edgekit.cli import convert_cmd  # noqa: E402,F401  (registers its commands on cli)
from edgekit.cli.app import cli, main

__all__ = ["cli", "main"]
