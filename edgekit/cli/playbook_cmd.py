"""``edgekit playbook``: the fleet deploy as a self-contained Ansible playbook folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgekit.cli import device_options as dev
from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, progress_printer
from edgekit.errors import UsageError


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              metavar="DIR", help="The folder to write (the playbook, the role, the files).")
@dev.device_options(host=False)
@dev.release_options
@options.json_output
@options.quiet
@debug_option
def playbook(bundle: Path, out_dir: Path, target_name: str | None, device: dev.DeviceOptions,
             service: bool, offline: bool, wheel: Path | None, rollout: dict[str, Any],
             view: str, quiet: bool) -> None:
    """Write a self-contained Ansible playbook that deploys BUNDLE; send nothing.

    \b
    The folder holds deploy.yml, status.yml and rollback.yml, the role (the
    device agent and edgekit's deploy steps included), every file to ship and
    a README, for ansible-playbook, AWX or CI: the same steps edgekit deploy
    --inventory runs. The inventory's hosts' edgekit_target (and --target for
    the rest) say which targets it carries.

    \b
    Example:
      edgekit playbook out/lenet5 --inventory lab.ini -o lab-playbook/
    """
    if device.inventory is None:
        raise UsageError("playbook needs --inventory: its hosts' edgekit_target (and --target "
                         "for the rest) say which targets the playbook carries")
    device.check("playbook")
    from edgekit.deploy.fleet import FleetBundle, emit_playbook

    request = device.fleet(rollout)
    what = FleetBundle(bundle=bundle, target=target_name, service=service, offline=offline,
                       wheel=wheel)
    files = emit_playbook(what, request, out_dir, progress_printer(not quiet))
    if view == "json":
        click.echo(json.dumps({"folder": str(out_dir), "files": files}, indent=2))
    else:
        click.echo(f"wrote {out_dir}/ ({len(files)} files): ansible-playbook -i INVENTORY "
                   f"{out_dir}/deploy.yml; see {out_dir}/README.md")
