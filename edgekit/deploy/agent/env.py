"""The service's environment file: the live view's token and the events' credentials."""
from __future__ import annotations

import os
import re
import secrets
import shlex
import stat

from .files import base_dir, read_json
from .lock import require_lock


def unit_argument(unit, flag):
    """The value of ``flag`` on a unit's ExecStart, unquoted as systemd reads it (None when it
    has none): what the service runs with, read back from the unit deploy wrote."""
    for line in unit.splitlines():
        if line.startswith("ExecStart="):
            args = [a.replace("%%", "%").replace("$$", "$")
                    for a in shlex.split(line[len("ExecStart="):])]
            if flag in args[:-1]:
                return args[args.index(flag) + 1]
    return None


SERVE_ENV = "service.env"
TOKEN_VARIABLE = "EDGEKIT_SERVE_TOKEN"


def read_env(path):
    """KEY=value lines of an environment file, in order (missing file: none)."""
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        return []


def write_private(path, lines):
    """Write a file only its owner can read (mode 0600 from the start), then rename it."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)  # an old tmp left by a killed run may have had other bits
    os.replace(tmp, path)


def serve_token(payload):
    """The live view's token: made here, on the device, the first time; kept afterwards.

    It lives in the unit's environment file, mode 0600, never on a command line. The token
    is returned only when it was just made (the workstation shows the URL with it once)."""
    require_lock(payload)
    base = base_dir(payload)
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, SERVE_ENV)
    lines = read_env(path)
    prefix = TOKEN_VARIABLE + "="
    if any(line.startswith(prefix) and len(line) > len(prefix) for line in lines):
        if lines and stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            os.chmod(path, 0o600)
        return {"env_file": path, "created": False}
    token = secrets.token_urlsafe(24)
    lines = [line for line in lines if not line.startswith(prefix)] or [
        "# edgekit's service environment (systemd EnvironmentFile): keep it private"]
    write_private(path, lines + [prefix + token])
    return {"env_file": path, "created": True, "token": token}


EVENTS_PREFIX = "EDGEKIT_EVENTS_"  # the events' credentials (edgekit/events/destinations.py)
SOURCE_VARIABLE = "EDGEKIT_SOURCE"  # a camera URL with a password (edgekit/loop/sources.py)


def service_env(payload):
    """Set the service's secrets in the unit's environment file (mode 0600), beside the live
    view's token: ``payload["variables"]``, EDGEKIT_EVENTS_* and the camera URL
    (EDGEKIT_SOURCE) only; an empty value removes one.
    Sent on the agent's standard input, never on a command line."""
    require_lock(payload)
    variables = payload.get("variables") or {}
    for key, value in variables.items():
        if not (key.startswith(EVENTS_PREFIX) or key == SOURCE_VARIABLE) \
                or not re.match(r"^[A-Z0-9_]+$", key):
            raise ValueError(f"{key}: only {EVENTS_PREFIX}* and {SOURCE_VARIABLE} go in the "
                             "service's environment file this way")
        if "\n" in str(value) or "\r" in str(value) or "\0" in str(value):
            raise ValueError(f"{key}: a value on one line, without NUL")
    base = base_dir(payload)
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, SERVE_ENV)
    lines = [line for line in read_env(path) if line.split("=", 1)[0] not in variables] or [
        "# edgekit's service environment (systemd EnvironmentFile): keep it private"]
    lines += [f"{key}={value}" for key, value in sorted(variables.items()) if value]
    write_private(path, lines)
    return {"env_file": path, "set": sorted(k for k, v in variables.items() if v)}


def serve_info(base, unit):
    """The live view the installed unit serves (its --serve), and where its token is."""
    try:
        with open(unit) as f:
            text = f.read()
    except OSError:
        return None
    address = unit_argument(text, "--serve")
    if address is None:
        return None
    path = os.path.join(base, SERVE_ENV)
    has_token = any(line.startswith(TOKEN_VARIABLE + "=") for line in read_env(path))
    return {"address": address, "env_file": path, "token": has_token}


EVENTS_STATE = "events-state.json"  # as edgekit.events.service.STATE_FILE


def events_info(base):
    """The service's events destinations and delivery counters, as its loop last wrote them."""
    return read_json(os.path.join(base, EVENTS_STATE))
