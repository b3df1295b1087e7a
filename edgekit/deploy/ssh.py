"""The system's OpenSSH client (ssh, scp), wrapped: argument lists, keys only, host keys checked.

Every call is an argument list (never a local shell string); the one remote command string
ssh needs is built with ``shlex.join``, so every remote argument is quoted. Options on every
call: ``BatchMode=yes`` (never a password or passphrase prompt), ``StrictHostKeyChecking=yes``
(an unknown or changed host key fails), ``ConnectTimeout`` and ``ServerAliveInterval`` /
``ServerAliveCountMax`` (a dead or silent link fails within about ``timeout`` seconds).
The user's ~/.ssh/config still applies (aliases, ProxyJump), except where these override it.
ssh's own failures become one ``ConnectionFailed`` line that says what to do.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ConnectionFailed, UsageError
from edgekit.helpers.limits import MAX_SECONDS, finite
from edgekit.helpers.records import keyword_only

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_USER = r"[A-Za-z0-9._][A-Za-z0-9._-]*"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_IPV6 = r"\[[0-9A-Fa-f:.]+\]"
_HOST = re.compile(rf"^(?:(?P<user>{_USER})@)?(?P<host>{_NAME}|{_IPV6})$")


@dataclass(frozen=True)
class Host:
    """Where to deploy: ``user@host`` and a port."""

    host: str  # a name or address; an IPv6 address without brackets
    user: str = ""  # "" lets ssh choose (~/.ssh/config, else the local user name)
    port: int = 22

    @property
    def destination(self) -> str:
        """``user@host`` as ssh takes it."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        """How messages name it: ``pi@raspberrypi.local`` (``:port`` when not 22)."""
        return self.destination + ("" if self.port == 22 else f":{self.port}")

    def scp_path(self, path: str) -> str:
        """``user@host:path`` for scp (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}:{path}"

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts lists this host under: ``host`` or ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_host(text: str, port: int | None = None) -> Host:
    """``[USER@]HOST`` -> Host; UsageError naming what is wrong."""
    text = text.strip()
    host_part = text.rsplit("@", 1)[-1]
    if ":" in host_part and not host_part.startswith("["):
        if host_part.count(":") == 1:
            raise UsageError(f"host takes USER@HOST, not {text!r}: give the port as `port`",
                             param="host")
        raise UsageError(f"host {text!r}: write an IPv6 address in brackets (pi@[fe80::1])",
                         param="host")
    match = _HOST.match(text)
    if match is None:
        raise UsageError(f"host takes USER@HOST (e.g. pi@raspberrypi.local or pi@192.168.1.20),"
                         f" not {text!r}", param="host")
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"port takes 1..65535, not {port}", param="port")
    return Host(match["host"].strip("[]"), match["user"] or "", port or 22)


@keyword_only
@dataclass(frozen=True)
class SshOptions:
    """How to authenticate and how long a silent link is tolerated."""

    identity: Path | None = None  # private key (-i); None: ssh's defaults and agent
    known_hosts: Path | None = None  # the only known_hosts file to trust; None: ssh's own
    timeout: float = 60.0  # seconds without an answer before the link counts as lost

    def __post_init__(self) -> None:
        finite(self.timeout, "timeout (seconds a silent link is tolerated)", low=3,
               high=MAX_SECONDS)
        if self.identity is not None and not Path(self.identity).is_file():
            raise UsageError(f"identity {self.identity}: no such key file", param="identity")
        if self.known_hosts is not None and not Path(self.known_hosts).is_file():
            raise UsageError(f"known_hosts {self.known_hosts}: no such file",
                             param="known_hosts")


Echo = Callable[[list[str], str], None]  # (argv, note) for --dry-run


