"""One CLI: every command takes --json and -q (and --debug, anywhere on the line), every command
that prints a table takes --table markdown|csv, and an option that appears in several commands
has one name, metavar, default and help text (edgekit/cli/options.py declares those once);
defaults are shown one way, by click's [default: ...]."""
from __future__ import annotations

import ast
import re
from collections import defaultdict

import click
import pytest
from conftest import ROOT, run_cli

from edgekit.cli.app import all_commands

# Commands whose result is a table (or tables): they take --table markdown|csv too.
TABLES = {"backends", "bench", "classify", "compare", "convert", "demo", "inspect", "run",
          "targets"}
# Commands whose result is a report of another shape: --json only.
REPORTS = {"verify", "deploy", "status", "rollback", "playbook"}
# Options that share a name across commands but not a meaning, and why.
DIFFERENT = {"--output": "convert writes one bundle there, demo a bundle per example and a "
                         "report",
             "--release": "each device command takes the keys it uses",
             "--ssh": "playbook takes no port: the inventory names each host's",
             "--capture": "the same keys; run has three compare has not (repeat, pipeline, "
                          "queue)",
             "--infer": "one declaration of the keys; each command's help lists those it uses",
             "--postprocess": "one declaration of the keys; each command's help lists those it "
                              "uses"}


def _commands() -> dict[str, click.Command]:
    return all_commands()


def test_every_command_is_classified() -> None:
    assert set(_commands()) == TABLES | REPORTS


@pytest.mark.parametrize("name", sorted(TABLES | REPORTS))
def test_every_command_takes_json_and_quiet_and_tables_a_table_format(name: str) -> None:
    flags = {opt for p in _commands()[name].params for opt in p.opts}
    assert {"--json", "-q", "--quiet"} <= flags
    assert ("--table" in flags) == (name in TABLES)


def test_debug_is_taken_anywhere_and_a_moved_flag_names_its_new_spelling() -> None:
    from click.testing import CliRunner

    from edgekit.cli import cli

    assert "--debug anywhere on the line" in CliRunner().invoke(cli, ["targets", "--help"]).output
    shown = run_cli("targets", "--debug", "--table", "csv")
    assert shown.returncode == 0 and shown.stdout.startswith("target,"), shown.stderr
    moved = run_cli("targets", "--markdown")
    assert moved.returncode == 2
    assert moved.stderr.strip() == ("error: --markdown is now --table markdown; see edgekit "
                                    "targets --help")


def test_the_same_option_means_the_same_everywhere() -> None:
    seen: dict[str, list[tuple[str, click.Parameter]]] = defaultdict(list)
    for name, command in _commands().items():
        for param in command.params:
            if isinstance(param, click.Option):
                seen[max(param.opts, key=len)].append((name, param))
    shared = {opt: uses for opt, uses in seen.items() if len(uses) > 1}
    shared_opts = {o for uses in shared.values() for _, p in uses for o in p.opts}
    assert {"--backend", "--backends", "--infer", "--preprocess", "--postprocess", "--format",
            "--labels", "--json", "-q", "--quiet", "--host", "--ssh", "--release",
            "--rollout"} - shared_opts == set()
    for opt, uses in shared.items():
        first_name, first = uses[0]
        for name, param in uses[1:]:
            where = f"{opt} in {first_name} and {name}"
            assert param.opts == first.opts and param.metavar == first.metavar, where
            assert param.type.to_info_dict() == first.type.to_info_dict(), where
            if opt not in DIFFERENT:
                assert param.help == first.help, where
                if not (param.required or first.required):
                    assert param.default == first.default, where
                    assert param.show_default == first.show_default, where


def test_defaults_are_shown_one_way() -> None:
    """Every default is click's [default: ...]; no help text spells out a default itself."""
    for name, command in _commands().items():
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag or param.opts == ["--help"]:
                continue
            where = f"{name} {param.opts[0]}"
            assert "(default" not in (param.help or "").lower(), where
            assert "default:" not in (param.help or "").lower(), where
            unset = param.default is None or repr(param.default) == "Sentinel.UNSET"
            if not unset and not param.required and not param.multiple:
                assert param.show_default, where


def test_two_output_formats_are_refused() -> None:
    result = run_cli("targets", "--json", "--table", "csv")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: choose one of --json, --table csv"


@pytest.mark.parametrize("view", ["--json", "markdown", "csv"])
def test_targets_and_backends_in_every_view(view: str) -> None:
    import csv
    import io
    import json

    for command in ("targets", "backends"):
        result = run_cli(command, *([view] if view == "--json" else ["--table", view]))
        assert result.returncode == 0, result.stderr
        out = result.stdout
        if view == "--json":
            assert isinstance(json.loads(out), list)
        elif view == "csv":
            rows = list(csv.reader(io.StringIO(out)))
            assert len(rows) > 3 and len({len(r) for r in rows}) == 1
        else:
            assert out.splitlines()[1].startswith("|---|")
    listed = run_cli("targets")
    assert listed.returncode == 0, listed.stderr
    assert all(line.rstrip().endswith("built-in") for line in listed.stdout.splitlines()[2:6])


