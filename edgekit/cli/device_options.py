"""The options every device command shares (deploy, status, rollback, playbook), declared once:
which device (``--host``) or devices (``--inventory``, ``--limit``), how to reach them, and how
to roll through many. Each command gets one record (``device: DeviceOptions``) instead of nine
arguments, and the checks of how they combine live here."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from edgekit.cli.families import Command
from edgekit.cli.options import Finite
from edgekit.errors import UsageError
from edgekit.helpers.limits import MAX_SECONDS
from edgekit.helpers.records import keyword_only

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_OPTION_NAMES = ("host_text", "inventory", "limit", "port", "identity", "known_hosts",
                       "timeout", "python", "remote_dir")
# --rollout's keys, as Rollout's fields; "canary" stands for serial=1,max-fail=0.
ROLLOUT_KEYS = {"serial": "serial", "max-fail": "max_fail_percentage", "forks": "forks"}
ROLLOUT_FORM = ("KEY=VALUE pairs (serial=N or N%, max-fail=P, forks=N, e.g. "
                "serial=1,max-fail=0), or canary")
# Options that became --rollout's keys: each answers with the new spelling (exit 2).
RENAMED_OPTIONS = {"--serial": "--rollout serial=N (or N%)",
                   "--max-fail-percentage": "--rollout max-fail=P",
                   "--forks": "--rollout forks=N"}


class DeviceCommand(Command):
    """A device command that answers an option it no longer has with its new spelling."""

    renamed: dict[str, str] = {}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        head = args[:args.index("--")] if "--" in args else args
        for old, new in {**RENAMED_OPTIONS, **self.renamed}.items():
            if any(a == old or a.startswith(old + "=") for a in head):
                raise click.UsageError(self.moved(old, new), ctx)
        return super().parse_args(ctx, args)

    def moved(self, old: str, new: str) -> str:
        return f"{old} is now part of --rollout: {new}, or --rollout canary"


@keyword_only
@dataclass(frozen=True)
class DeviceOptions:
    """One device or an inventory's hosts, and how to reach them."""

    host_text: str | None = None
    inventory: Path | None = None
    limit: str | None = None
    port: int | None = None
    identity: Path | None = None
    known_hosts: Path | None = None
    timeout: float = 60.0
    python: str = "python3"
    remote_dir: str = "edgekit"

    def check(self, command: str) -> None:
        """Exactly one of --host and --inventory; --limit with an inventory, --port with a
        host."""
        if self.host_text is not None and self.inventory is not None:
            raise UsageError("--inventory names the hosts (ansible_host, ansible_port, "
                             "ansible_user in it): drop --host and --port")
        if self.host_text is None and self.inventory is None:
            raise UsageError(f"{command} needs --host USER@HOST (one device) or --inventory "
                             "FILE (every host of an Ansible inventory)")
        if self.inventory is not None and self.port is not None:
            raise UsageError("--inventory names the hosts (ansible_host, ansible_port, "
                             "ansible_user in it): drop --host and --port")
        if self.inventory is None and self.limit is not None:
            raise UsageError("--limit goes with --inventory")

    def ssh(self) -> Any:
        from edgekit.deploy.ssh import SshOptions

        return SshOptions(identity=self.identity, known_hosts=self.known_hosts,
                          timeout=self.timeout)

    def host(self) -> Any:
        from edgekit.deploy.ssh import parse_host

        assert self.host_text is not None
        return parse_host(self.host_text, self.port)

    def fleet(self, rollout: dict[str, Any], **settings: Any) -> Any:
        """The FleetRequest for these hosts (``settings``: samples, keep, settle, ...)."""
        from edgekit.deploy.fleet import FleetRequest
        from edgekit.deploy.inventory import check_inventory
        from edgekit.deploy.playbook import Rollout

        assert self.inventory is not None
        check_inventory(self.inventory)
        return FleetRequest(inventory=self.inventory, limit=self.limit,
                            rollout=Rollout(**rollout), ssh=self.ssh(), python=self.python,
                            base=self.remote_dir, **settings)


_DEVICE_OPTIONS = {
    "host_text": click.option("--host", "host_text", metavar="USER@HOST",
                              help="The device, as ssh reaches it (e.g. pi@raspberrypi.local)."),
    "inventory": click.option("--inventory", type=click.Path(path_type=Path), metavar="INVENTORY",
                              help="Every host of this Ansible inventory (INI or YAML) instead "
                              "of --host, through ansible-core (pip install 'edgekit[fleet]')."),
    "limit": click.option("--limit", metavar="PATTERN", help="With --inventory: only the hosts "
                          "this Ansible pattern matches (a host, a group, 'lab:!pi3', 'pi*')."),
    "port": click.option("--port", type=click.IntRange(1, 65535), metavar="PORT",
                         show_default="22, or your ~/.ssh/config", help="SSH port."),
    "identity": click.option("--identity", type=click.Path(path_type=Path), metavar="KEYFILE",
                             show_default="ssh's own keys and agent",
                             help="Private key to log in with."),
    "known_hosts": click.option("--known-hosts", type=click.Path(path_type=Path), metavar="FILE",
                                show_default="ssh's own",
                                help="The only known_hosts file to trust."),
    "timeout": click.option("--timeout", default=60.0, show_default=True,
                            type=Finite(3, MAX_SECONDS), metavar="SECONDS",
                            help="How long a silent link is tolerated before giving up."),
    "python": click.option("--python", default="python3", show_default=True, metavar="PATH",
                           help="The device's Python that makes the environment."),
    "remote_dir": click.option("--remote-dir", default="edgekit", show_default=True,
                               metavar="DIR", help="Where releases live on the device "
                               "(relative: to the login home)."),
}


