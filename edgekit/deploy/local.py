"""A device that is a folder on this machine: the steps' local link, for tests and trials.

Each agent command runs in this process (the agent's ``main``, its JSON answer read from what it
prints); the device's lock is held by a local ``hold`` process with a heartbeat, as over ssh;
files are copied with ``shutil``. So the whole deploy sequence (lock, checks, staging, copies,
sha256 checks, cleanup after a failure, the switch) runs without sshd, root or qemu.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from edgekit.deploy.agent import main as agent_main
from edgekit.deploy.remote import SshLink
from edgekit.deploy.ssh import Host, SshOptions
from edgekit.errors import DeployError


class LocalClient:
    """What an SshLink asks of its client, done on this machine: the hold is a local process
    (its own session, stdin kept open, as ssh would run it)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.host = Host("localhost")
        self.options = SshOptions(timeout=timeout)
        self.dry_run = False

    def start(self, remote: list[str], *, note: str = "") -> subprocess.Popen[bytes]:
        return subprocess.Popen(remote, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def failure(self, stderr: str, step: str) -> Exception:
        return DeployError(f"{step}: {stderr.strip() or 'the local hold ended'}")


class LocalLink(SshLink):
    """The agent on ``folder`` (the device's releases' folder, an absolute path)."""

    def __init__(self, folder: Path, timeout: float = 30.0) -> None:
        client: Any = LocalClient(timeout)
        super().__init__(client, sys.executable, str(Path(folder).resolve()))
        self.label = f"local:{self.base}"
        self.address = "127.0.0.1"

    def call(self, command: str, step: str, **payload: Any) -> dict[str, Any]:
        agent_main.PRIVATE.update(payload.pop("private", None) or {})  # as SshLink sends them
        remote, _ = self.remote(command, payload)
        out = io.StringIO()
        try:
            with redirect_stdout(out):
                agent_main.main(["agent", command, remote[-1]])
        finally:
            agent_main.PRIVATE.clear()
        return self.checked(step, out.getvalue().encode(), 0, b"")

    def send(self, files: list[tuple[str, str]], incoming: str, step: str) -> None:
        """Copy the files into ``incoming`` (the agent names it relative to the home folder
        when it lies inside it)."""
        root = Path(os.path.expanduser("~"), incoming)
        for local, path in files:
            shutil.copyfile(local, root / path)
