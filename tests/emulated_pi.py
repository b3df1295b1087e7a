"""An emulated Raspberry Pi (arm64 Debian bookworm under qemu) reachable over SSH, for tests.

A thin Python face on ``scripts/pi_userland.sh``, which does the work (build, start, stop) and
keeps the userland cached outside the repository. Needs root, OpenSSH and, to build, mmdebstrap
(``scripts/ci_system_deps.sh`` installs them). qemu is registered with binfmt_misc only between
``start`` and ``stop`` (``running`` brackets them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sshd import LOOPBACK, OPENSSH, SshServer, free_port, known_hosts_line, make_key_pair
from system_packages import install_hint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pi_userland.sh"
BUILD_COMMAND = "scripts/pi_userland.sh build"
TOOLS = ("ssh", "ssh-keygen", "chroot")
BUILD_PACKAGES = ("mmdebstrap", "debian-archive-keyring")


def pi_root() -> Path:
    """Where the userland lives: $EDGEKIT_PI_ROOT, or the cache the script uses by default."""
    default = Path.home() / ".cache" / "edgekit" / "pi-bookworm-arm64"
    return Path(os.environ.get("EDGEKIT_PI_ROOT") or default)


def script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run pi_userland.sh with ``args``; raise with its output if it fails or times out.

    On a timeout it gets SIGTERM and is waited for: it unmounts and restores binfmt_misc (an
    interrupted build waits for mmdebstrap to reach a point where it can clean up).
    """
    env = {**os.environ, "EDGEKIT_PI_ROOT": str(pi_root())}
    command = ["bash", str(SCRIPT), *args]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            stdout, stderr = process.communicate()
            raise RuntimeError(
                f"pi_userland.sh {' '.join(args)} took over {timeout} s:\n{stdout}{stderr}"
            ) from None
    if process.returncode != 0:
        raise RuntimeError(
            f"pi_userland.sh {' '.join(args)} failed ({process.returncode}):\n{stdout}{stderr}"
        )
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def key_values(text: str) -> dict[str, str]:
    """The ``key=value`` lines of the script's output."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def missing_requirement() -> str | None:
    """Why the emulated Pi cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "the emulated Pi needs root (chroot, mount, binfmt_misc)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} missing: {install_hint(*OPENSSH)}"
    return None


def missing_build_requirement() -> str | None:
    """Why the userland cannot be built here, or None if it can."""
    if shutil.which("mmdebstrap") is None:
        return f"building the emulated Pi needs mmdebstrap: {install_hint(*BUILD_PACKAGES)}"
    return None


def is_built() -> bool:
    """Whether a complete userland is cached, and a qemu-aarch64-static to run it."""
    status = key_values(script("status", timeout=120).stdout)
    return status.get("built") == "yes" and status.get("qemu") != "missing"


def build(timeout: float = 3600) -> None:
    """Build the userland and fetch qemu (each a no-op when already there)."""
    script("build", timeout=timeout)


def start(key_dir: Path, attempts: int = 3) -> SshServer:
    """Start the Pi's sshd on a free loopback port with a new key pair made in ``key_dir``."""
    identity = make_key_pair(key_dir / "id_ed25519", "edgekit-pi-test")
    for _ in range(attempts - 1):
        try:
            return start_on(free_port(), identity)
        except RuntimeError:
            pass  # most likely someone took the port meanwhile: try another
    return start_on(free_port(), identity)


def start_on(port: int, identity: Path) -> SshServer:
    """Start the Pi's sshd on ``port``, letting in only ``identity``."""
    args = ("start", "--port", str(port), "--authorized-key", f"{identity}.pub")
    started = key_values(script(*args, timeout=300).stdout)
    known_hosts = identity.with_name("known_hosts")
    known_hosts.write_text(known_hosts_line(LOOPBACK, port, started["host_key"]))
    root = Path(started["root"])
    return SshServer(
        host=LOOPBACK,
        port=port,
        user=started["user"],
        identity_file=identity,
        known_hosts_file=known_hosts,
        host_public_key=started["host_key"],
        root_dir=root,
        home=f"/home/{started['user']}",
        log_file=Path(started["log"]),
        remote_root=root,
    )


def stop() -> None:
    """Stop the Pi's sshd and its sessions, unmount, and restore binfmt_misc."""
    script("stop", timeout=120)


@contextmanager
def running(key_dir: Path) -> Iterator[SshServer]:
    """The Pi's sshd while the block runs; then stopped, qemu unregistered, also when starting
    fails or the block raises (KeyboardInterrupt included)."""
    try:
        yield start(key_dir)
    finally:
        stop()
