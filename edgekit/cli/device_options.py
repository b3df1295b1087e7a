"""The options every device command shares (deploy, status, rollback, playbook), declared once:
which device (``--host``) or devices (``--inventory``, ``--limit``), how to reach them (``--ssh``
KEY=VALUE), where and how releases live there (``--release`` KEY=VALUE: each command takes the
keys it uses), and how to roll through many (``--rollout``). Each command gets one record
(``device: DeviceOptions``) instead of a dozen arguments, and the checks of how they combine
live here. A key left out takes the library record's default (DeployRequest, FleetRequest,
SshOptions), which its help states."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from edgekit.cli.families import Key, family
from edgekit.cli.options import Finite
from edgekit.errors import UsageError
from edgekit.helpers.limits import MAX_SECONDS
from edgekit.helpers.records import keyword_only

F = TypeVar("F", bound=Callable[..., Any])

_PATH = click.Path(path_type=Path)

# --ssh's keys: the port, then SshOptions' fields.
SSH_KEYS = {
    "port": Key("22 or ~/.ssh/config's", click.IntRange(1, 65535), "N"),
    "identity": Key("private key (ssh's own, agent)", _PATH, "FILE"),
    "known_hosts": Key("the only one trusted", _PATH, "FILE"),
    "timeout": Key("seconds a silent link lasts (60)", Finite(3, MAX_SECONDS), "S"),
}
# --release's keys: fields of DeployRequest, FleetRequest and the rollback and status calls.
RELEASE_KEYS = {
    "python": Key("the one that makes the environment (python3)", metavar="PATH"),
    "dir": Key("their folder, from home (edgekit)", metavar="DIR", param="base"),
    "keep": Key("releases kept (3)", click.IntRange(min=1), "N"),
    "samples": Key("smoke-tested validation samples (10; 0: all)",
                   click.IntRange(min=0), "N"),
    "settle": Key("seconds a restarted service must stay up (10)",
                  Finite(0, MAX_SECONDS), "S"),
    "lock_timeout": Key("seconds to wait for another's lock (0)",
                        Finite(0, MAX_SECONDS), "S"),
}
# The flags the keys were before: each answers with its new spelling (exit 2).
OLD_FLAGS = {"--port": "port", "--identity": "identity", "--known-hosts": "known_hosts",
             "--timeout": "timeout", "--python": "python", "--remote-dir": "dir",
             "--keep": "keep", "--samples": "samples", "--settle": "settle",
             "--lock-timeout": "lock_timeout", "--serial": "serial",
             "--max-fail-percentage": "max_fail", "--forks": "forks"}


class Percent(Finite):
    """A percentage, with or without its % sign."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        return super().convert(str(value).strip().rstrip("%"), param, ctx)


# --rollout's keys, Rollout's fields; the word canary stands for serial=1,max_fail=0.
ROLLOUT_KEYS = {
    "serial": Key("hosts a batch", metavar="N|N%"),
    "max_fail": Key("% of a batch failing stops it", Percent(0, 100), "P",
                    param="max_fail_percentage"),
    "forks": Key("hosts at once (5)", click.IntRange(min=1), "N"),
}


@keyword_only
@dataclass(frozen=True)
class DeviceOptions:
    """One device or an inventory's hosts, how to reach them, and --release's settings."""

    host_text: str | None = None
    inventory: Path | None = None
    limit: str | None = None
    ssh_keys: Mapping[str, Any] = field(default_factory=dict)  # --ssh: port, SshOptions' fields
    release: Mapping[str, Any] = field(default_factory=dict)  # --release: the library's names

    def check(self, command: str) -> None:
        """Exactly one of --host and --inventory; --limit with an inventory, a port with a
        host."""
        if self.inventory is not None and (self.host_text is not None or "port" in self.ssh_keys):
            raise UsageError("--inventory names the hosts (ansible_host, ansible_port, "
                             "ansible_user in it): drop --host and --ssh port")
        if self.host_text is None and self.inventory is None:
            raise UsageError(f"{command} needs --host USER@HOST (one device) or --inventory "
                             "FILE (every host of an Ansible inventory)")
        if self.inventory is None and self.limit is not None:
            raise UsageError("--limit goes with --inventory")

    def ssh(self) -> Any:
        from edgekit.deploy.ssh import SshOptions

        return SshOptions(**{k: v for k, v in self.ssh_keys.items() if k != "port"})

    def host(self) -> Any:
        from edgekit.deploy.ssh import parse_host

        assert self.host_text is not None
        return parse_host(self.host_text, self.ssh_keys.get("port"))

    def fleet(self, rollout: dict[str, Any]) -> Any:
        """The FleetRequest for these hosts."""
        from edgekit.deploy.fleet import FleetRequest
        from edgekit.deploy.inventory import check_inventory
        from edgekit.deploy.playbook import Rollout

        assert self.inventory is not None
        check_inventory(self.inventory)
        return FleetRequest(inventory=self.inventory, limit=self.limit,
                            rollout=Rollout(**rollout), ssh=self.ssh(), **self.release)


