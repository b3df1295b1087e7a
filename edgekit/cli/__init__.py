"""The ``edgekit`` command line: thin click commands over the library."""
from __future__ import annotations

from edgekit.cli import bench_cmd, convert_cmd, run_cmd  # noqa: E402,F401  (register commands)
from edgekit.cli.app import cli, main

__all__ = ["cli", "main"]
