"""A real systemd device for tests: Debian bookworm booted by systemd-nspawn, over SSH.

A thin Python face on ``scripts/systemd_device.sh``, which builds the root file system (cached
in ~/.cache/edgekit), boots an overlay of it on this machine's network, and powers it off.
Needs root, ``systemd-nspawn`` (Debian's systemd-container) and ``mmdebstrap``.

Users ``pi`` (uid 1000) and ``root`` log in with the same throwaway key. ``root`` is for what
a person with sudo does on a device (lingering, a reboot) and for looking at pi's services
without logging pi in: a login of pi would start pi's systemd and so change what is observed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from emulated_pi import key_values
from sshd import LOOPBACK, SshServer, free_port, known_hosts_line, make_key_pair
from system_packages import install_hint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "systemd_device.sh"
# The tools, and the Debian packages that have them.
TOOLS = {"systemd-nspawn": "systemd-container", "mmdebstrap": "mmdebstrap",
         "ssh": "openssh-client", "ssh-keygen": "openssh-client"}
PI_UID = 1000
# What systemctl --user show reports about a unit, for the tests.
UNIT_PROPERTIES = ("ActiveState,SubState,NRestarts,ExecMainStatus,MainPID,ActiveEnterTimestamp,"
                   "UnitFileState")


def missing_requirement() -> str | None:
    """Why the device cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "the systemd device needs root (mount, systemd-nspawn)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        packages = dict.fromkeys(TOOLS[tool] for tool in missing)
        return f"{', '.join(missing)} missing: {install_hint(*packages)}"
    return None


def script(*args: str, timeout: float) -> dict[str, str]:
    """Run systemd_device.sh with ``args``; its key=value lines. Raises with its output."""
    try:
        result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"systemd_device.sh {' '.join(args)} took over {timeout} s:\n"
                           f"{exc.stdout or ''}{exc.stderr or ''}") from None
    if result.returncode != 0:
        raise RuntimeError(f"systemd_device.sh {' '.join(args)} failed "
                           f"({result.returncode}):\n{result.stdout}{result.stderr}")
    return key_values(result.stdout)


def build(timeout: float = 1800) -> None:
    """Build the cached root file system (about a minute; a no-op when it is there)."""
    script("build", timeout=timeout)


@dataclasses.dataclass(frozen=True)
class SystemdDevice:
    """A booted device: ``pi`` and ``root`` over SSH, and what tests ask it."""

    pi: SshServer
    root: SshServer
    run_dir: Path

    def as_root(self, command: str | list[str], timeout: float = 120
                ) -> subprocess.CompletedProcess[bytes]:
        return self.root.run(command, timeout=timeout)

    def root_text(self, command: str | list[str]) -> str:
        """What a root command prints; AssertionError when it fails."""
        result = self.as_root(command)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode().strip()

    def unit(self, name: str = "edgekit.service") -> dict[str, str]:
        """pi's user unit as pi's systemd reports it, read as root without logging pi in;
        {} when pi's systemd is not running."""
        command = (f"runuser -u pi -- env XDG_RUNTIME_DIR=/run/user/{PI_UID} systemctl --user "
                   f"show {name} --property={UNIT_PROPERTIES}")
        result = self.as_root(command)
        if result.returncode != 0:
            return {}
        return dict(line.split("=", 1) for line in result.stdout.decode().splitlines()
                    if "=" in line)

    def running(self, name: str = "edgekit.service") -> bool:
        state = self.unit(name)
        return state.get("ActiveState") == "active" and state.get("SubState") == "running"

    def command_of(self, pid: str) -> str:
        """The command line of a process in the device."""
        return self.root_text(f"tr '\\0' ' ' </proc/{int(pid)}/cmdline")

    def pi_sessions(self) -> list[str]:
        """pi's open logind sessions (logins), as root sees them."""
        result = self.as_root("loginctl show-user pi --property=Sessions --value")
        return result.stdout.decode().split() if result.returncode == 0 else []

    def pi_manager_active(self) -> bool:
        """Whether pi's systemd (user@1000.service) runs."""
        return self.as_root(f"systemctl is-active --quiet user@{PI_UID}.service").returncode == 0

    def set_linger(self, on: bool) -> None:
        """What a person with sudo does once: loginctl enable-linger pi (or disable-)."""
        self.root_text(f"loginctl {'enable' if on else 'disable'}-linger pi")

    def reset(self, linger: bool) -> None:
        """A device with no edgekit on it, pi's systemd stopped, lingering as asked."""
        self.root_text(f"systemctl stop user@{PI_UID}.service; rm -rf /home/pi/edgekit "
                       "/home/pi/.config/systemd")
        self.set_linger(linger)
        wait_until(lambda: not self.pi_manager_active() or linger, 60, "pi's systemd to stop")

    def reboots(self) -> int:
        return int(script("status", "--run-dir", str(self.run_dir), timeout=60)["reboots"])

    def reboot(self, timeout: float = 180) -> None:
        """`systemctl reboot` inside the device; returns once it has booted again."""
        before = self.reboots()
        self.as_root("systemctl reboot")  # the link closes under it
        wait_until(lambda: self.reboots() > before, timeout, "the device to reboot")
        self.wait_booted(timeout)

    def wait_booted(self, timeout: float = 180) -> None:
        """Until systemd in the device has finished booting (running, or degraded)."""
        def booted() -> bool:
            result = self.as_root("systemctl is-system-running --wait", timeout=timeout)
            return result.stdout.decode().strip() in ("running", "degraded")
        wait_until(booted, timeout, "the device to boot")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.5)


def start(folder: Path) -> SystemdDevice:
    """Boot a device from the cached root file system, its state in ``folder``."""
    identity = make_key_pair(folder / "id_ed25519", "edgekit-systemd-test")
    run_dir = folder / "run"
    started = script("start", "--run-dir", str(run_dir), "--port", str(free_port()),
                     "--authorized-key", f"{identity}.pub", timeout=300)
    port, root = int(started["port"]), Path(started["root"])
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(known_hosts_line(LOOPBACK, port, started["host_key"]))
    pi = SshServer(LOOPBACK, port, "pi", identity, known_hosts, started["host_key"], root,
                   "/home/pi", Path(started["console"]), root)
    device = SystemdDevice(pi, dataclasses.replace(pi, user="root", home="/root"), run_dir)
    try:
        device.wait_booted()
    except BaseException:
        stop(run_dir)
        raise
    return device


def stop(run_dir: Path) -> None:
    """Power the device off and remove its state."""
    script("stop", "--run-dir", str(run_dir), timeout=120)

