"""``edgekit status``: what a device (or an inventory's hosts) holds and runs."""
from __future__ import annotations

import json

import click

from edgekit.cli import device_options as dev
from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, progress_printer


@cli.command()
@dev.device_options(release=("python", "dir"))
@options.json_output
@options.quiet
@debug_option
def status(device: dev.DeviceOptions, view: str, quiet: bool) -> None:
    """Show a device's releases, environments, service and lock (read only).

    \b
    The releases (current, complete or not), the Python environments, free
    space, the service (running or not, since when, restarts, lingering), the
    live view's address, and who holds the device's lock. It takes no lock.

    \b
    Examples:
      edgekit status --host pi@raspberrypi.local
      edgekit status --inventory lab.ini --limit pis
    """
    device.check("status")
    if device.inventory is not None:
        from edgekit.deploy.fleet import fleet_status

        dev.show_fleet(fleet_status(device.fleet({}), progress_printer(not quiet)), view)
        return
    from edgekit.deploy import status as run_status
    from edgekit.deploy.report import status_text
    from edgekit.helpers.text import redact_urls

    host = device.host()
    state = run_status(host, device.ssh(), **device.release)
    state = redact_urls(state)  # the unit's camera URL may hold a password
    click.echo(json.dumps(state, indent=2) if view == "json" else status_text(host.label, state))
