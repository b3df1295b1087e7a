"""The smoke test in the new release's own environment, and the check of the service's camera."""
from __future__ import annotations

import json
import os
import subprocess

from . import imx500_device
from .env import unit_argument
from .files import base_dir, incoming_dir, read_release, run_text, tail
from .lock import require_lock
from .systemd import systemd_running


def run_json(argv, env, timeout):
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s", -1
    err = result.stderr.decode("utf-8", "replace")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    message = errors[-1][len("error: "):] if errors else tail(err, 3)
    try:
        return json.loads(result.stdout.decode("utf-8", "replace")), message, result.returncode
    except ValueError:
        return None, message or "no output", result.returncode


def smoke(payload):
    require_lock(payload)
    base = base_dir(payload)
    release = incoming_dir(base, payload["release"])
    python = os.path.join(release, "venv", "bin", "python")
    env = dict(os.environ, **payload.get("environment", {}))
    timeout = payload.get("timeout", 900)
    backends, backends_error, _ = run_json([python, "-m", "edgekit", "backends", "--json"],
                                           env, timeout)
    argv = [python, "-m", "edgekit", "verify", os.path.join(release, "bundle"),
            "--backend", payload["backend"], "--samples", str(payload["samples"]), "--json"]
    if payload.get("device"):
        argv += ["--infer", "device=" + payload["device"]]
    if payload.get("allow_empty"):  # a bundle converted without validation data
        argv.append("--allow-empty")
    result, error, code = run_json(argv, env, timeout)
    unit = ((read_release(release) or {}).get("service") or {}).get("unit")
    source = unit_source(unit) if unit and systemd_running() else None
    return {"backends": backends, "backends_error": backends_error, "verify": result,
            "verify_error": error if code != 0 else "", "verify_code": code,
            "command": argv,
            "source_problem": source and source_problem(source, base, python, env),
            "imx500_problem": imx500_device.rpk_problem(release)}


# The service's camera, checked before the switch where the service is about to start (systemd
# runs): a missing one would only show as a service that fails after it. Presence only: a
# camera the running release's service holds open cannot be opened twice.
PICAMERA_COUNT = ("from picamera2 import Picamera2; "
                  "print(len(Picamera2.global_camera_info()))")


def unit_source(unit):
    """The ``--source`` of a unit's ExecStart (None when it has none)."""
    return unit_argument(unit, "--source")


def source_problem(source, base, python, env):
    """Why the service's ``--source`` cannot be there on this device, or None (present, or a
    stream URL, which the loop reconnects to, or one in the environment file: ``env:NAME``)."""
    text = str(source)
    fix = "plug the camera in, or set the target's camera to one this device has"
    if "://" in text or text.startswith("env:"):
        return None
    if imx500_device.is_sensor(text):
        return imx500_device.camera_problem(text, python, env, fix)
    if text.isdigit():
        path = "/dev/video" + text
        return None if os.path.exists(path) else (
            f"the service's camera {text} is missing: no {path} on the device ({fix})")
    if text == "picamera2" or text.startswith("picamera2:"):
        number = text.partition(":")[2] or "0"
        code, out = run_text([python, "-c", PICAMERA_COUNT], env=env, timeout=120)
        if code != 0:
            return (f"the service's camera {text}: Picamera2 does not load in the release's "
                    f"environment ({tail(out, 1)}; on Raspberry Pi OS: sudo apt install -y "
                    "python3-picamera2, and a target with system_site_packages)")
        found = int(out.split()[-1]) if out.split() and out.split()[-1].isdigit() else 0
        return None if number.isdigit() and int(number) < found else (
            f"the service's camera {text} is missing: libcamera sees {found} camera(s) ({fix})")
    path = text if os.path.isabs(text) else os.path.join(base, text)
    return None if os.path.exists(path) else (
        f"the service's source {text} is missing: no {path} on the device ({fix})")
