"""The command group and the one place where errors become a line and an exit code.

Without ``--debug``: an EdgekitError prints ``error: <what happened and what to
do>`` and exits non-zero; anything unexpected says so in one line; native
libraries' log lines are kept off the console. With ``--debug``: tracebacks and
native logs are shown.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from edgekit import __version__
from edgekit.errors import EdgekitError, UsageError, first_line
from edgekit.helpers.text import printable

_debug = {"on": False}


def debug_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--debug``: the group's option, taken anywhere on the line (before ``--``), so a
    command does not declare it again; each command's help names it in its last line."""
    return f


def _quiet_python_logs() -> None:
    warnings.simplefilter("ignore")
    for name in ("absl", "tensorflow", "keras", "tf2onnx", "openvino", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


# Each command's module, imported only when that command runs (or shows its --help), and its
# line in `edgekit --help` (tests/test_cli.py holds each line to the command's own docstring).
COMMANDS = {
    "backends": ("bench_cmd", "List every backend: usable here or not, runtime version, devices, "
                              "how to fix."),
    "bench": ("bench_cmd", "Time every artifact on every backend that can run it, side by side."),
    "classify": ("bench_cmd", "Classify images with a bundle or a bare .tflite / .onnx / "
                              "OpenVINO .xml."),
    "compare": ("run_cmd", "Run the same frames through each usable backend: one table, "
                           "per-stage latency."),
    "convert": ("convert_cmd", "Convert a Keras model to every edge format, with fidelity per "
                               "artifact."),
    "demo": ("convert_cmd", "The whole path on the bundled examples, into a report folder."),
    "deploy": ("deploy_cmd", "Deploy a bundle to a device over SSH, atomically, and prove it "
                             "runs there."),
    "inspect": ("convert_cmd", "Show what a bundle or a model file holds, without running it."),
    "playbook": ("playbook_cmd", "Write a self-contained Ansible playbook that deploys BUNDLE; "
                                 "send nothing."),
    "rollback": ("rollback_cmd", "Switch a device back to the release before the current one "
                                 "(checked first)."),
    "run": ("run_cmd", "Run the camera loop on a camera, a video, a folder of images or a "
                       "stream."),
    "status": ("status_cmd", "Show a device's releases, environments, service and lock (read "
                             "only)."),
    "targets": ("targets_cmd", "List the device profiles that edgekit deploy --target takes."),
    "verify": ("verify_cmd", "Check a bundle where it lies: file hashes, then a few validation "
                             "samples."),
}


class EdgekitGroup(click.Group):
    from edgekit.cli.families import Command as command_class  # a moved flag: its new spelling

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, its module imported the first time it is asked for."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            importlib.import_module(f"edgekit.cli.{COMMANDS[cmd_name][0]}")  # registers it
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """`edgekit --help`'s list from COMMANDS: no command module is imported for it."""
        width = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.utils.make_default_short_help(COMMANDS[name][1], width)
                 if name in COMMANDS else self.commands[name].get_short_help_str(width))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug anywhere before "--" (before or after the command name) counts.
        cut = args.index("--") if "--" in args else len(args)
        _debug["on"] = "--debug" in args[:cut]
        args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.UsageError as exc:  # e.g. an unknown option before the command
            if _shows_help(exc):
                raise
            click.echo(f"error: {_sentence(exc.format_message())}; see {ctx.info_name} --help",
                       err=True)
            ctx.exit(exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        from edgekit.helpers import interrupt, telemetry

        interrupt.install()
        telemetry.off()  # before any runtime is imported; worker processes inherit it
        if _debug["on"]:
            return super().invoke(ctx)
        _quiet_python_logs()
        from edgekit.helpers.quiet import captured_stderr

        try:
            with captured_stderr():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted()
        except EdgekitError as exc:
            if interrupt.interrupted():  # a runtime turned Ctrl-C into its own error
                _interrupted()
            message = printable(self.flagged(ctx, exc))  # a name in it cannot forge lines
            click.echo(f"error: {message}", err=True)
            ctx.exit(exc.exit_code)
        except click.exceptions.UsageError as exc:  # bad arguments: one line, not three
            if _shows_help(exc):
                raise
            command = f"{ctx.info_name} {exc.ctx.info_name}" if exc.ctx and \
                exc.ctx.info_name != ctx.info_name else ctx.info_name
            click.echo(f"error: {_sentence(exc.format_message())}; see {command} --help",
                       err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:  # `edgekit ... | head`: the reader left; not our failure
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            ctx.exit(0)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if interrupt.interrupted():  # e.g. TensorFlow's SystemError from a KeyboardInterrupt
                _interrupted()
            first = first_line(exc, 300, default="")
            click.echo(f"error: unexpected {type(exc).__name__}: {printable(first)} "
                       "(run again with --debug for the traceback, and please report it)",
                       err=True)
            ctx.exit(1)


    def flagged(self, ctx: click.Context, exc: EdgekitError) -> str:
        """The error's message, with the flag of the parameter it names (the library says
        ``settle``, the command line ``--release settle``): the command's option or family key
        of that name, else the flag a library parameter has under another name."""
        if not isinstance(exc, UsageError):
            return str(exc)
        command = self.get_command(ctx, ctx.invoked_subcommand or "")
        flags: dict[str | None, str] = {}
        for option in command.params if command is not None else []:
            if isinstance(option, click.Option):
                flags[option.name] = max(option.opts, key=len)
                flags.update(getattr(option, "flags", {}))  # a family's keys: "--ssh timeout"
        from edgekit.cli.families import KEY_FLAGS

        return exc.naming(lambda name: flags.get(name) or FLAGS.get(name) or KEY_FLAGS.get(name))


# Library parameters whose flag is not their own name with dashes.
# (A family key names its parameter itself: families.Key.param, KEY_FLAGS.)
FLAGS = {"host": "--host", "folder": "--output", "target": "--target",
         # edgekit run's outputs by kind, events filters, clips settings
         "save_masks": "--save DIR/", "raw_outputs": "--save FILE.npz",
         "jsonl": "--save FILE.jsonl", "events_zone": "--events-filter zone",
         "events_classes": "--events-filter classes", "max_disk": "--clips DIR?max_disk"}


def _interrupted() -> None:
    """Ctrl-C, SIGTERM or SIGHUP: one line ("interrupted", "terminated"), exit 128 + the
    signal, children gone, no slow teardown."""
    from edgekit.helpers import interrupt

    interrupt.leave()


def _shows_help(exc: click.exceptions.UsageError) -> bool:
    """`edgekit` alone prints its help (click raises that as a usage error)."""
    return type(exc).__name__ == "NoArgsIsHelpError"


def _sentence(text: str) -> str:
    """Click's message as the start of one error line: lower-case first word, no end stop."""
    text = printable(" ".join(text.split()).rstrip("."))
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


@click.group(cls=EdgekitGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, expose_value=False,
              help="Show tracebacks and the runtimes' own log lines (taken anywhere on the "
                   "line: edgekit run ... --debug).")
def cli() -> None:
    """Take a trained Keras CNN to the edge.

    \b
    Start with the bundled example:   edgekit demo
    Convert your own model:           edgekit convert model.keras -o bundle/
    Look inside a model or bundle:    edgekit inspect bundle/

    Every command takes --help. Errors print one line that says what to do;
    --debug shows the traceback.
    """


def all_commands() -> dict[str, click.Command]:
    """Every command, each module imported (for tests and tools that look at them all)."""
    return {name: command for name in COMMANDS
            if (command := cli.get_command(click.Context(cli), name)) is not None}


def fail_on_failed_rows(rows: Sequence[tuple[str, str, str]], what: str) -> None:
    """After a table of (label, status, reason) rows: exit 1 when any row failed (0 only when
    every row is ok or skipped), and say so in one line when none succeeded."""
    failed = [(label, reason) for label, status, reason in rows if status == "failed"]
    if not failed:
        return
    if not any(status == "ok" for _, status, _ in rows):
        label, reason = failed[0]
        others = len({r for _, r in failed}) - 1
        detail = reason if not others else \
            f"{label}: {reason} ({others} other reason(s) under the table)"
        raise EdgekitError(f"every {what} that could run failed: {detail}")
    raise EdgekitError(f"{len(failed)} of {len(rows)} {what}s failed "
                       f"({', '.join(label for label, _ in failed)}); the notes under the "
                       "table say why")


def save_plot(plot: Path | None, ran: bool, draw: Callable[[], None], quiet: bool,
              what: str) -> None:
    """Draw the plot asked for when something ran, and say where (or why not)."""
    if plot is None:
        return
    if ran:
        draw()
    if not quiet:
        click.echo(f"plot: {plot}" if ran else f"plot: no {what} ran, so none was drawn",
                   err=True)


def progress_printer(enabled: bool = True) -> Callable[[str], None]:
    """Progress lines on stderr (stdout stays clean for tables and --json)."""
    def show(message: str) -> None:
        if enabled:
            click.echo(f"  {printable(message)}", err=True)
    return show


def main() -> None:
    """The `edgekit` command. Once a command has finished and its output is flushed, the
    process leaves at once: TensorFlow's teardown takes seconds (2.2 s after a convert), and a
    Ctrl-C during it would have reported a finished command as interrupted."""
    import signal

    from edgekit.helpers import interrupt

    try:
        cli.main(prog_name="edgekit")
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # done: a late signal changes nothing
    if code is None:
        code = 0
    elif not isinstance(code, int):
        click.echo(str(code), err=True)
        code = 1
    interrupt.exit_now(code)

