"""The ``edgekit`` command line: thin click commands over the library."""
from __future__ import annotations

from edgekit.cli import bench_cmd, convert_cmd, deploy_cmd, run_cmd  # noqa: F401  (register)
from edgekit.cli.app import cli, main

__all__ = ["cli", "main"]
