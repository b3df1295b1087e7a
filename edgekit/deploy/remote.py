"""The device, seen from the workstation: each step is one ssh call to the device agent.

``python3 - COMMAND 'JSON'`` runs with the agent's source (``agent.py``) on stdin and answers
with one JSON object. A dry run shows each call and answers as an empty device would.

The device's lock is held by one more ssh session for the whole deploy or rollback: the agent
runs as ``python3 -c BOOT N hold 'JSON'``, reads its N-byte source from stdin, takes the lock,
answers one line, and keeps it while stdin stays open; a heartbeat line every few seconds
tells it the workstation is still there.
"""
from __future__ import annotations

import getpass
import json
import os
import secrets
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekit.deploy.ssh import SshClient
from edgekit.errors import DeployError
from edgekit.subproc import last_json

AGENT = Path(__file__).with_name("agent.py")
UNIT_NAME = "edgekit.service"
# Seconds a step may take on the device before the workstation gives up on it.
TIMEOUTS = {"probe": 180, "preview": 600, "stage": 900, "verify": 900, "venv": 3600, "smoke": 1800,
            "activate": 300, "rollback": 900, "serve_token": 60, "service_env": 60,
            "cleanup": 300}
# Commands that change the device: they run only while this deploy holds the device's lock.
LOCKED = {"stage", "verify", "venv", "smoke", "activate", "rollback", "serve_token",
          "service_env", "cleanup"}
# Runs the agent from the first N bytes of stdin, leaving the rest of stdin to it.
BOOT = ("import sys;n=int(sys.argv.pop(1));"
        "exec(compile(sys.stdin.buffer.read(n),'edgekit-agent','exec'),{'__name__':'__main__'})")
HEARTBEAT_SECONDS = 5.0


class Device:
    """Calls into the agent on one device, under ``base`` (relative to the login folder)."""

    def __init__(self, client: SshClient, python: str = "python3", base: str = "edgekit"):
        self.client = client
        self.python = python
        self.base = base
        # A dry run's read-only look at the device (``preview``), when it could be asked: the
        # simulated answers then say what this device would do, not what an empty one would.
        self.known: dict[str, Any] | None = None
        self.source = AGENT.read_bytes()
        self.token = ""  # the lock's token while this deploy holds it

    def call(self, command: str, step: str, timeout: float | None = None,
             **payload: Any) -> dict[str, Any]:
        """Run one agent command; DeployError (or ConnectionFailed) when it fails."""
        payload = {"base": self.base, "unit": UNIT_NAME, **payload}
        if command in LOCKED:
            payload["lock"] = self.token
        remote = [self.python, "-", command, json.dumps(payload, separators=(",", ":"))]
        note = f"stdin: edgekit's device agent ({AGENT.name}, {len(self.source) // 1024} KB)"
        result = self.client.run(remote, step=step, stdin=self.source,
                                 timeout=timeout or TIMEOUTS[command], note=note)
        if self.client.dry_run:
            return simulate(command, payload, self.known)
        answer = _answer(result.stdout)
        if answer is None:
            raise DeployError(f"{step}: {self._no_answer(result.returncode, result.stderr)}")
        if not answer.get("ok"):
            raise DeployError(f"{step}: {answer.get('error', 'failed')}")
        return answer

    @contextmanager
    def lock(self, what: str, wait: float = 0.0) -> Iterator[dict[str, Any]]:
        """Hold the device's lock for the ``with`` block; DeployError naming the holder when
        another deploy has it (after waiting up to ``wait`` seconds). It yields the hold's
        answer, with ``probe``: the device as the lock found it (no extra round trip)."""
        token = secrets.token_hex(8)
        owner = {"what": what, "workstation": socket.gethostname(), "workstation_pid": os.getpid(),
                 "user": getpass.getuser()}
        payload = {"base": self.base, "token": token, "wait": wait, "owner": owner,
                   "stale_after": max(60.0, 3 * self.client.options.timeout)}
        remote = [self.python, "-c", BOOT, str(len(self.source)), "hold",
                  json.dumps(payload, separators=(",", ":"))]
        note = (f"stdin: edgekit's device agent ({len(self.source) // 1024} KB), then a "
                f"heartbeat line every {HEARTBEAT_SECONDS:g} s; held until this deploy closes it")
        session = self.client.start(remote, note=note)
        if session is None:  # dry run
            self.token = token
            yield {"ok": True, "probe": simulate("probe", payload, self.known)}
            self.token = ""
            return
        step = "taking the device's deploy lock"
        try:
            answer = self._first_answer(session, wait + self.client.options.timeout + 30, step)
            stop = threading.Event()
            beat = threading.Thread(target=_heartbeat, args=(session, stop), daemon=True)
            beat.start()
            self.token = token
            try:
                yield answer
            finally:
                self.token = ""
                stop.set()
                beat.join()
        finally:
            _close(session)

    def _first_answer(self, session: subprocess.Popen[bytes], timeout: float,
                      step: str) -> dict[str, Any]:
        """Send the agent, read the one line the hold answers; raise when it is not "ok"."""
        assert session.stdin is not None and session.stdout is not None
        try:
            session.stdin.write(self.source)
            session.stdin.flush()
        except BrokenPipeError:
            pass  # ssh already ended: its stderr says why
        line = _read_line(session, timeout)
        answer = _answer(line)
        if answer is None:
            _close(session)
            stderr = session.stderr.read() if session.stderr else b""
            if session.returncode == 255:
                raise self.client.failure(stderr.decode(errors="replace"), step)
            raise DeployError(f"{step}: {self._no_answer(session.returncode or 0, stderr)}")
        if not answer.get("ok"):
            raise DeployError(f"{self.client.host.label}: {answer.get('error', 'failed')}")
        return answer

    def _no_answer(self, code: int, stderr: bytes) -> str:
        text = stderr.decode(errors="replace").strip()
        last = text.splitlines()[-1] if text else f"exit status {code}"
        if code == 127 or "not found" in text:
            return (f"the device has no {self.python} ({last}): install Python 3 there "
                    "(sudo apt-get install python3-venv), or pass --python PATH")
        if "SyntaxError" in text:
            return (f"the device's {self.python} is too old for edgekit's agent ({last}): "
                    "it needs Python 3.7 or newer")
        return f"the device agent gave no answer ({last})"


