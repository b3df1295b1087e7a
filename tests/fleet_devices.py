"""Several devices for fleet tests: real accounts behind one loopback OpenSSH server.

Each device is a user of this machine (``useradd``, a key of its own, a home folder of its
own under a world-readable temporary folder), so each has its own ``~/edgekit``; one sshd on a
free 127.0.0.1 port lets exactly those users in, with their keys only, and the host key is
checked against a known_hosts file. Needs root (to add users); the users are removed after.
A plain module (no pytest here), used by tests/test_fleet.py and scripts/bench_fleet.py.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from sshd import (
    LOOPBACK,
    LoopbackSshd,
    SshdUnavailable,
    SshServer,
    make_key_pair,
    public_key,
    sshd_config,
)

SESSION = """#!/bin/sh
cd "$HOME" || exit 1
if [ -z "$SSH_ORIGINAL_COMMAND" ]; then exec "$SHELL" -l; fi
exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
"""


def missing_requirement() -> str:
    """Why the fleet devices cannot run here, or ""."""
    if os.geteuid() != 0:
        return "fleet devices are users of this machine: adding them needs root"
    for tool in ("useradd", "userdel", "usermod"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian's passwd package)"
    if not Path("/usr/bin/python3").is_file():
        return "the devices' Python, /usr/bin/python3, is not installed"
    return ""


class FleetSshd(LoopbackSshd):
    """One sshd on loopback for ``count`` device users; ``devices`` describes each."""

    def __init__(self, count: int) -> None:
        # Outside pytest's own temporary folders (0700 for root): the device users must reach
        # their homes and run the server's session script.
        self.base = Path(tempfile.mkdtemp(prefix="edgekit-fleet-devices-"))
        self.base.chmod(0o755)
        super().__init__(self.base / "sshd")
        self.count = count
        self.tag = secrets.token_hex(3)
        self.homes = self.base / "homes"
        self.homes.mkdir(mode=0o755)
        self.users: list[str] = []
        self.devices: list[SshServer] = []

    def start(self, attempts: int = 3) -> SshServer:
        root = self.root_dir
        make_key_pair(root / "ssh_host_ed25519_key", "edgekit-test-host")
        keys = root / "authorized_keys"
        keys.mkdir()
        session = root / "session.sh"
        session.write_text(SESSION)
        session.chmod(0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        identities = []
        for i in range(1, self.count + 1):
            user = f"ekdev{self.tag}{i}"
            home = self.homes / user
            add = subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", user],
                                 capture_output=True, text=True, check=False)
            if add.returncode != 0:
                raise SshdUnavailable(f"useradd {user}: {add.stderr.strip()}")
            self.users.append(user)
            subprocess.run(["usermod", "-p", "*", user], check=True, capture_output=True)
            home.mkdir()
            shutil.chown(home, user, user)
            identity = make_key_pair(root / f"id_{user}", user)
            (keys / user).write_text(public_key(identity) + "\n")
            identities.append((user, home, identity))
        port, known_hosts, host_key = self._listen(
            lambda port: sshd_config(root, port, " ".join(self.users), Path("%d")).replace(
                f"AuthorizedKeysFile {keys}", f"AuthorizedKeysFile {keys}/%u"), attempts)
        self.devices = [SshServer(LOOPBACK, port, user, identity, known_hosts, host_key, root,
                                  str(home), root / "sshd.log")
                        for user, home, identity in identities]
        self.server = self.devices[0]
        return self.server

    def stop(self, timeout: float = 5) -> None:
        super().stop(timeout)
        for user in self.users:
            subprocess.run(["userdel", user], capture_output=True, check=False)
        self.users = []
        shutil.rmtree(self.base, ignore_errors=True)


def inventory_line(name: str, device: SshServer, **variables: object) -> str:
    """One INI inventory line for ``device``: address, port, user, key, and ``variables``."""
    fields = {"ansible_host": device.host, "ansible_port": device.port,
              "ansible_user": device.user,
              "ansible_ssh_private_key_file": device.identity_file, **variables}
    return name + "".join(f" {k}={v}" for k, v in fields.items())


def write_inventory(path: Path, devices: list[SshServer], target: Path | str,
                    names: list[str] | None = None, group: str = "lab") -> Path:
    """An INI inventory: the devices in one group, whose edgekit_target is ``target``."""
    names = names or [f"dev{i}" for i in range(1, len(devices) + 1)]
    lines = [f"[{group}]", *[inventory_line(n, d) for n, d in zip(names, devices)], "",
             f"[{group}:vars]", f"edgekit_target={target}", ""]
    path.write_text("\n".join(lines))
    return path


def device_with(device: SshServer, **changes: object) -> SshServer:
    return dataclasses.replace(device, **changes)
