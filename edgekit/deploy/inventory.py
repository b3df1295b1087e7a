"""Ansible, run from edgekit: an isolated configuration, and the hosts of an inventory.

edgekit never reads or changes the user's Ansible configuration: every ansible command runs
with its own ``ansible.cfg`` and ``ANSIBLE_HOME`` in a temporary folder, no ``ANSIBLE_*``
variable of the caller's environment, no collections and no Galaxy. Host-key checking stays
on (``StrictHostKeyChecking=yes`` first in ssh's arguments, which ssh takes over any later
``no``), and an inventory that turns it off for a host is refused.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.deploy.ssh import Host, SshClient, SshOptions
from edgekit.errors import DeployError, UsageError
from edgekit.helpers.files import refuse_special

EXTRA = "edgekit[fleet]"
# Host variables that would turn host-key checking off.
NO_HOST_KEY_CHECKING = ("ansible_host_key_checking", "ansible_ssh_host_key_checking")


def require_ansible() -> None:
    """DeployError naming the extra to install when ansible-core is missing."""
    try:
        found = importlib.util.find_spec("ansible.cli.playbook") is not None
    except ImportError:  # no ansible package at all
        found = False
    if not found:
        raise DeployError(f"--inventory runs through Ansible, and ansible-core is not installed "
                          f"in this Python ({sys.executable}): pip install '{EXTRA}'")


def ansible_command(tool: str) -> list[str]:
    """``ansible-playbook`` or ``ansible-inventory`` of this Python's ansible-core."""
    return [sys.executable, "-m", f"ansible.cli.{tool}"]


def ssh_args(options: SshOptions, persist: bool = True) -> str:
    """ssh's arguments for every Ansible connection: deploy's own (keys only, host keys
    checked, the timeout, known_hosts and identity of --ssh), then connection sharing."""
    args = SshClient(Host("fleet"), options).common_options()
    if persist:
        args += ["-o", "ControlMaster=auto", "-o", "ControlPersist=60s"]
    return shlex.join(args)


def ansible_cfg(options: SshOptions, forks: int = 5, control_dir: Path | None = None) -> str:
    """An ansible.cfg for edgekit's runs (and the emitted playbook's)."""
    lines = [
        "# Written by edgekit. Host-key checking stays on: never set it to False.",
        "[defaults]",
        "host_key_checking = True",
        f"forks = {forks}",
        "gathering = explicit",
        "retry_files_enabled = False",
        "nocows = True",
        "roles_path = ./roles",
        "",
        "[inventory]",
        "unparsed_is_failed = True",
        "",
        "[ssh_connection]",
        f"ssh_args = {ssh_args(options)}",
        "pipelining = True",
    ]
    if control_dir is not None:
        lines.append(f"control_path_dir = {control_dir}")
    return "\n".join(lines) + "\n"


