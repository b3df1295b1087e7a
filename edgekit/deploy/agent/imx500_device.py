"""The AI Camera's (IMX500's) part of the device agent: what the smoke test checks before the
switch, where the network runs in the sensor and no CPU runtime can run it.

Standard library only, Python 3.7+, as the whole agent package (``shipping.agent_source``
sends it to the device with the rest).
"""
from __future__ import annotations

import json
import os
import re

from .files import read_release, run_text, sha256_of

# The AI Camera's sensor as a ``--source``: ``imx500`` or ``imx500:N`` (N the camera's number,
# as ``rpicam-hello --list-cameras`` counts). The one definition: the loop on the workstation
# (edgekit.loop.picamera, loop/imx500.py) and deploy's plan and unit import it from here.
SOURCE = re.compile(r"^imx500(?::(.*))?$")
INSTALL = "sudo apt install -y imx500-all python3-picamera2"
# The cameras libcamera sees, by model, asked through the release's own Python (Picamera2).
CAMERA_MODELS = ("import json; from picamera2 import Picamera2; "
                 "print(json.dumps([c.get('Model', '') for c in Picamera2.global_camera_info()]))")


def is_sensor(source):
    """Whether ``source`` (a ``--source``) names the AI Camera's sensor: ``imx500``, or
    ``imx500:`` and a camera number (one that is not a number is ``sensor_number``'s to
    refuse)."""
    return bool(SOURCE.match(str(source)))


def sensor_number(source):
    """The camera number in ``imx500:N`` (0 for ``imx500``); None when ``source`` is not the
    sensor or what follows the colon is not a number."""
    match = SOURCE.match(str(source))
    if match is None:
        return None
    number = match.group(1)
    if number is None:
        return 0
    return int(number) if number.isdigit() else None


def rpk_problem(release):
    """Why the network.rpk the ``imx500`` step made in ``release`` (a folder) is not the one
    its release.json records, or None (no .rpk recorded: nothing to check)."""
    entry = (read_release(release) or {}).get("imx500_rpk")
    if not entry:
        return None
    path = os.path.join(release, entry["path"])
    if not os.path.isfile(path):
        return f"{entry['path']} is missing from the release (imx500-package made it)"
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        return (f"{entry['path']} has sha256 {digest[:12]}... on the device, not the "
                f"{entry['sha256'][:12]}... imx500-package made and the release recorded: "
                "something changed it; deploy again")
    return None


def _models(output):
    """The list of models in CAMERA_MODELS's output (libcamera logs on the same stream)."""
    for line in reversed(output.splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, list):
            return found
    return []


def camera_problem(source, python, env, fix):
    """Why camera ``source`` (``imx500[:N]``) cannot be the AI Camera on this device, or None,
    asked through the release's ``python`` with ``env``."""
    number = sensor_number(source)
    if number is None:
        return (f"the service's camera {source}: give imx500 or imx500:N, N the camera's "
                "number; set the target's camera to one")
    code, out = run_text([python, "-c", CAMERA_MODELS], env=env, timeout=120)
    if code != 0:
        lines = out.strip().splitlines() or ["no output"]
        return (f"the service's camera {source}: Picamera2 does not load in the release's "
                f"environment ({lines[-1]}; on Raspberry Pi OS: {INSTALL}, and a target with "
                "system_site_packages)")
    models = _models(out)
    if number >= len(models):
        return (f"the service's camera {source} is missing: libcamera sees {len(models)} "
                f"camera(s) ({fix})")
    if "imx500" not in str(models[number]).lower():
        return (f"the service's camera {source} is a {models[number] or 'camera'}, not the AI "
                f"Camera (IMX500): {fix}")
    return None
