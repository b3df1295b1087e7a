"""The systemd unit that runs the camera loop of the current release on boot.

A *user* unit (``~/.config/systemd/user/edgekit.service``), not a system one: it runs as the
user deploy logs in as (on a Pi, in the video and plugdev groups that the camera and a Coral
need), installing and restarting it needs no root, and it lives beside the releases. It
starts at boot without anyone logged in only with lingering on (``loginctl enable-linger
USER``, once, as root); without it, the user's systemd and the service stop when the user's
last session ends. It runs whatever ``current`` points at. Each release records its own unit
(in release.json): deploy, rollback and a switch back install the unit of the release they
switch to, restart it, and watch it for the settle time.
"""
from __future__ import annotations

import re

from edgekit.deploy import checks
from edgekit.deploy.agent.imx500_device import is_sensor
from edgekit.deploy.plan import ReleasePlan
from edgekit.deploy.targets import Target
from edgekit.events.service import STATE_ENV, STATE_FILE
from edgekit.helpers.text import has_secrets
from edgekit.loop.sources import FROM_ENVIRONMENT, SOURCE_VARIABLE, is_live

RESTART_SECONDS = 5
# A release that cannot start is restarted at most START_BURST times in START_INTERVAL
# seconds, then left failed (systemctl --user status says why) instead of restarting forever.
START_INTERVAL = 120
START_BURST = 5
STOPPED_EXIT_CODES = (129, 130, 143)  # edgekit's exit on SIGHUP, SIGINT, SIGTERM (interrupt.py)
ENV_FILE = "service.env"  # under the releases' folder: the live view's token (mode 0600)
TOKEN_VARIABLE = "EDGEKIT_SERVE_TOKEN"  # edgekit run --serve reads it (live/server.py)


def systemd_quote(arg: str) -> str:
    """One ExecStart argument, quoted for systemd (which has its own rules, not a shell's)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r'[\s"\'\\;]', arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_start(plan: ReleasePlan, base: str) -> list[str]:
    """The command the unit runs: ``edgekit run`` on the current release's bundle. A video
    file or folder as the profile's camera is played in a loop (``--capture repeat=on``): a
    service runs until stopped. The AI Camera's sensor (``imx500[:N]``) runs the network itself:
    no backend. A camera URL with a password or a token goes in the environment file
    (``source_secret``); the command names the variable."""
    source = plan.target.camera
    runtime = [] if is_sensor(source) else [
        "--backend", plan.backend, *(["--infer", f"device={plan.device}"] if plan.device else [])]
    shown = FROM_ENVIRONMENT + SOURCE_VARIABLE if has_secrets(source) else source
    return [f"{base}/current/venv/bin/edgekit", "run", f"{base}/current/bundle",
            "--source", shown, *([] if is_live(source) else ["--capture", "repeat=on"]),
            *runtime,
            *(["--serve", plan.target.serve] if plan.target.serve else []),
            *plan.run_args]  # tracks, events, clips (edgekit.events.service.run_args)


def unit_text(plan: ReleasePlan, base: str) -> str:
    """The unit file for ``plan``; ``base`` is the release folder's absolute path."""
    env = {"PYTHONUNBUFFERED": "1", **plan.target.environment}
    if "--events" in plan.run_args:  # the loop's delivery counters, for edgekit status
        env[STATE_ENV] = f"{base}/{STATE_FILE}"
    lines = [
        f"# Written by edgekit deploy (target {plan.target.name}). It runs the release that",
        f"# {base}/current points at; edgekit deploy and rollback restart it after switching.",
        "[Unit]",
        f"Description=edgekit camera loop: {plan.model} on {plan.target.name}",
        f"StartLimitIntervalSec={START_INTERVAL}",
        f"StartLimitBurst={START_BURST}",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={base.replace('%', '%%')}",  # a path setting: never quoted
        *[f"Environment={systemd_quote(f'{k}={v}')}" for k, v in env.items()],
        # The live view's token, the events' credentials and a camera URL's password, kept off
        # the command line.
        *([f"EnvironmentFile=-{env_file(base).replace('%', '%%')}"]
          if plan.target.serve or "--events" in plan.run_args or source_secret(plan) else []),
        "ExecStart=" + " ".join(systemd_quote(a) for a in exec_start(plan, base)),
        "Restart=on-failure",
        f"RestartSec={RESTART_SECONDS}",
        # systemctl stop sends SIGTERM: edgekit closes its outputs and exits 143 (129 for
        # SIGHUP, 130 for SIGINT), a clean stop, not a failure to restart or report.
        f"SuccessExitStatus={' '.join(str(code) for code in STOPPED_EXIT_CODES)}",
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=edgekit",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"


def source_secret(plan: ReleasePlan) -> dict[str, str]:
    """The camera URL for the environment file when it holds a password or a token (the unit's
    ExecStart then says ``--source env:EDGEKIT_SOURCE``); else nothing."""
    source = plan.target.camera
    return {SOURCE_VARIABLE: source} if has_secrets(source) else {}


def env_file(base: str) -> str:
    """The unit's environment file on the device (holds the live view's token)."""
    return f"{base}/{ENV_FILE}"


def live_view_url(device_host: str, serve: str, token: str | None = None) -> str:
    """The live view's address as the workstation reaches it (``?token=`` only if given);
    ``serve`` is checked first (UsageError when it is not [HOST:]PORT).

    A bind on every interface (0.0.0.0, ::) is reached by the name deploy used for the device.
    """
    from edgekit.live.server import parse_address

    parse_address(serve)
    return checks.live_view_url(device_host, serve, token)


def serve_note(target: Target) -> str:
    """Why a deploy without --service to a target with the live view does not start it."""
    return (f"target {target.name} asks for the live view ({target.serve}); it runs with the "
            "service: deploy --service")


def start_hint(user: str) -> str:
    """What to run on the device when deploy could not start the unit itself."""
    return ("systemctl --user daemon-reload && systemctl --user enable --now edgekit.service"
            f"; and once, as root: loginctl enable-linger {user or 'USER'}")
