"""The ``edgekit`` command line: thin click commands over the library."""
from __future__ import annotations

import edgekit.cli.deploy_cmd  # noqa: F401  (registers its commands)
from edgekit.cli import bench_cmd, convert_cmd  # noqa: E402,F401  (register their commands)
from edgekit.cli.app import cli, main

__all__ = ["cli", "main"]