def _reach(names: tuple[str, ...]) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return f(*args, device=DeviceOptions(**values), **kwargs)

        for name in reversed(names):
            command = _DEVICE_OPTIONS[name](command)
        return command  # type: ignore[return-value]
    return decorate


# --host, --inventory, --limit, --port, --identity, --known-hosts, --timeout, --python,
# --remote-dir as one ``device: DeviceOptions``.
device_options = _reach(DEVICE_OPTION_NAMES)
# The same without --host and --port: for the playbook, whose hosts the inventory names.
inventory_options = _reach(tuple(n for n in DEVICE_OPTION_NAMES if n not in ("host_text", "port")))


def parse_rollout(text: str | None) -> dict[str, Any]:
    """--rollout's text as Rollout's fields ({} for None: Ansible's defaults, forks 5)."""
    if text is None:
        return {}
    if text.strip() == "canary":
        return {"serial": "1", "max_fail_percentage": 0.0}
    found: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or key not in ROLLOUT_KEYS or not value:
            raise UsageError(f"--rollout {text!r}: give {ROLLOUT_FORM}")
        found[ROLLOUT_KEYS[key]] = value
    try:
        if "max_fail_percentage" in found:
            found["max_fail_percentage"] = float(found["max_fail_percentage"].rstrip("%"))
        if "forks" in found:
            found["forks"] = int(found["forks"])
    except ValueError:
        raise UsageError(f"--rollout {text!r}: max-fail takes a percentage from 0 to 100 and "
                         "forks a whole number of hosts") from None
    return found


def rollout_options(f: F) -> F:
    """--rollout (with --inventory) as one ``rollout`` dict of Rollout's fields."""
    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        return f(*args, rollout=parse_rollout(kwargs.pop("rollout_text")), **kwargs)

    return click.option(  # type: ignore[return-value]
        "--rollout", "rollout_text", metavar="SPEC",
        show_default="all hosts, 5 at a time",
        help="With --inventory, a rolling update: serial=N|N% hosts a batch, max-fail=P% "
        "of a batch stops it, forks=N at once; canary: serial=1,max-fail=0.")(command)


def fleet_only(device: DeviceOptions, rollout: dict[str, Any]) -> None:
    """--rollout goes with --inventory."""
    if rollout and device.inventory is None:
        raise UsageError("--rollout goes with --inventory")


settle = click.option(
    "--settle", default=10.0, show_default=True, type=Finite(0, MAX_SECONDS), metavar="SECONDS",
    help="How long a (re)started service must stay up (no restart) to count as healthy; if it "
    "does not, current switches back to the previous release.")
lock_timeout = click.option(
    "--lock-timeout", default=0.0, show_default=True, type=Finite(0, MAX_SECONDS),
    metavar="SECONDS", help="How long to wait while another deploy or rollback holds the "
    "device's lock (0: refuse at once, naming the holder).")
dry_run = click.option("--dry-run", is_flag=True, help="Print every step and command; change "
                       "nothing (the device is only asked, read-only, what it holds).")
target = click.option(
    "--target", "target_name", metavar="NAME|FILE", help="Device profile: a name from `edgekit "
    "targets`, or a .toml file (with --inventory: hosts without edgekit_target).")
service = click.option(
    "--service", is_flag=True, help="Install a systemd user unit that runs `edgekit run` on the "
    "current release at boot; it must stay up for --settle seconds, or current switches back.")
offline = click.option("--offline", is_flag=True, help="Download the target's wheels here and "
                       "ship them, for a device without internet.")
keep = click.option("--keep", default=3, show_default=True, type=click.IntRange(min=1),
                    metavar="N", help="Complete releases kept.")
wheel = click.option("--wheel", type=click.Path(path_type=Path), metavar="FILE",
                     help="Ship this edgekit wheel instead of building one from the checkout.")


def release_options(f: F) -> F:
    """What a release is made of and how it is kept: --service, --offline, --samples, --keep,
    --settle, --lock-timeout, --wheel (deploy and playbook)."""
    from edgekit.cli import options

    for decorate in reversed([service, offline, options.samples, keep, settle, lock_timeout,
                              wheel]):
        f = decorate(f)
    return f


def show_fleet(report: Any, view: str) -> None:
    """A fleet command's table (or JSON); exit 1 when a host failed."""
    from edgekit.deploy.fleet_report import fleet_text
    from edgekit.errors import DeployError

    click.echo(json.dumps(report.to_dict(), indent=2) if view == "json" else fleet_text(report))
    problem = report.problem()
    if problem:
        raise DeployError(problem)
