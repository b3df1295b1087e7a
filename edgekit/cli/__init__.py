"""The ``edgekit`` command line: thin click commands over the library, one module per command
group (``*_cmd.py``), each imported only when its command runs (``app.COMMANDS``)."""
from __future__ import annotations

from edgekit.cli.app import cli, main

__all__ = ["cli", "main"]