def test_the_library_names_parameters_and_the_command_line_their_flags(tmp_path) -> None:
    """A bad value: the Python API names the parameter it was given as (``host``, ``settle``),
    the command line the flag (``--host``, ``--inventory``): the library's UsageError carries
    ``param``, and the CLI puts the flag in its place."""
    from edgekit.backends.base import Concurrency
    from edgekit.deploy.inventory import check_inventory
    from edgekit.deploy.release import check_waits
    from edgekit.deploy.ssh import parse_host
    from edgekit.errors import UsageError

    missing = tmp_path / "none.ini"
    for call, said in ((lambda: parse_host("pi@x:22"), "host takes USER@HOST, not 'pi@x:22'"),
                       (lambda: check_inventory(missing), f"inventory {missing}: no such file"),
                       (lambda: check_waits(-1, 0), "settle (seconds) must be a finite"),
                       (lambda: Concurrency(mode="fast"), "mode 'fast' is unknown")):
        with pytest.raises(UsageError) as raised:
            call()
        assert str(raised.value).startswith(said) and "--" not in str(raised.value)
    for args, said in ((("status", "--host", "pi@x:22"), "--host takes USER@HOST, not"),
                       (("status", "--inventory", missing), f"--inventory {missing}: no such")):
        result = run_cli(*args)
        assert result.returncode == 2 and result.stderr.startswith(f"error: {said}"), \
            result.stderr


def test_library_errors_quote_parameters_and_the_command_line_shows_flags(lenet_bundle) -> None:
    """A parameter named inside a message is quoted (`requests`); the CLI shows its flag."""
    from edgekit.backends import check_concurrency
    from edgekit.backends.base import Concurrency
    from edgekit.backends.tflite import TFLiteBackend
    from edgekit.errors import UsageError

    with pytest.raises(UsageError) as raised:
        check_concurrency(TFLiteBackend, Concurrency(mode="throughput", streams=2))
    assert str(raised.value).startswith("streams: the tflite backend has no execution streams")
    assert "use `requests` N" in str(raised.value) and "--" not in str(raised.value)
    assert raised.value.naming().endswith("use --requests N to keep N inferences in flight")
    result = run_cli("bench", lenet_bundle, "--backends", "tflite", "--infer",
                     "mode=throughput,streams=2", "-q")
    assert result.returncode == 2 and result.stderr.startswith(
        "error: --infer streams: the tflite"), result.stderr
    assert "use --infer requests N" in result.stderr and "`" not in result.stderr, result.stderr


LIBRARY_FLAG = re.compile(r"(?<![\w-])--[a-z]")


def test_no_library_error_names_a_flag() -> None:
    """Outside cli/, a UsageError's message names parameters (``param=``, or quoted as
    `name`), never ``--flags``: a Python caller never passed one. A command quoted whole in
    backticks (`ansible-inventory -i FILE --list`) is another program's, and may."""
    found = []
    for path in sorted((ROOT / "edgekit").rglob("*.py")):
        parts = path.relative_to(ROOT / "edgekit").parts
        if parts[0] == "cli" or "ansible" in parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and getattr(
                    node.func, "id", getattr(node.func, "attr", None)) == "UsageError"):
                continue
            text = "".join(c.value for c in ast.walk(node.args[0])
                           if isinstance(c, ast.Constant) and isinstance(c.value, str))
            if LIBRARY_FLAG.search(re.sub(r"`[^`]*`", "", text)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:80]}")
    assert not found, "\n".join(found)


def test_help_lists_every_command_without_importing_them() -> None:
    """`edgekit --help` comes from app.COMMANDS: each line is the command's own first line, and
    no command module (nor numpy) is imported to print it."""
    import subprocess
    import sys

    from edgekit.cli.app import COMMANDS

    for name, command in all_commands().items():
        assert COMMANDS[name][1] == command.get_short_help_str(limit=200), name
    probe = ("import sys; from edgekit.cli import cli; from click.testing import CliRunner; "
             "out = CliRunner().invoke(cli, ['--help']).output; "
             "print(sorted(m for m in sys.modules if m.endswith('_cmd') or m == 'numpy')); "
             "print(out)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    first, _, text = done.stdout.partition("\n")
    assert first == "[]", first
    assert all(f"  {name} " in text for name in COMMANDS)


MAX_OPTIONS = 15  # per command, --json, -q, --table and --help included (--debug is the group's)
MAX_HELP_LINES = 50  # one screen, 80 columns
# Commands still over a limit: {command: what it has now}, with the issue that cuts it (22).
# A count may only go down, and a command under the limit must leave the table.
TOO_MANY_OPTIONS: dict[str, int] = {}
TOO_LONG_HELP: dict[str, int] = {}


def _counts() -> dict[str, tuple[int, int]]:
    """(options, --help lines) of every command, from click's own view of it."""
    from click.testing import CliRunner

    from edgekit.cli import cli

    found = {}
    for name, command in all_commands().items():
        params = command.get_params(click.Context(command, info_name=name))
        help_text = CliRunner().invoke(cli, [name, "--help"], terminal_width=80).output
        found[name] = (sum(isinstance(p, click.Option) for p in params),
                       len(help_text.splitlines()))
    return found


def test_no_command_takes_more_than_15_options_or_a_screen_of_help() -> None:
    counts = _counts()
    for limit, table, index in ((MAX_OPTIONS, TOO_MANY_OPTIONS, 0),
                                (MAX_HELP_LINES, TOO_LONG_HELP, 1)):
        over = {name: c[index] for name, c in counts.items() if c[index] > limit}
        grown = {n: (c, table.get(n)) for n, c in over.items() if c > table.get(n, limit)}
        assert not grown, f"over {limit} (now, allowed): {grown}"
        fixed = {n: over.get(n) for n in table if over.get(n) != table[n]}
        assert not fixed, f"cut: lower (or remove) their entries: {fixed}"