_host = click.option("--host", "host_text", metavar="USER@HOST",
                     help="The device, as ssh reaches it (pi@raspberrypi.local).")
_inventory = click.option(
    "--inventory", type=_PATH, metavar="FILE", help="Every host of this Ansible inventory "
    "instead (pip install 'edgekit[fleet]').")
_limit = click.option("--limit", metavar="PATTERN",
                      help="Only the inventory's hosts this Ansible pattern matches.")


def _family(flag: str, dest: str, keys: dict[str, Key], help: str,
            uses: tuple[str, ...] | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``flag`` taking the keys in ``uses`` (None: all); the old flags of those keys answer
    with their new spelling."""
    old = {flag_: key for flag_, key in OLD_FLAGS.items()
           if key in keys and (uses is None or key in uses)}
    return family(flag, dest, keys, help, renamed=old, uses=uses, **kwargs)


def device_options(release: tuple[str, ...] | None = None, host: bool = True
                   ) -> Callable[[F], F]:
    """--host (unless ``host`` is False: the playbook's hosts are the inventory's), --inventory,
    --limit, --ssh and --release (with the keys named in ``release``; None: all) as one
    ``device: DeviceOptions``."""
    ssh_keys = None if host else ("identity", "known_hosts", "timeout")

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, ssh: dict[str, Any], release: dict[str, Any],
                    **kwargs: Any) -> Any:
            device = DeviceOptions(host_text=kwargs.pop("host_text", None),
                                   inventory=kwargs.pop("inventory"),
                                   limit=kwargs.pop("limit"), ssh_keys=ssh, release=release)
            return f(*args, device=device, **kwargs)

        wrapped: Any = command
        for option in reversed([
                *([_host] if host else []), _inventory, _limit,
                _family("--ssh", "ssh", SSH_KEYS, "How ssh reaches the device.", ssh_keys),
                _family("--release", "release", RELEASE_KEYS,
                        "The releases on the device; its Python.", release)]):
            wrapped = option(wrapped)
        return wrapped  # type: ignore[no-any-return]
    return decorate


rollout_options = _family(
    "--rollout", "rollout", ROLLOUT_KEYS, "With --inventory: a rolling update; canary is "
    "serial=1,max_fail=0.", words={"canary": "serial=1,max_fail=0"})


def fleet_only(device: DeviceOptions, rollout: dict[str, Any]) -> None:
    """--rollout goes with --inventory."""
    if rollout and device.inventory is None:
        raise UsageError("--rollout goes with --inventory")


dry_run = click.option("--dry-run", is_flag=True, help="Print every step and command; change "
                       "nothing.")
target = click.option(
    "--target", "target_name", metavar="NAME|FILE", help="Device profile (edgekit targets) or "
    ".toml file; with --inventory: for hosts without edgekit_target.")
service = click.option(
    "--service", is_flag=True, help="Install a systemd user unit that runs `edgekit run` on "
    "current (restarted, watched).")
offline = click.option("--offline", is_flag=True, help="Ship the target's wheels, for a device "
                       "without internet.")
wheel = click.option("--wheel", type=_PATH, metavar="FILE",
                     help="Ship this edgekit wheel instead of building one.")


def release_options(f: F) -> F:
    """What a release is made of and how it rolls out, for deploy and playbook: --target,
    --service, --offline, --wheel, --rollout."""
    for decorate in reversed([target, service, offline, wheel, rollout_options]):
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
