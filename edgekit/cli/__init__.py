"""The ``edgekit`` command line: thin click commands over the library."""
from __future__ import annotations

from edgekit.cli import (  # noqa: F401  (register)
    bench_cmd,
    convert_cmd,
    deploy_cmd,
    playbook_cmd,
    rollback_cmd,
    run_cmd,
    status_cmd,
    targets_cmd,
    verify_cmd,
)
from edgekit.cli.app import cli, main

__all__ = ["cli", "main"]
