"""Options records are built by keyword only (``helpers.records.keyword_only``: Python 3.9 has
no ``dataclass(kw_only=True)``), and a default the command line shows is the record's own."""
from __future__ import annotations

import ast
import dataclasses
import importlib

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
    """deploy's --ssh and --release keys fill the records' fields of the same name (what is left
    out takes the record's default, as in the Python API), and each key's help states that
    default: samples (10), keep (3), settle (10), lock_timeout (0), timeout (60), ..."""
    from edgekit.cli.families import FamilyOption
    from edgekit.deploy.fleet import FleetRequest
    from edgekit.deploy.release import DeployRequest
    from edgekit.deploy.ssh import SshOptions

    def defaults(record: type) -> dict[str, object]:
        return {f.name: f.default for f in dataclasses.fields(record)
                if f.default is not dataclasses.MISSING}

    records = {"--ssh": [defaults(SshOptions)],
               "--release": [defaults(DeployRequest), defaults(FleetRequest)]}
    commands = all_commands()
    checked = set()
    for command in ("deploy", "rollback", "playbook", "status"):
        for option in commands[command].params:
            if not isinstance(option, FamilyOption) or option.opts[0] not in records:
                continue
            for key, spec in option.keys.items():
                name = spec.param or key
                if key == "port":  # the host's, not a record field: parse_host(text, port)
                    continue
                found = {d[name] for d in records[option.opts[0]]}
                assert len(found) == 1, (command, key, found)  # the records agree
                default = found.pop()
                if default is not None:
                    shown = f"{default:g}" if isinstance(default, float) else str(default)
                    assert f"({shown})" in spec.help or f"({shown};" in spec.help, \
                        (command, key, spec.help, default)
                checked.add(name)
    assert {"samples", "keep", "settle", "lock_timeout", "timeout", "python", "base"} <= checked
