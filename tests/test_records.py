"""Options records are built by keyword only (``helpers.records.keyword_only``: Python 3.9 has
no ``dataclass(kw_only=True)``), and a default the command line shows is the record's own."""
from __future__ import annotations

import ast
import dataclasses
import importlib

import click
import pytest
from conftest import ROOT

from edgekit.cli.app import all_commands

RECORD_ENDINGS = ("Request", "Options", "Settings", "Bundle", "Rollout")


def _records() -> list[tuple[str, str]]:
    """(module, class) of every dataclass in edgekit/ named as an options record."""
    found = []
    for path in sorted((ROOT / "edgekit").rglob("*.py")):
        if "ansible" in path.parts or "agent" in path.parts:
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith(RECORD_ENDINGS) and any(
                    "dataclass" in ast.unparse(d) for d in node.decorator_list):
                found.append((module, node.name))
    return found


RECORDS = _records()


def test_every_options_record_takes_keywords_only() -> None:
    assert len(RECORDS) >= 14, RECORDS  # DeployRequest, SshOptions, ... found at all
    loose = [f"{module}.{name}" for module, name in RECORDS
             if not getattr(getattr(importlib.import_module(module), name),
                            "__keyword_only__", False)]
    assert not loose, f"decorate with @keyword_only: {loose}"


def test_a_record_filled_by_position_is_refused() -> None:
    from edgekit.deploy.ssh import SshOptions

    with pytest.raises(TypeError, match="SshOptions takes keyword arguments only"):
        SshOptions(None, None, 30.0)  # type: ignore[misc]
    assert SshOptions(timeout=30.0).timeout == 30.0
    assert dataclasses.replace(SshOptions(), timeout=5.0).timeout == 5.0


def test_the_command_line_defaults_are_the_records() -> None:
    """deploy's --samples, --keep, --settle, --lock-timeout and --timeout show what the
    Python API does when they are left out."""
    from edgekit.deploy.release import DeployRequest
    from edgekit.deploy.ssh import SshOptions

    defaults = {f.name: f.default for record in (DeployRequest, SshOptions)
                for f in dataclasses.fields(record) if f.default is not dataclasses.MISSING}
    commands = all_commands()
    checked = set()
    for command in ("deploy", "rollback", "playbook", "status"):
        context = click.Context(commands[command])
        for param in commands[command].params:
            if param.name in defaults and defaults[param.name] is not None:
                shown = param.get_default(context)
                assert shown == defaults[param.name], (command, param.name, shown)
                checked.add(param.name)
    assert {"samples", "keep", "settle", "lock_timeout", "timeout"} <= checked, checked