def ansible_env(folder: Path) -> dict[str, str]:
    """The environment of an ansible command: the caller's, less every ANSIBLE_* variable,
    with ``folder`` holding its configuration, home, temporary files and (no) collections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    for name in ("home", "tmp", "collections"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    env.update(ANSIBLE_CONFIG=str(folder / "ansible.cfg"), ANSIBLE_HOME=str(folder / "home"),
               ANSIBLE_LOCAL_TEMP=str(folder / "tmp"),
               ANSIBLE_COLLECTIONS_PATH=str(folder / "collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return env


@dataclass(frozen=True)
class InventoryHost:
    """One host of the inventory, as Ansible resolves it (group and host variables merged)."""

    name: str
    vars: dict[str, Any]

    @property
    def address(self) -> str:
        host = self.vars.get("ansible_host", self.name)
        user = self.vars.get("ansible_user") or self.vars.get("ansible_ssh_user")
        port = self.vars.get("ansible_port") or self.vars.get("ansible_ssh_port")
        return f"{user + '@' if user else ''}{host}{f':{port}' if port else ''}"


def check_inventory(inventory: Path) -> None:
    """UsageError for an inventory that is not there, or a device or pipe (Ansible would read
    ``/dev/zero`` for minutes), before anything else runs."""
    if not inventory.exists():
        raise UsageError(f"inventory {inventory}: no such file or folder", param="inventory")
    refuse_special(inventory, "`inventory`", UsageError)


def read_inventory(inventory: Path, limit: str | None, folder: Path) -> list[InventoryHost]:
    """The hosts of ``inventory`` (INI, YAML, or anything Ansible reads) that ``limit``
    matches, in Ansible's order; UsageError when it does not parse or nothing matches."""
    inventory = Path(inventory)
    check_inventory(inventory)
    listing = list_inventory(inventory, limit, folder)
    hosts = ordered_hosts(listing)
    if not hosts:
        if limit:
            every = list_inventory(inventory, None, folder)
            groups = sorted(k for k in every if k not in ("_meta", "all", "ungrouped"))
            raise UsageError(f"limit {limit!r} matches no host of {inventory} (its hosts: "
                             f"{', '.join(ordered_hosts(every)) or 'none'}; groups: "
                             f"{', '.join(groups) or 'none'}): name a host or group there, or "
                             "a pattern such as 'lab:!pi3' or 'pi*'", param="limit")
        raise UsageError(f"inventory {inventory} lists no host: add the devices (see the "
                         "README's fleet section for an example)", param="inventory")
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    return [InventoryHost(name, dict(hostvars.get(name, {}))) for name in hosts]


def list_inventory(inventory: Path, limit: str | None, folder: Path) -> dict[str, Any]:
    """``ansible-inventory --list`` (with ``--limit``), run with edgekit's own configuration."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ansible.cfg").write_text(ansible_cfg(SshOptions()))
    argv = [*ansible_command("inventory"), "-i", str(inventory.resolve()), "--list"]
    if limit:
        argv += ["--limit", limit]
    done = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(folder),
                          cwd=folder, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise UsageError(f"inventory {inventory} does not parse as an Ansible inventory: "
                         f"{parse_errors(done.stderr)}. Fix it (`ansible-inventory -i "
                         f"{inventory} --list` shows the same)", param="inventory")
    return json.loads(done.stdout)


def ordered_hosts(listing: dict[str, Any]) -> list[str]:
    """Every host under ``all``, each once, groups in the listing's order."""
    seen: list[str] = []
    todo = ["all"]
    visited = set()
    while todo:
        group = todo.pop(0)
        if group in visited:
            continue
        visited.add(group)
        entry = listing.get(group, {})
        seen += [h for h in entry.get("hosts", []) if h not in seen]
        todo = list(entry.get("children", [])) + todo
    return seen


def parse_errors(stderr: str) -> str:
    """Ansible's parse failures, one short clause per inventory plugin."""
    found = re.findall(r"Failed to parse inventory with '([^']+)' plugin: ([^\n]+)", stderr)
    if found:
        seen: dict[str, str] = {}
        for plugin, why in found:
            seen.setdefault(why.strip(), plugin)
        return "; ".join(f"{plugin}: {why}" for why, plugin in seen.items())
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors or lines or ["no message"])[-1]


def check_host(host: InventoryHost) -> None:
    """UsageError for a host that edgekit will not deploy to as the inventory describes it."""
    for name in NO_HOST_KEY_CHECKING:
        value = host.vars.get(name)
        if value is not None and str(value).lower() in ("false", "no", "0", "off"):
            raise UsageError(f"host {host.name} sets {name}={value} in the inventory: edgekit "
                             "keeps host-key checking on. Remove it, check the device's key "
                             f"and trust it: ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts "
                             "(or pass `known_hosts` FILE)")
    connection = str(host.vars.get("ansible_connection", "ssh"))
    if connection not in ("ssh", "ansible.builtin.ssh", "smart"):
        raise UsageError(f"host {host.name} uses ansible_connection={connection}: edgekit "
                         "deploys over SSH only; remove it (or set ansible_connection=ssh)")
