"""The systemd unit that runs the camera loop of the current release on boot.

A *user* unit (``~/.config/systemd/user/edgekit.service``), not a system one: it runs as the
user deploy logs in as (on a Pi, in the video and plugdev groups that the camera and a Coral
need), installing and restarting it needs no root, and it lives beside the releases. It
starts at boot without anyone logged in once lingering is on (``loginctl enable-linger
USER``, once, as root). It runs whatever ``current`` points at, so deploy and rollback only
switch the link and restart it.
"""
from __future__ import annotations

import re

from edgekit.deploy.plan import ReleasePlan

RESTART_SECONDS = 5


def systemd_quote(arg: str) -> str:
    """One ExecStart argument, quoted for systemd (which has its own rules, not a shell's)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r'[\s"\'\\;]', arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_start(plan: ReleasePlan, base: str) -> list[str]:
    """The command the unit runs: ``edgekit run`` on the current release's bundle."""
    return [f"{base}/current/venv/bin/edgekit", "run", f"{base}/current/bundle",
            "--source", plan.target.camera, "--backend", plan.backend,
            *(["--device", plan.device] if plan.device else [])]


def unit_text(plan: ReleasePlan, base: str) -> str:
    """The unit file for ``plan``; ``base`` is the release folder's absolute path."""
    env = {"PYTHONUNBUFFERED": "1", **plan.target.environment}
    lines = [
        f"# Written by edgekit deploy (target {plan.target.name}). It runs the release that",
        f"# {base}/current points at; edgekit deploy and --rollback restart it after switching.",
        "[Unit]",
        f"Description=edgekit camera loop: {plan.model} on {plan.target.name}",
        "StartLimitIntervalSec=0",  # a camera unplugged for a while must not stop the retries
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={base.replace('%', '%%')}",  # a path setting: never quoted
        *[f"Environment={systemd_quote(f'{k}={v}')}" for k, v in env.items()],
        "ExecStart=" + " ".join(systemd_quote(a) for a in exec_start(plan, base)),
        "Restart=on-failure",
        f"RestartSec={RESTART_SECONDS}",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"


def start_hint(user: str) -> str:
    """What to run on the device when deploy could not start the unit itself."""
    return ("systemctl --user daemon-reload && systemctl --user enable --now edgekit.service"
            f"; and once, as root: loginctl enable-linger {user or 'USER'}")
