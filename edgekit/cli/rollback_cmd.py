"""``edgekit rollback``: a device (or an inventory's hosts) back to an earlier release."""
from __future__ import annotations

import json
from typing import Any

import click

from edgekit.cli import device_options as dev
from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, progress_printer
from edgekit.errors import DeployError, UsageError


@cli.command()
@dev.device_options(release=("python", "dir", "settle", "lock_timeout"))
@click.option("--to", "to_release", metavar="RELEASE",
              help="This release instead of the one before current.")
@dev.dry_run
@dev.rollout_options
@options.json_output
@options.quiet
@debug_option
def rollback(device: dev.DeviceOptions, to_release: str | None, dry_run: bool,
             rollout: dict[str, Any], view: str, quiet: bool) -> None:
    """Switch a device back to the release before the current one (checked first).

    \b
    The earlier release's files and environment are checked again, current is
    switched to it (one rename), and the service is restarted and watched like
    a deploy's: if it does not stay up, current switches back (exit 1).

    \b
    Examples:
      edgekit rollback --host pi@raspberrypi.local
      edgekit rollback --inventory lab.ini --to 20261201T101500Z-1a2b3c4d
    """
    device.check("rollback")
    dev.fleet_only(device, rollout)
    progress = progress_printer(not quiet)
    if device.inventory is not None:
        from edgekit.deploy.fleet import fleet_rollback

        if dry_run:
            raise UsageError("--dry-run is for one --host")
        request = device.fleet(rollout)
        dev.show_fleet(fleet_rollback(request, to_release, progress), view)
        return
    from edgekit.deploy import rollback as run_rollback
    from edgekit.deploy.report import rollback_text

    done = run_rollback(device.host(), device.ssh(), to=to_release, dry_run=dry_run,
                        progress=progress, **device.release)
    click.echo(json.dumps(done.to_dict(), indent=2) if view == "json" else rollback_text(done))
    if done.problem:
        raise DeployError(done.problem)
