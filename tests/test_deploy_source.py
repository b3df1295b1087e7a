"""Issue 21: a deploy whose service could not find its camera says so before the switch.

The device side (agent.smoke) reads the ``--source`` of the unit the new release will run and
checks that it is there: /dev/videoN for a camera index, a camera libcamera sees for
picamera2[:N] (through the release's own Python), a file or folder. Checked here in-process,
against the real unit text; over a real systemd in tests/test_deploy_systemd.py.
"""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, assert_clean_error, run_cli

from edgekit.deploy import checks
from edgekit.deploy.agent import smoke as agent
from edgekit.deploy.service import source_secret, unit_text
from edgekit.deploy.targets import find_target

STANDINS = ROOT / "tests" / "standins"


def unit_for(camera: str) -> str:
    """The unit deploy writes for the rpi4-cpu target with ``camera`` as its source."""
    target = replace(find_target("rpi4-cpu"), camera=camera)
    plan = SimpleNamespace(target=target, backend="tflite", device="", model="lenet5_digits",
                           run_args=[])
    return unit_text(plan, "/home/pi/edge kit")  # what unit_text reads of a ReleasePlan


@pytest.mark.parametrize("camera", ["0", "picamera2:1", "/srv/clips/a clip 100%.avi",
                                    "rtsp://cam.local/stream", "clips/$HOME.avi"])
def test_the_source_read_back_from_the_unit(camera: str) -> None:
    assert agent.unit_source(unit_for(camera)) == camera
    assert agent.unit_source("[Service]\nExecStart=/bin/true\n") is None


def test_a_camera_url_with_a_password_goes_in_the_environment_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit names the variable (``--source env:EDGEKIT_SOURCE``); the URL itself goes into
    the 0600 service.env through the agent, and the device check lets it pass."""
    import stat

    from edgekit.deploy.agent import env as agent_env

    camera = "rtsp://user:pw@cam.local/stream?token=t0ken"
    unit = unit_for(camera)
    assert "pw@" not in unit and "t0ken" not in unit and "repeat=on" not in unit
    assert agent.unit_source(unit) == "env:EDGEKIT_SOURCE"
    assert 'EnvironmentFile=-/home/pi/edge kit/service.env\n' in unit
    plan = SimpleNamespace(target=replace(find_target("rpi4-cpu"), camera=camera))
    assert source_secret(plan) == {"EDGEKIT_SOURCE": camera}
    for plain in ("rtsp://cam.local/stream", "0", "clip.avi"):
        assert source_secret(SimpleNamespace(target=replace(plan.target, camera=plain))) == {}
        assert "EnvironmentFile" not in unit_for(plain)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(agent_env, "require_lock", lambda payload: None)
    answer = agent_env.service_env({"base": "edgekit", "variables": source_secret(plan)})
    env = tmp_path / "edgekit" / "service.env"
    assert answer["set"] == ["EDGEKIT_SOURCE"] and f"EDGEKIT_SOURCE={camera}" in \
        env.read_text().splitlines() and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert agent.source_problem("env:EDGEKIT_SOURCE", "/", sys.executable, {}) is None


def test_run_reads_a_source_from_the_environment(detector_bundle: Path, demo_clip: Path) -> None:
    """``edgekit run --source env:NAME`` runs NAME's value; unset, one line that says so."""
    result = run_cli("run", detector_bundle, "--source", "env:EDGEKIT_SOURCE", "--capture",
                     "max_frames=3", "--json", env={"EDGEKIT_SOURCE": str(demo_clip)})
    assert result.returncode == 0, result.stderr
    assert '"frames": 3' in result.stdout.replace('"frames":3', '"frames": 3')
    unset = {k: v for k, v in os.environ.items() if k != "EDGEKIT_SOURCE"}
    result = run_cli("run", detector_bundle, "--source", "env:EDGEKIT_SOURCE",
                     env={**unset, "EDGEKIT_SOURCE": ""})
    assert_clean_error(result, "env:EDGEKIT_SOURCE", "EDGEKIT_SOURCE is not set")


def test_a_missing_camera_or_file_is_named_with_the_fix(tmp_path: Path) -> None:
    missing = next(str(n) for n in range(90, 200) if not os.path.exists(f"/dev/video{n}"))
    problem = agent.source_problem(missing, str(tmp_path), sys.executable, dict(os.environ))
    assert problem == (f"the service's camera {missing} is missing: no /dev/video{missing} on "
                       "the device (plug the camera in, or set the target's camera to one this "
                       "device has)")
    assert "no " + str(tmp_path / "clip.avi") in agent.source_problem(
        "clip.avi", str(tmp_path), sys.executable, {})
    (tmp_path / "clip.avi").write_bytes(b"x")  # relative to the unit's WorkingDirectory
    assert agent.source_problem("clip.avi", str(tmp_path), sys.executable, {}) is None
    assert agent.source_problem(str(tmp_path / "clip.avi"), "/", sys.executable, {}) is None
    assert agent.source_problem("rtsp://cam.local/x", "/", sys.executable, {}) is None


def test_picamera2_is_asked_through_the_release_python(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(STANDINS / "picamera2"), str(STANDINS / "libcamera")]))
    run = (sys.executable, env)
    assert agent.source_problem("picamera2", "/", *run) is None  # the stand-in's one imx708
    assert agent.source_problem("picamera2:1", "/", *run) == (
        "the service's camera picamera2:1 is missing: libcamera sees 1 camera(s) (plug the "
        "camera in, or set the target's camera to one this device has)")
    none = (sys.executable, dict(env, EDGEKIT_STANDIN_CAMERAS=""))
    assert "libcamera sees 0 camera(s)" in agent.source_problem("picamera2", "/", *none)
    bare = agent.source_problem("picamera2", "/", sys.executable,
                                dict(os.environ, PYTHONPATH=""))
    assert bare.startswith("the service's camera picamera2: Picamera2 does not load in the "
                           "release's environment (ModuleNotFoundError: No module named "
                           "'picamera2'")
    assert "sudo apt install -y python3-picamera2" in bare


def test_the_smoke_verdict_carries_it() -> None:
    """The one place the deploy steps ask, over every link (SSH, Ansible, local)."""
    answer = {"verify_code": 0, "verify": {"files_ok": True}, "source_problem": "no camera"}
    assert checks.smoke_problem(answer) == "no camera"
    assert checks.smoke_problem(dict(answer, source_problem=None)) is None
