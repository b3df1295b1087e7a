"""Real OpenSSH servers for tests, and a TCP proxy that can cut an SSH link mid-transfer.

A plain module (no pytest here) so tests and helpers can import it; the fixtures that use it
live in ``conftest_sshd.py``. Everything talks to the system OpenSSH client and server, with
throwaway keys, on 127.0.0.1 only. Linux only (process trees are read from /proc).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from system_packages import install_hint

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Self

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
OPENSSH = ("openssh-server", "openssh-client")
LOOPBACK = "127.0.0.1"
MARKER = "EDGEKIT_TEST_SSHD"  # environment variable set in every session of a LoopbackSshd


class SshdUnavailable(RuntimeError):
    """The OpenSSH server or client is not installed; the message says what to install."""


@dataclasses.dataclass(frozen=True)
class SshServer:
    """How to reach a test SSH server with the system OpenSSH client, host key checked."""

    host: str
    port: int
    user: str
    identity_file: Path  # private key; its public half is the only authorized key
    known_hosts_file: Path  # holds exactly "[host]:port ssh-ed25519 AAAA..."
    host_public_key: str  # "ssh-ed25519 AAAA..."
    root_dir: Path  # this machine's folder for the server's files (the Pi: its userland root)
    home: str  # remote folder where sessions start: relative paths and ~ land here
    log_file: Path | None = None  # the server's log, to see what the remote side noticed
    remote_root: Path = Path("/")  # where the server's / is on this machine (the Pi: root_dir)

    @property
    def destination(self) -> str:
        """``user@host`` for ssh, or the start of ``user@host:path`` for scp."""
        return f"{self.user}@{self.host}"

    def client_options(
        self,
        identity_file: Path | None = None,
        known_hosts_file: Path | None = None,
        extra: Sequence[str] = (),
    ) -> list[str]:
        """Options shared by ssh, scp and sftp: key only, no prompts, host key must match.

        ``identity_file`` / ``known_hosts_file`` replace the server's own (for the wrong-key and
        unknown-host cases); ``extra`` is appended (``["-o", "ServerAliveInterval=1"]``).
        """
        settings = {
            "BatchMode": "yes",  # never prompt: fail instead
            "StrictHostKeyChecking": "yes",  # an unknown or changed host key fails
            "UserKnownHostsFile": known_hosts_file or self.known_hosts_file,
            "GlobalKnownHostsFile": "/dev/null",
            "IdentitiesOnly": "yes",  # only this key, no agent and no ~/.ssh keys
            "IdentityAgent": "none",
            "ConnectTimeout": "20",
        }
        pairs = [arg for name, value in settings.items() for arg in ("-o", f"{name}={value}")]
        return [*pairs, "-i", str(identity_file or self.identity_file), *extra]

    def ssh_command(self, command: str | list[str], **options: Any) -> list[str]:
        """The argument list that runs ``command`` remotely (a list is quoted for the shell)."""
        if not isinstance(command, str):
            command = shlex.join(command)
        connect = [*self.client_options(**options), "-p", str(self.port), self.destination]
        return ["ssh", *connect, "--", command]

    def scp_command(self, sources: list[str | Path], target: str, **options: Any) -> list[str]:
        """scp ``sources`` (local paths) to ``target`` (a remote path, relative to ``home``)."""
        connect = [*self.client_options(**options), "-P", str(self.port)]
        return ["scp", "-q", *connect, *map(str, sources), f"{self.destination}:{target}"]

    def run(
        self,
        command: str | list[str],
        *,
        input: bytes | None = None,
        timeout: float = 120,
        **options: Any,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` on the server over ssh; never raises on a non-zero exit.

        ``options`` go to ``client_options`` (identity_file, known_hosts_file, extra).
        """
        return subprocess.run(
            self.ssh_command(command, **options),
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def local_path(self, remote_path: str) -> Path:
        """Where a remote path (absolute, or relative to ``home``) is on this machine."""
        absolute = Path(self.home, remote_path)
        return self.remote_root / absolute.relative_to("/")

    def through(self, port: int) -> SshServer:
        """This server reached through another loopback port (a proxy), host key still checked."""
        known_hosts = self.known_hosts_file.with_name(f"known_hosts-{port}")
        known_hosts.write_text(known_hosts_line(self.host, port, self.host_public_key))
        return dataclasses.replace(self, port=port, known_hosts_file=known_hosts)


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    """A known_hosts line for ``host:port`` (the bracketed form ssh uses for non-22 ports)."""
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {public_key}\n"


def make_key_pair(path: Path, comment: str = "edgekit-test") -> Path:
    """Write a fresh passphrase-less ed25519 key pair at ``path`` (+ .pub); return ``path``."""
    if shutil.which("ssh-keygen") is None:
        raise SshdUnavailable(f"ssh-keygen not found: {install_hint(*OPENSSH)}")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def public_key(private_key: Path) -> str:
    """``type base64`` of the public half of a key made by ``make_key_pair``."""
    kind, blob, *_ = Path(f"{private_key}.pub").read_text().split()
    return f"{kind} {blob}"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def marked_pids(assignment: str) -> list[int]:
    """Processes whose initial environment holds ``assignment`` (``NAME=value``)."""
    wanted = assignment.encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        if b"\0" + wanted in b"\0" + environ:
            found.append(int(entry.name))
    return found


def sshd_config(root: Path, port: int, user: str, home: Path) -> str:
    """An sshd_config that lets exactly ``user`` in with the one authorized key."""
    lines = [
        f"ListenAddress {LOOPBACK}",
        f"Port {port}",
        f"HostKey {root / 'ssh_host_ed25519_key'}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}",
        f"AllowUsers {user}",
        # Tests run as root (CI too): root may log in, with a key only.
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # The files live under /tmp (world-writable), which StrictModes would refuse.
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "PermitTunnel no",
        "LogLevel VERBOSE",
        "LoginGraceTime 30",
        # Marks every session process, even one orphaned when its connection dropped.
        f"SetEnv {MARKER}={root}",
        # Keep sessions out of the real home of the account (root's /root in CI): commands run
        # in `home` with HOME set to it, and sftp (which scp uses) starts there too.
        f"ForceCommand {root / 'session.sh'}",
        f"Subsystem sftp {SFTP_SERVER} -d {home}",
    ]
    return "\n".join(lines) + "\n"


def session_script(home: Path) -> str:
    """The ForceCommand: run the client's command (or a login shell) in ``home``."""
    return f"""#!/bin/sh
export HOME={shlex.quote(str(home))}
cd "$HOME" || exit 1
if [ -z "$SSH_ORIGINAL_COMMAND" ]; then exec "$SHELL" -l; fi
exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
"""


class LoopbackSshd:
    """Debian's sshd in the foreground on a free 127.0.0.1 port, with throwaway keys.

    Use as a context manager; ``server`` describes it. Logs in as the current user (root in
    CI, with a key only). Everything lives in ``root_dir`` (a new temporary folder by default).
    """

    def __init__(self, root_dir: Path | None = None) -> None:
        if not SSHD.exists() or shutil.which("ssh") is None:
            raise SshdUnavailable(f"{SSHD} or ssh not found: {install_hint(*OPENSSH)}")
        self.root_dir = Path(root_dir or tempfile.mkdtemp(prefix="edgekit-sshd-"))
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.server: SshServer | None = None

    def start(self, attempts: int = 3) -> SshServer:
        """Start sshd and wait until it listens; retry on another port if one was taken."""
        root = self.root_dir
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        make_key_pair(root / "ssh_host_ed25519_key", "edgekit-test-host")
        identity = make_key_pair(root / "id_ed25519")
        (root / "authorized_keys").write_text(public_key(identity) + "\n")
        session = root / "session.sh"
        session.write_text(session_script(home))
        session.chmod(0o755)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        user = getpass.getuser()
        port, known_hosts, host_key = self._listen(
            lambda port: sshd_config(root, port, user, home), attempts)
        self.server = SshServer(
            LOOPBACK,
            port,
            user,
            identity,
            known_hosts,
            host_key,
            root,
            str(home),
            root / "sshd.log",
        )
        return self.server

    def _listen(self, config: Callable[[int], str], attempts: int) -> tuple[int, Path, str]:
        """Write ``config(port)`` and start sshd on a free port, another one if it was taken;
        the port, the known_hosts file that trusts it, and its host key."""
        root = self.root_dir
        for attempt in range(attempts):
            port = free_port()
            (root / "sshd_config").write_text(config(port))
            if self._launch(port):
                break
            if attempt == attempts - 1:
                raise RuntimeError(f"sshd did not start:\n{self.log_text()}")
        host_key = public_key(root / "ssh_host_ed25519_key")
        known_hosts = root / "known_hosts"
        known_hosts.write_text(known_hosts_line(LOOPBACK, port, host_key))
        return port, known_hosts, host_key

    def _launch(self, port: int, timeout: float = 10) -> bool:
        """Run sshd on ``port``; True once it listens, False if it exited (port taken)."""
        log = self.root_dir / "sshd.log"
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.root_dir / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
            )
        ready = f"Server listening on {LOOPBACK} port {port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready in self.log_text():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd did not listen within {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        """What sshd has logged so far."""
        log = self.root_dir / "sshd.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def session_pids(self) -> list[int]:
        """The processes serving connections now: sshd's children and what the sessions run.

        Includes session processes whose connection dropped and whose sshd already exited.
        """
        pids = set(marked_pids(f"{MARKER}={self.root_dir}"))
        if self.process is not None and self.process.poll() is None:
            pids.update(child_pids(self.process.pid))
        return sorted(pids)

    def stop(self, timeout: float = 5) -> None:
        """Stop sshd and every session it started."""
        if self.process is None:
            return
        pids = [self.process.pid, *self.session_pids()]
        pids = list(dict.fromkeys(pids))
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in pids[1:]:
            _wait_gone(pid, timeout)
        self.process = None

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait for ``pid`` to exit; SIGKILL it if it will not."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    _signal(pid, signal.SIGKILL)


class CuttingProxy:
    """A loopback TCP proxy to ``target`` that can cut its connections like a dropped link.

    ``cut_after(upload=N)`` arms a one-shot cut: once N more bytes have gone client -> server
    (``download=`` for server -> client), the connection carrying them gets exactly those bytes
    and is cut; later connections pass untouched. ``cut()`` cuts every open connection now.
    ``mode="reset"`` ends both sides at once with a TCP reset; ``mode="stall"`` stops
    forwarding but holds the sockets open (a silent link) until ``stop()``.
    """

    def __init__(self, target_host: str, target_port: int, mode: str = "reset") -> None:
        if mode not in ("reset", "stall"):
            raise ValueError(f"mode must be 'reset' or 'stall', not {mode!r}")
        self.target = (target_host, target_port)
        self.mode = mode
        self.bytes_up = 0  # client -> server, forwarded so far
        self.bytes_down = 0
        self.connections = 0  # accepted so far
        self.cuts = 0  # connections cut so far
        self.cut_done = threading.Event()  # set when a cut has happened
        self._limits: dict[str, int | None] = {"up": None, "down": None}
        self._lock = threading.Lock()
        self._open: set[threading.Event] = set()  # one "cut this one" event per connection
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.1)  # so the accept loop sees stop() promptly
        self.port: int = self._listener.getsockname()[1]

    def start(self) -> Self:
        """Accept connections in a background thread."""
        self._spawn(self._accept_loop)
        return self

    def cut_after(self, upload: int | None = None, download: int | None = None) -> None:
        """Arm a one-shot cut after ``upload`` / ``download`` more bytes, whichever is first."""
        with self._lock:
            self._limits = {"up": upload, "down": download}
            self.cut_done.clear()

    def cut(self) -> None:
        """Cut every connection open now."""
        with self._lock:
            for cut in self._open:
                cut.set()

    def stop(self) -> None:
        """Close the listener and every connection; wait for the threads."""
        self._stopping.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                continue
            cut = threading.Event()
            with self._lock:
                self.connections += 1
                self._open.add(cut)
            self._spawn(self._serve, client, upstream, cut)

    def _serve(self, client: socket.socket, upstream: socket.socket, cut: threading.Event) -> None:
        try:
            self._pump(client, upstream, cut)
        finally:
            with self._lock:
                self._open.discard(cut)
        if cut.is_set():
            self._end(client, upstream)
        elif self._stopping.is_set():
            _reset(client)
            _reset(upstream)
        else:
            client.close()
            upstream.close()

    def _pump(self, client: socket.socket, upstream: socket.socket, cut: threading.Event) -> None:
        """Forward both ways, half-closes included, until both sides are done or it is cut."""
        peer = {client: upstream, upstream: client}
        direction = {client: "up", upstream: "down"}  # of the bytes read from that socket
        pending = {client: b"", upstream: b""}  # bytes still to write to that socket
        reading = {client: True, upstream: True}
        draining = False  # the limit was hit: deliver what is pending, then cut
        for sock in peer:
            sock.setblocking(False)
        while not (cut.is_set() or self._stopping.is_set()):
            readable = [s for s in peer if reading[s] and not pending[peer[s]] and not draining]
            writable = [s for s in peer if pending[s]]
            if draining and not writable:
                cut.set()
                return
            if not readable and not writable:
                return
            ready_r, ready_w, _ = select.select(readable, writable, [], 0.05)
            for sock in ready_w:
                try:
                    sent = sock.send(pending[sock])
                except BlockingIOError:
                    continue
                except OSError:
                    return
                pending[sock] = pending[sock][sent:]
                if not pending[sock] and not reading[peer[sock]]:
                    _shutdown_write(sock)
            for sock in ready_r:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # this side finished sending: pass the half-close on
                    reading[sock] = False
                    if not pending[peer[sock]]:
                        _shutdown_write(peer[sock])
                    continue
                data, hit = self._take(direction[sock], data)
                pending[peer[sock]] += data
                draining = draining or hit

    def _take(self, direction: str, data: bytes) -> tuple[bytes, bool]:
        """The part of ``data`` to forward, and whether the link is cut after it."""
        with self._lock:
            limit = self._limits[direction]
            hit = limit is not None and len(data) >= limit
            if hit:
                data = data[:limit]
                self._limits = {"up": None, "down": None}
            elif limit is not None:
                self._limits[direction] = limit - len(data)
            if direction == "up":
                self.bytes_up += len(data)
            else:
                self.bytes_down += len(data)
        return data, hit

    def _end(self, client: socket.socket, upstream: socket.socket) -> None:
        """Cut the link: reset both sides, or (stall) hold them silently until stop()."""
        with self._lock:
            self.cuts += 1
        if self.mode == "stall":
            self.cut_done.set()
            self._stopping.wait()
        _reset(client)
        _reset(upstream)
        self.cut_done.set()


def _shutdown_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (what a peer sees when a link drops hard)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
