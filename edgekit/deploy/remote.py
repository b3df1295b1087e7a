"""The steps' links to a device over ssh: each agent command is one ssh call.

``python3 - COMMAND 'JSON'`` runs with the agent's source (``shipping.agent_source``) on stdin
and answers with one JSON object. ``SshLink`` runs them; ``DryRunLink`` shows each call and
answers as the device's read-only preview says (or as an empty device would).

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
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekit.deploy.shipping import agent_source
from edgekit.deploy.ssh import SshClient
from edgekit.deploy.steps import (
    BOOT,
    HEARTBEAT_SECONDS,
    UNIT_NAME,
    Link,
    close,
    holding,
    private_source,
    read_line,
)
from edgekit.errors import ConnectionFailed, DeployError, EdgekitError
from edgekit.helpers.subproc import last_json

STEPS = Path(__file__).with_name("steps.py")  # the Ansible action runs the same steps
# Seconds a step may take on the device before the workstation gives up on it.
TIMEOUTS = {"probe": 180, "preview": 600, "stage": 900, "verify": 900, "venv": 3600, "smoke": 1800,
            "activate": 300, "rollback": 900, "serve_token": 60, "service_env": 60,
            "cleanup": 300, "imx500": 900}
# Commands that change the device: they run only while this deploy holds the device's lock.
LOCKED = {"stage", "verify", "venv", "smoke", "activate", "rollback", "serve_token",
          "service_env", "cleanup", "imx500"}


class SshLink(Link):
    """The agent on one device over ssh, under ``base`` (relative to the login folder)."""

    def __init__(self, client: SshClient, python: str = "python3", base: str = "edgekit"):
        self.client = client
        self.python = python
        self.base = base
        self.label = client.host.label
        self.address = client.host.host
        self.source = agent_source()
        self.token = ""  # the lock's token while this deploy holds it

    def remote(self, command: str, payload: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """The agent's command line for ``command``, and its payload as sent."""
        payload = {"base": self.base, "unit": UNIT_NAME, **payload}
        if command in LOCKED:
            payload["lock"] = self.token
        return [self.python, "-", command, json.dumps(payload, separators=(",", ":"))], payload

    def timeout(self, command: str, payload: dict[str, Any]) -> float:
        """Seconds ``command`` may take; a switch also watches the service for ``settle``."""
        return TIMEOUTS[command] + 2 * float(payload.get("settle", 0))

    def run(self, command: str, step: str, payload: dict[str, Any]
            ) -> tuple[subprocess.CompletedProcess[bytes], dict[str, Any]]:
        # secrets: in the source on stdin, never argv
        source = private_source(self.source, payload.pop("private", None))
        remote, sent = self.remote(command, payload)
        note = f"stdin: edgekit's device agent ({len(self.source) // 1024} KB)"
        result = self.client.run(remote, step=step, stdin=source,
                                 timeout=self.timeout(command, payload), note=note)
        return result, sent

    def call(self, command: str, step: str, **payload: Any) -> dict[str, Any]:
        """Run one agent command; DeployError (or ConnectionFailed) when it fails."""
        result, _ = self.run(command, step, payload)
        return self.checked(step, result.stdout, result.returncode, result.stderr)

    def checked(self, step: str, stdout: bytes, code: int, stderr: bytes) -> dict[str, Any]:
        """The agent's answer; DeployError when there is none, or it says it failed."""
        answer = _answer(stdout)
        if answer is None:
            raise DeployError(f"{step}: {self._no_answer(code, stderr)}")
        if not answer.get("ok"):
            raise DeployError(f"{step}: {answer.get('error', 'failed')}")
        return answer

    def send(self, files: list[tuple[str, str]], incoming: str, step: str) -> None:
        """scp the files into their folders under ``incoming``: one scp per folder."""
        for folder in sorted({path.split("/")[0] for _, path in files}):
            self.client.upload([Path(local) for local, path in files
                                if path.startswith(folder + "/")],
                               f"{incoming}/{folder}", step=step)

    def hold_argv(self, what: str, wait: float) -> tuple[list[str], str, str]:
        """The hold's command line, its note for a dry run, and its token."""
        token = secrets.token_hex(8)
        owner = {"what": what, "workstation": socket.gethostname(), "workstation_pid": os.getpid(),
                 "user": getpass.getuser()}
        payload = {"base": self.base, "token": token, "wait": wait, "owner": owner,
                   "stale_after": max(60.0, 3 * self.client.options.timeout)}
        remote = [self.python, "-c", BOOT, str(len(self.source)), "hold",
                  json.dumps(payload, separators=(",", ":"))]
        note = (f"stdin: edgekit's device agent ({len(self.source) // 1024} KB), then a "
                f"heartbeat line every {HEARTBEAT_SECONDS:g} s; held until this deploy closes it")
        return remote, note, token

    @contextmanager
    def lock(self, what: str, wait: float = 0.0) -> Iterator[dict[str, Any]]:
        """Hold the device's lock for the ``with`` block; DeployError naming the holder when
        another deploy has it (after waiting up to ``wait`` seconds). It yields the hold's
        answer, with ``probe``: the device as the lock found it (no extra round trip)."""
        remote, note, token = self.hold_argv(what, wait)
        session = self.client.start(remote, note=note)
        assert session is not None
        step = "taking the device's deploy lock"
        with holding(self, session, token, lambda: self._first_answer(
                session, wait + self.client.options.timeout + 30, step)) as answer:
            yield answer

    def error(self, step: str, message: str, kind: str = "device") -> Exception:
        return DeployError(message)

    def failed(self, exc: BaseException) -> bool:
        return isinstance(exc, EdgekitError)

    def lost(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionFailed)

    def amend(self, exc: BaseException, message: str) -> BaseException:
        kind = type(exc) if isinstance(exc, (ConnectionFailed, DeployError)) else DeployError
        return kind(message)

    def _first_answer(self, session: subprocess.Popen[bytes], timeout: float,
                      step: str) -> dict[str, Any]:
        """Send the agent, read the one line the hold answers; raise when it is not "ok"."""
        assert session.stdin is not None and session.stdout is not None
        try:
            session.stdin.write(self.source)
            session.stdin.flush()
        except BrokenPipeError:
            pass  # ssh already ended: its stderr says why
        line = read_line(session, timeout)
        answer = _answer(line)
        if answer is None:
            close(session)
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
                    "(sudo apt-get install python3-venv), or pass --release python=PATH")
        if "SyntaxError" in text:
            return (f"the device's {self.python} is too old for edgekit's agent ({last}): "
                    "it needs Python 3.7 or newer")
        return f"the device agent gave no answer ({last})"


def _answer(stdout: bytes) -> dict[str, Any] | None:
    answer = last_json(stdout)
    return answer if isinstance(answer, dict) else None


class DryRunLink(SshLink):
    """A dry run: every command is shown (through the client's echo) and none is run; the
    answers are as ``known`` (the agent's read-only ``preview`` of the device) says, else as an
    empty, healthy device's."""

    dry_run = True

    def __init__(self, client: SshClient, python: str = "python3", base: str = "edgekit",
                 known: dict[str, Any] | None = None):
        super().__init__(client, python, base)
        self.known = known

    def call(self, command: str, step: str, **payload: Any) -> dict[str, Any]:
        _, sent = self.run(command, step, payload)
        return simulate(command, sent, self.known)

    @contextmanager
    def lock(self, what: str, wait: float = 0.0) -> Iterator[dict[str, Any]]:
        remote, note, token = self.hold_argv(what, wait)
        self.client.start(remote, note=note)
        self.token = token
        try:
            yield {"ok": True, "probe": simulate("probe", {"base": self.base}, self.known)}
        finally:
            self.token = ""


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
