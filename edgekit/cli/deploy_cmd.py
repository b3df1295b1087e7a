"""``edgekit deploy``: a bundle to one device over SSH, or to an inventory's hosts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgekit.cli import device_options as dev
from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, progress_printer
from edgekit.cli.families import Command
from edgekit.errors import DeployError, UsageError


class DeployCommand(Command):
    """deploy, answering its old modes with the command that does each now (exit 2)."""

    renamed = {"--status": "its own command: edgekit status --host USER@HOST (or --inventory "
                           "FILE)",
               "--rollback": "its own command: edgekit rollback --host USER@HOST [--to RELEASE]",
               "--emit-playbook": "its own command: edgekit playbook BUNDLE --inventory FILE -o "
                                  "DIR"}


@cli.command(cls=DeployCommand)
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@dev.device_options()
@dev.dry_run
@dev.release_options
@options.json_output
@options.quiet
@debug_option
def deploy(bundle: Path | None, target_name: str | None, device: dev.DeviceOptions,
           service: bool, offline: bool, dry_run: bool, wheel: Path | None,
           rollout: dict[str, Any], view: str, quiet: bool) -> None:
    """Deploy a bundle to a device over SSH, atomically, and prove it runs there.

    \b
    Ships what the target runs (and edgekit as a wheel) into a new release
    folder, checks every file's sha256 there, sets up a Python environment,
    runs a smoke test, and only then switches current to it (one rename; see
    edgekit rollback). A service is restarted and watched for settle seconds,
    and switched back if it does not stay up. One deploy at a time per device
    (a lock). Keys only, host keys checked. With --inventory, every host runs
    the same steps through ansible-playbook; a table says how each went.

    \b
    Examples:
      edgekit deploy out/lenet5 --target rpi4-cpu --host pi@raspberrypi.local
      edgekit deploy out/lenet5 --target rpi4-cpu --host pi@10.0.0.7 --service
      edgekit deploy out/lenet5 --inventory lab.ini --rollout canary
    """
    device.check("deploy")
    dev.fleet_only(device, rollout)
    if bundle is None:
        raise UsageError("deploy needs a BUNDLE and --target NAME (see edgekit targets); "
                         "edgekit status and edgekit rollback work on what the device holds")
    progress = progress_printer(not quiet)
    if device.inventory is not None:
        _fleet(bundle, target_name, device, service, offline, dry_run, wheel, rollout, view,
               progress)
        return
    if target_name is None:
        raise UsageError("deploy needs a BUNDLE and --target NAME (see edgekit targets)")
    from edgekit.deploy import DeployRequest
    from edgekit.deploy import deploy as run_deploy
    from edgekit.deploy.report import deploy_text
    from edgekit.deploy.targets import find_target

    request = DeployRequest(bundle=bundle, target=find_target(target_name), host=device.host(),
                            ssh=device.ssh(), service=service, offline=offline, dry_run=dry_run,
                            wheel=wheel, **device.release)
    done = run_deploy(request, progress)
    click.echo(json.dumps(done.to_dict(), indent=2) if view == "json" else deploy_text(done))
    if done.problem:  # after the report: it holds the journal lines the error points to
        raise DeployError(done.problem)


def _fleet(bundle: Path, target_name: str | None, device: dev.DeviceOptions, service: bool,
           offline: bool, dry_run: bool, wheel: Path | None, rollout: dict[str, Any],
           view: str, progress: Any) -> None:
    from edgekit.deploy.fleet import FleetBundle, fleet_deploy

    if dry_run:
        raise UsageError("--dry-run is for one --host; with --inventory, edgekit playbook "
                         "writes what would run without sending anything")
    request = device.fleet(rollout)
    what = FleetBundle(bundle=bundle, target=target_name, service=service, offline=offline,
                       wheel=wheel)
    dev.show_fleet(fleet_deploy(what, request, progress), view)
