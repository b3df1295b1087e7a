"""The device, seen from the workstation: each step is one ssh call to the device agent.

``python3 - COMMAND 'JSON'`` runs with the agent's source (``agent.py``) on stdin and answers
with one JSON object. A dry run shows each call and answers as an empty device would.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekit.deploy.ssh import SshClient
from edgekit.errors import DeployError

AGENT = Path(__file__).with_name("agent.py")
UNIT_NAME = "edgekit.service"
# Seconds a step may take on the device before the workstation gives up on it.
TIMEOUTS = {"probe": 180, "stage": 900, "verify": 900, "venv": 3600, "smoke": 1800,
            "activate": 300, "rollback": 900, "service": 300, "cleanup": 300}


class Device:
    """Calls into the agent on one device, under ``base`` (relative to the login folder)."""

    def __init__(self, client: SshClient, python: str = "python3", base: str = "edgekit"):
        self.client = client
        self.python = python
        self.base = base
        self.source = AGENT.read_bytes()

    def call(self, command: str, step: str, **payload: Any) -> dict[str, Any]:
        """Run one agent command; DeployError (or ConnectionFailed) when it fails."""
        payload = {"base": self.base, "unit": UNIT_NAME, **payload}
        remote = [self.python, "-", command, json.dumps(payload, separators=(",", ":"))]
        note = f"stdin: edgekit's device agent ({AGENT.name}, {len(self.source) // 1024} KB)"
        result = self.client.run(remote, step=step, stdin=self.source,
                                 timeout=TIMEOUTS[command], note=note)
        if self.client.dry_run:
            return simulate(command, payload)
        answer = _answer(result.stdout)
        if answer is None:
            raise DeployError(f"{step}: {self._no_answer(result.returncode, result.stderr)}")
        if not answer.get("ok"):
            raise DeployError(f"{step}: {answer.get('error', 'failed')}")
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


def _answer(stdout: bytes) -> dict[str, Any] | None:
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def simulate(command: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What an empty, healthy device answers (for --dry-run, which sends nothing)."""
    if command == "probe":
        return {"ok": True, "releases": [], "venvs": [], "current": None, "incomplete": [],
                "free_bytes": None, "systemd": None, "unit": None, "dry_run": True}
    if command == "stage":
        return {"ok": True, "release": f"<time>-{payload['content_hash'][:8]}",
                "incoming": f"{payload['base']}/releases/.incoming-<time>-"
                            f"{payload['content_hash'][:8]}",
                "linked": [], "missing": [f["path"] for f in payload["files"]],
                "missing_bytes": sum(f["size"] for f in payload["files"]), "removed": []}
    if command == "venv":
        return {"ok": True, "reused": False, "key": payload["key"]}
    if command == "activate":
        return {"ok": True, "current": payload["release"], "previous": None, "pruned": [],
                "pruned_venvs": [], "service": None}
    return {"ok": True}