class SshClient:
    """Runs ssh and scp to one host; in dry-run mode it only shows what it would run."""

    def __init__(self, host: Host, options: SshOptions, echo: Echo | None = None) -> None:
        self.host = host
        self.options = options
        self.echo = echo  # set: dry run, commands are shown and not run

    @property
    def dry_run(self) -> bool:
        return self.echo is not None

    def common_options(self) -> list[str]:
        """``-o`` options shared by ssh and scp."""
        timeout = self.options.timeout
        interval = max(1, round(timeout / 3))
        settings = [
            ("BatchMode", "yes"),
            ("StrictHostKeyChecking", "yes"),
            ("ConnectTimeout", str(max(1, round(min(timeout, 30))))),
            ("ServerAliveInterval", str(interval)),
            ("ServerAliveCountMax", "3"),
            ("LogLevel", "ERROR"),
        ]
        if self.options.known_hosts is not None:
            settings += [("UserKnownHostsFile", str(Path(self.options.known_hosts).resolve())),
                         ("GlobalKnownHostsFile", "/dev/null")]
        if self.options.identity is not None:
            settings += [("IdentitiesOnly", "yes"), ("IdentityAgent", "none")]
        args = [arg for name, value in settings for arg in ("-o", f"{name}={value}")]
        if self.options.identity is not None:
            args += ["-i", str(Path(self.options.identity).resolve())]
        return args

    def ssh_argv(self, remote: list[str]) -> list[str]:
        """ssh's argument list to run ``remote`` (an argument list, quoted here) on the host."""
        return ["ssh", *self.common_options(), "-p", str(self.host.port), "--",
                self.host.destination, shlex.join(remote)]

    def scp_argv(self, sources: list[Path], remote_dir: str) -> list[str]:
        """scp's argument list to copy local files into ``remote_dir`` (relative to home)."""
        return ["scp", "-q", *self.common_options(), "-P", str(self.host.port), "--",
                *[str(Path(s).resolve()) for s in sources],
                self.host.scp_path(remote_dir.rstrip("/") + "/")]

    def run(self, remote: list[str], *, step: str, stdin: bytes | None = None,
            timeout: float = 600, note: str = "") -> subprocess.CompletedProcess[bytes]:
        """Run ``remote`` on the host; ConnectionFailed when ssh itself fails (exit 255)."""
        argv = self.ssh_argv(remote)
        if self.echo is not None:
            self.echo(argv, note)
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        try:
            result = subprocess.run(argv, input=stdin if stdin is not None else b"",
                                    capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ConnectionFailed(f"{step}: no result from {self.host.label} within "
                                   f"{timeout:.0f} s") from None
        except FileNotFoundError:
            raise ConnectionFailed("the ssh command is not installed here: install OpenSSH's "
                                   "client (apt-get install openssh-client)") from None
        if result.returncode == 255:
            raise self.failure(result.stderr.decode(errors="replace"), step)
        return result

    def start(self, remote: list[str], *, note: str = "") -> subprocess.Popen[bytes] | None:
        """Start ``remote`` on the host and return at once, its stdin, stdout and stderr piped
        (a session that lives beside the others); None in a dry run."""
        argv = self.ssh_argv(remote)
        if self.echo is not None:
            self.echo(argv, note)
            return None
        try:
            return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise ConnectionFailed("the ssh command is not installed here: install OpenSSH's "
                                   "client (apt-get install openssh-client)") from None

    def upload(self, sources: list[Path], remote_dir: str, *, step: str) -> None:
        """Copy ``sources`` into ``remote_dir`` with scp; ConnectionFailed on any failure."""
        argv = self.scp_argv(sources, remote_dir)
        if self.echo is not None:
            self.echo(argv, "")
            return
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                    check=False)
        except FileNotFoundError:
            raise ConnectionFailed("the scp command is not installed here: install OpenSSH's "
                                   "client (apt-get install openssh-client)") from None
        if result.returncode != 0:
            raise self.failure(result.stderr.decode(errors="replace"), step)

    def failure(self, stderr: str, step: str) -> ConnectionFailed:
        """One line that says what ssh's failure means and what to do about it."""
        return ConnectionFailed(f"{step}: {explain(stderr, self.host, self.options)}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def explain(stderr: str, host: Host, options: SshOptions) -> str:
    """ssh's or scp's stderr as one sentence a person can act on."""
    known = str(options.known_hosts) if options.known_hosts else DEFAULT_KNOWN_HOSTS
    where = f"{host.host} port {host.port}"
    text = stderr
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return (f"the host key of {host.known_hosts_name} is not the one in {known}: it CHANGED "
                "since you trusted it (a reinstalled device, or someone in between). If you "
                f"reinstalled it: ssh-keygen -R '{host.known_hosts_name}' -f {known}, then check "
                "and trust the new key")
    if "Host key verification failed" in text or "host key is known" in text:
        return (f"{host.known_hosts_name} is not a known host (not in {known}) and host-key "
                "checking stays on. Check its fingerprint on the device (ssh-keygen -lf "
                "/etc/ssh/ssh_host_ed25519_key.pub), then trust it with: "
                f"ssh-keyscan -p {host.port} {host.host} >> {known}")
    if "Permission denied" in text and "publickey" in text:
        key = f"the key {options.identity}" if options.identity else "your SSH keys"
        return (f"{host.destination} refused {key} (deploy uses keys only, never a password). "
                f"Install the public key on the device: ssh-copy-id -p {host.port} "
                + (f"-i {options.identity}.pub " if options.identity else "")
                + f"{host.destination} (a key with a passphrase needs ssh-agent)")
    if "Connection refused" in text:
        return (f"nothing accepts SSH connections at {where} (connection refused): is the "
                "device's SSH server on (sudo systemctl enable --now ssh), and the port right?")
    if "Could not resolve hostname" in text:
        return f"cannot resolve the host name {host.host!r}: check the name, or use its address"
    if "No route to host" in text or "Network is unreachable" in text:
        return f"no route to {host.host} ({_last_line(text)}): is it on this network?"
    if "Connection timed out" in text or "Operation timed out" in text:
        return (f"{where} did not answer within {options.timeout:.0f} s (connection timed "
                "out): is the device on and on this network?")
    if "Timeout, server" in text or "not responding" in text:
        return (f"the link to {host.label} stalled (no answer for about "
                f"{options.timeout:.0f} s)")
    if "No space left on device" in text:
        return f"the device's disk is full ({_last_line(text)})"
    dropped = ("Connection reset", "Broken pipe", "Connection closed", "closed by remote host",
               "lost connection", "client_loop", "Connection to", "Read from remote host")
    if any(marker in text for marker in dropped):
        return f"the link to {host.label} dropped ({_last_line(text)})"
    return f"ssh to {host.label} failed: {_last_line(text)}"
