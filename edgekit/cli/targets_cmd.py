"""``edgekit targets``: the device profiles."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.cli import options
from edgekit.cli.app import cli, debug_option


@cli.command()
@options.table_output
@options.quiet
@debug_option
def targets(view: str, quiet: bool) -> None:
    """List the device profiles that edgekit deploy --target takes.

    \b
    Built-in profiles live in the repository's targets/ folder (inside the
    package once installed); your own go in ~/.config/edgekit/targets/NAME.toml
    (a file there replaces a built-in one of the same name), or pass a file
    directly: edgekit deploy ... --target ./my-device.toml
    """
    from edgekit.deploy.targets import list_targets, user_dir
    from edgekit.helpers.render import render_table

    found = list_targets()
    if view == "json":
        click.echo(json.dumps([t.to_dict() for t in found], indent=2))
        return
    def where(t) -> str:  # built-in, or the user's own file
        if t.origin == "built-in" or t.path is None:
            return t.origin or "-"
        return str(t.path).replace(str(Path.home()), "~", 1)

    rows = [[t.name, t.description, t.arch, f"{t.python}", t.tflite_runtime.split(" (")[0],
             ", ".join(t.formats), t.runs_on, where(t)] for t in found]
    click.echo(render_table(["target", "device", "arch", "python", "tflite runtime", "formats",
                             "backend", "from"], rows, view))
    if view == "text" and not quiet:
        click.echo(f"\nyour own profiles: {user_dir()}/NAME.toml; details: edgekit targets "
                   "--json")