def _read_line(session: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The session's first line of output (b"" when it ends or stays silent ``timeout`` s)."""
    assert session.stdout is not None
    fd = session.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def _heartbeat(session: subprocess.Popen[bytes], stop: threading.Event) -> None:
    """Tell the device's lock holder this deploy is alive, until ``stop``."""
    assert session.stdin is not None
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            session.stdin.write(b"\n")
            session.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            return  # the session ended: the next step that changes something finds out


def _close(session: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """End the hold: close its stdin (the device releases the lock), wait for ssh to exit."""
    if session.stdin is not None and not session.stdin.closed:
        try:
            session.stdin.close()
        except OSError:
            pass
    try:
        session.wait(timeout)
    except subprocess.TimeoutExpired:
        session.kill()
        session.wait()


def _answer(stdout: bytes) -> dict[str, Any] | None:
    answer = last_json(stdout)
    return answer if isinstance(answer, dict) else None


def simulate(command: str, payload: dict[str, Any],
             known: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the device answers in a dry run, which changes nothing: as ``known`` (the agent's
    read-only ``preview`` of it) says, else as an empty, healthy device would."""
    if command == "probe":
        if known is not None:
            return {**known, "dry_run": True}
        return {"ok": True, "releases": [], "venvs": [], "current": None, "incomplete": [],
                "free_bytes": None, "systemd": None, "unit": None, "dry_run": True}
    if command == "stage":
        held = set(known["held"]) if known is not None else set()
        missing = [f for f in payload["files"] if f["path"] not in held]
        return {"ok": True, "release": f"<time>-{payload['content_hash'][:8]}",
                "incoming": f"{payload['base']}/releases/.incoming-<time>-"
                            f"{payload['content_hash'][:8]}",
                "linked": [f["path"] for f in payload["files"] if f["path"] in held],
                "missing": [f["path"] for f in missing],
                "missing_bytes": sum(f["size"] for f in missing),
                "removed": list(known["incomplete"]) if known is not None else []}
    if command == "venv":
        reused = known is not None and any(v["key"] == payload["key"] and v["complete"]
                                           for v in known.get("venvs", []))
        return {"ok": True, "reused": reused, "key": payload["key"]}
    if command == "serve_token":
        return {"ok": True, "env_file": f"{payload['base']}/service.env", "created": True,
                "token": "<made on the device>"}
    if command == "activate":
        return {"ok": True, "current": payload["release"], "previous": None, "pruned": [],
                "pruned_venvs": [], "service": None}
    return {"ok": True}
