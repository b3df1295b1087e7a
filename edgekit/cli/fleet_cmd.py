"""``edgekit deploy --inventory``: the fleet modes of the deploy command (see deploy_cmd)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgekit.cli.app import progress_printer
from edgekit.errors import DeployError, UsageError


def fleet(*, bundle: Path | None, host_text: str | None, inventory: Path | None,
          limit: str | None, serial: str | None, max_fail_percentage: float | None,
          forks: int, emit_playbook: Path | None, target_name: str | None, port: int | None,
          identity: Path | None, known_hosts: Path | None, service: bool, offline: bool,
          dry_run: bool, rollback: bool, to_release: str | None, show_status: bool,
          python: str, remote_dir: str, samples: int, keep: int, timeout: float,
          settle: float, lock_timeout: float, wheel: Path | None, view: str,
          quiet: bool, **_: Any) -> None:
    """Deploy, roll back or read every host of ``inventory`` (or write the playbook)."""
    from edgekit.deploy.fleet import (
        FleetBundle,
        FleetRequest,
        fleet_deploy,
        fleet_rollback,
        fleet_status,
    )
    from edgekit.deploy.fleet import (
        emit_playbook as write_playbook,
    )
    from edgekit.deploy.fleet_report import fleet_text
    from edgekit.deploy.inventory import check_inventory
    from edgekit.deploy.playbook import Rollout
    from edgekit.deploy.ssh import SshOptions

    if host_text is not None or port is not None:
        raise UsageError("--inventory names the hosts (ansible_host, ansible_port, ansible_user "
                         "in it): drop --host and --port")
    if dry_run:
        raise UsageError("--dry-run is for one --host; with --inventory, --emit-playbook DIR "
                         "writes what would run without sending anything")
    if rollback and show_status:
        raise UsageError("choose one of --rollback and --status")
    if to_release and not rollback:
        raise UsageError("--to goes with --rollback")
    if (rollback or show_status) and (bundle or target_name or service or offline
                                      or emit_playbook):
        raise UsageError("--rollback and --status work on the releases already on the devices:"
                         " they take no BUNDLE, --target, --service, --offline or "
                         "--emit-playbook")
    if not (rollback or show_status) and bundle is None:
        raise UsageError("deploy --inventory needs a BUNDLE (or one of --status and "
                         "--rollback)")
    if inventory is None:
        raise UsageError("--emit-playbook needs --inventory: its hosts' edgekit_target (and "
                         "--target for the rest) say which targets the playbook carries")
    check_inventory(inventory)
    request = FleetRequest(
        inventory, limit, Rollout(serial, max_fail_percentage, forks),
        SshOptions(identity, known_hosts, timeout), python, remote_dir, samples, keep, settle,
        lock_timeout)
    progress = progress_printer(not quiet)
    if emit_playbook is not None:
        what = FleetBundle(bundle, target_name, service, offline, wheel)
        files = write_playbook(what, request, emit_playbook, progress)
        if view == "json":
            click.echo(json.dumps({"folder": str(emit_playbook), "files": files}, indent=2))
        else:
            click.echo(f"wrote {emit_playbook}/ ({len(files)} files): ansible-playbook -i "
                       f"INVENTORY {emit_playbook}/deploy.yml; see {emit_playbook}/README.md")
        return
    if show_status:
        report = fleet_status(request, progress)
    elif rollback:
        report = fleet_rollback(request, to_release, progress)
    else:
        report = fleet_deploy(FleetBundle(bundle, target_name, service, offline, wheel),
                              request, progress)
    click.echo(json.dumps(report.to_dict(), indent=2) if view == "json" else fleet_text(report))
    problem = report.problem()
    if problem:
        raise DeployError(problem)

