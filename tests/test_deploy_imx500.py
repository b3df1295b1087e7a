"""Deploying to the Raspberry Pi AI Camera (targets rpi5-ai-camera, rpi4-ai-camera): the
bundle's packerOut.zip ships, ``imx500-package`` makes NAME_imx500.rpk from it on the device
before the switch (its sha256 in release.json), and the smoke test checks that .rpk and the
sensor's camera.

Over the local link (tests/test_deploy_local.py's): the agent in this process on a folder, a
stand-in ``imx500-package`` on PATH, the environment and verify answered as when they pass.
The bundle is the session's LeNet with a hand-made packerOut.zip (test_imx500.add_imx500); the
real conversion and a deploy to the systemd device are test_imx500.py's and
test_deploy_systemd.py's.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_support import intact, local_profile
from test_deploy_local import PASSED, FakeEnvironment, current, run
from test_imx500 import STANDINS, add_imx500

from edgekit.bundle.integrity import sha256_file
from edgekit.deploy import steps
from edgekit.deploy.agent import files, imx500_device, smoke
from edgekit.deploy.local import LocalLink
from edgekit.deploy.plan import ShippedFile, plan_release
from edgekit.deploy.playbook import plan_vars
from edgekit.deploy.service import exec_start
from edgekit.deploy.shipping import agent_source
from edgekit.deploy.targets import find_target
from edgekit.deploy.wheels import WheelInfo
from edgekit.errors import DeployError, UsageError

OLD_PYTHON = Path(__file__).resolve().parent.parent / ".venv-openvino2021" / "bin" / "python"
# Writes network.rpk as imx500-package does (-i packerOut.zip -o DIR): here the zip's bytes
# and a mark, so that its sha256 is known.
PACKAGER = ('#!/bin/sh\n[ "$1" = -i ] && [ "$3" = -o ] || exit 2\n'
            'cat "$2" > "$4/network.rpk" && printf 9464 >> "$4/network.rpk"\n')


class Sensor(FakeEnvironment):
    """FakeEnvironment whose smoke answer carries the agent's own .rpk check of the release."""

    def call(self, command: str, step: str, **payload: Any) -> dict[str, Any]:
        if command == "smoke":
            release = files.incoming_dir(self.base, payload["release"])
            self.before_smoke(Path(release))
            self.asked.append(command)
            return {"ok": True, **PASSED, "imx500_problem": imx500_device.rpk_problem(release)}
        return super().call(command, step, **payload)

    def before_smoke(self, release: Path) -> None:
        pass


@pytest.fixture
def packager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in imx500-package first on PATH."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "imx500-package").write_text(PACKAGER)
    (tools / "imx500-package").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    return tools / "imx500-package"


def ai_camera_plan(folder: Path, bundle: Path, service: bool = False) -> dict[str, Any]:
    """The plan for rpi5-ai-camera made for this machine, with a wheel that is only bytes."""
    wheel = folder / "edgekit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    shipped = ShippedFile(f"wheels/{wheel.name}", wheel, sha256_file(wheel),
                          wheel.stat().st_size)
    target = find_target(str(local_profile(folder / "targets", "ai-camera", "rpi5-ai-camera")))
    staging = folder / "staging"
    staging.mkdir(exist_ok=True)
    info = WheelInfo("edgekit", "0.1.0", ">=3.9", ("numpy>=1.23",))
    return plan_vars(plan_release(bundle, target, shipped, info, staging), service=service)


@pytest.fixture
def plan(tmp_path: Path, lenet_bundle: Path) -> dict[str, Any]:
    return ai_camera_plan(tmp_path, add_imx500(lenet_bundle, tmp_path, rpk=False))


def test_deploy_makes_the_rpk_before_the_switch(tmp_path: Path, plan: dict[str, Any],
                                                packager: Path) -> None:
    device = tmp_path / "device"
    link = Sensor(device)
    first = run(link, plan)
    assert link.asked == ["stage", "verify", "imx500", "venv", "smoke", "activate"]
    assert any(t.startswith("make the AI Camera's network.rpk") for t in first["titles"])
    release = device / "releases" / first["release"]
    rpk = release / "bundle" / "lenet5_digits_imx500.rpk"
    zipped = release / "bundle" / "lenet5_digits_imx500.zip"
    assert rpk.read_bytes() == zipped.read_bytes() + b"9464"
    assert rpk.stat().st_mode & 0o222 == 0
    record = json.loads((release / "release.json").read_text())
    assert record["imx500_rpk"] == first["imx500_rpk"] == {
        "path": "bundle/lenet5_digits_imx500.rpk", "sha256": sha256_file(rpk),
        "size": rpk.stat().st_size}
    assert first["imx500_rpk"] in record["files"] and intact(release)
    assert sorted(plan["formats"]) == ["imx500", "tflite-int8"]
    # Again (nothing copied, the .rpk made again), then a rollback, which checks the .rpk.
    again = run(Sensor(device), plan)
    assert again["files_copied"] == 0 and again["imx500_rpk"] == first["imx500_rpk"]
    (device / "releases" / first["release"] / "bundle" / rpk.name).chmod(0o644)
    (device / "releases" / first["release"] / "bundle" / rpk.name).write_bytes(b"changed")
    with pytest.raises(DeployError, match="lenet5_digits_imx500.rpk: 7 bytes, expected"):
        steps.rollback(LocalLink(device), steps.Journal({}))
    assert current(device) == f"releases/{again['release']}"


def test_without_imx500_package_deploy_names_the_package(
        tmp_path: Path, plan: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no imx500-package
    device = tmp_path / "device"
    link = Sensor(device)
    with pytest.raises(DeployError) as failure:
        run(link, plan)
    assert str(failure.value) == (
        "packaging the IMX500 network: the bundle's imx500 artifact needs imx500-package on "
        "the device to become network.rpk, and it is not there: sudo apt install -y imx500-all "
        "(Raspberry Pi OS: the IMX500 firmware and tools). Nothing was running there before, "
        "and nothing is now; the incomplete new release was removed")
    assert link.asked == ["stage", "verify", "imx500", "cleanup"]
    assert os.listdir(device / "releases") == [] and not (device / "current").exists()


def test_an_rpk_that_differs_is_refused_before_the_switch(
        tmp_path: Path, plan: dict[str, Any], packager: Path) -> None:
    device = tmp_path / "device"
    first = run(Sensor(device), plan)

    class Changed(Sensor):
        def before_smoke(self, release: Path) -> None:
            rpk = release / "bundle" / "lenet5_digits_imx500.rpk"
            rpk.chmod(0o644)
            rpk.write_bytes(b"another network")

    link = Changed(device)
    with pytest.raises(DeployError) as failure:
        run(link, plan)
    message = str(failure.value)
    assert message.startswith("the smoke test failed on the device: bundle/lenet5_digits_imx500"
                              ".rpk has sha256 ") and "\n" not in message
    assert message.endswith(f"The running release ({first['release']}) is untouched; the "
                            "incomplete new release was removed")
    assert link.asked[-1] == "cleanup" and "activate" not in link.asked
    assert current(device) == f"releases/{first['release']}"
    assert not [p for p in (device / "releases").iterdir() if p.name.startswith(".incoming")]


def test_the_service_runs_the_sensor_without_a_backend(tmp_path: Path, lenet_bundle: Path
                                                       ) -> None:
    plan = plan_release(add_imx500(lenet_bundle, tmp_path, rpk=False),
                        find_target("rpi5-ai-camera"),
                        ShippedFile("wheels/e.whl", tmp_path, "0" * 64, 0),
                        WheelInfo("edgekit", "0.1.0", ">=3.9", ()), tmp_path)
    assert plan.backend == "tflite" and plan.imx500 == "bundle/lenet5_digits_imx500.zip"
    argv = exec_start(plan, "/home/pi/edgekit")
    assert argv[1:5] == ["run", "/home/pi/edgekit/current/bundle", "--source", "imx500:0"]
    assert "--backend" not in argv and "--infer" not in argv


def test_a_bundle_without_imx500_to_the_ai_camera(tmp_path: Path, lenet_bundle: Path) -> None:
    with pytest.raises(UsageError, match=r"target rpi4-ai-camera's camera imx500:0 runs the "
                       r"bundle's imx500 artifact in the sensor, and the bundle has none that "
                       r"ships \(not converted\): convert again with `formats` imx500"):
        plan_release(lenet_bundle, find_target("rpi4-ai-camera"),
                     ShippedFile("wheels/e.whl", tmp_path, "0" * 64, 0),
                     WheelInfo("edgekit", "0.1.0", ">=3.9", ()), tmp_path)


def test_an_imx500_only_bundle_to_the_ai_camera(tmp_path: Path, lenet_bundle: Path) -> None:
    """The sensor runs imx500, but the smoke test checks the model on the Pi's CPU first: a
    bundle without tflite-int8 is refused before anything is built or sent, saying so."""
    from conftest import assert_clean_error, run_cli

    from edgekit.bundle.manifest import read_manifest, write_manifest

    bundle = add_imx500(lenet_bundle, tmp_path, rpk=False)
    manifest = read_manifest(bundle)
    manifest.artifacts = [a for a in manifest.artifacts if a.format == "imx500"]
    write_manifest(manifest, bundle)
    result = run_cli("deploy", bundle, "--target", "rpi4-ai-camera", "--host",
                     "pi@device.invalid")
    assert_clean_error(result, "target rpi4-ai-camera's smoke test checks the model with "
                       "tflite on the device's CPU before the switch (no CPU runtime runs the "
                       "sensor's imx500 artifact), and the bundle has no tflite-int8 "
                       "(tflite-int8: not converted): convert again with --formats "
                       "imx500,tflite-int8")
    assert result.returncode == 2 and "fallback_backend" not in result.stderr


def test_the_sensor_source_is_written_once() -> None:
    """The workstation's loop and the device's agent read ``imx500[:N]`` the same way (the
    loop imports the agent's definition); a number that is not one is a usage error on the
    workstation and a one-line problem on the device."""
    from edgekit.loop.imx500 import camera_number
    from edgekit.loop.picamera import is_imx500

    for source, number in (("imx500", 0), ("imx500:1", 1), ("imx500:12", 12)):
        assert is_imx500(source) and imx500_device.is_sensor(source)
        assert camera_number(source) == imx500_device.sensor_number(source) == number
    for other in ("imx5000", "picamera2", "0", "imx500.avi", "/dev/imx500"):
        assert not is_imx500(other) and not imx500_device.is_sensor(other)
    assert is_imx500("imx500:x") and imx500_device.sensor_number("imx500:x") is None
    with pytest.raises(UsageError, match=r"source imx500:x: give imx500 or imx500:N"):
        camera_number("imx500:x")
    assert imx500_device.camera_problem("imx500:x", sys.executable, {}, "") == (
        "the service's camera imx500:x: give imx500 or imx500:N, N the camera's number; set "
        "the target's camera to one")


def test_the_sensor_camera_is_asked_through_the_release_python() -> None:
    def env(cameras: str) -> dict[str, str]:
        return {"PYTHONPATH": os.pathsep.join([str(STANDINS / "picamera2"),
                                               str(STANDINS / "libcamera")]),
                "EDGEKIT_STANDIN_CAMERAS": cameras}

    python = sys.executable
    assert smoke.source_problem("imx500", "/", python, env("imx500")) is None
    assert smoke.source_problem("imx500:1", "/", python, env("imx708,imx500")) is None
    assert smoke.source_problem("imx500:0", "/", python, env("imx708,imx500")) == (
        "the service's camera imx500:0 is a imx708, not the AI Camera (IMX500): plug the "
        "camera in, or set the target's camera to one this device has")
    assert smoke.source_problem("imx500", "/", python, env("")) == (
        "the service's camera imx500 is missing: libcamera sees 0 camera(s) (plug the camera "
        "in, or set the target's camera to one this device has)")
    bare = smoke.source_problem("imx500", "/", python, {"PYTHONPATH": ""})
    assert bare.startswith("the service's camera imx500: Picamera2 does not load")
    assert "sudo apt install -y imx500-all python3-picamera2" in bare


@pytest.mark.parametrize("python", [sys.executable, str(OLD_PYTHON)])
def test_the_agent_travels_with_its_imx500_module(tmp_path: Path, python: str) -> None:
    """Over ssh the agent is one stdin source: the module it imports there goes with it, and
    the agent uses that one, never importing edgekit (which a device's python3 lacks); on
    Python 3.9 too (the NCS2 environment's Python)."""
    import subprocess

    if not Path(python).is_file():
        pytest.skip(f"needs {python} (make setup-tests)")
    payload = json.dumps({"base": str(tmp_path / "edgekit")})
    done = subprocess.run([python, "-I", "-", "probe", payload], input=agent_source(),
                          capture_output=True, timeout=60, check=False, cwd=tmp_path)
    answer = json.loads(done.stdout.decode().splitlines()[-1])
    assert answer["ok"] and answer["releases"] == [], done.stderr.decode()
    check = ("import sys; sys.argv = ['agent', 'probe', sys.argv[1]]\n"
             "try:\n    exec(compile(sys.stdin.read(), 'agent', 'exec'),"
             " {'__name__': '__main__'})\n"
             "except SystemExit:\n    pass\n"
             "print('edgekit_agent.imx500_device' in sys.modules, 'edgekit' in sys.modules)")
    loaded = subprocess.run([python, "-I", "-c", check, payload], input=agent_source(),
                            capture_output=True, timeout=60, check=False, cwd=tmp_path)
    assert loaded.stdout.decode().split()[-2:] == ["True", "False"], loaded.stderr


def test_a_dry_run_shows_the_step(tmp_path: Path, lenet_bundle: Path) -> None:
    """--dry-run lists the .rpk step and its agent command (the device cannot be asked here:
    a closed port; the plan is then that of an empty device)."""
    import socket

    from edgekit.deploy.release import DeployRequest, deploy
    from edgekit.deploy.ssh import SshOptions, parse_host

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    request = DeployRequest(bundle=add_imx500(lenet_bundle, tmp_path, rpk=False),
                            target=find_target("rpi5-ai-camera"),
                            host=parse_host("pi@127.0.0.1", port), ssh=SshOptions(timeout=5),
                            dry_run=True)
    report = deploy(request)
    step = next(s for s in report.steps if s.title.startswith("make the AI Camera's"))
    assert "bundle/lenet5_digits_imx500.zip" in step.title
    assert len(step.commands) == 1 and step.commands[0].argv[-1].startswith(
        "python3 - imx500 "), step.commands


def test_the_report_names_the_rpk() -> None:
    """deploy's report (text and --json) names the .rpk made on the device and its sha256."""
    from edgekit.deploy.report import DeployReport, deploy_text

    rpk = {"path": "bundle/lenet5_digits_imx500.rpk", "sha256": "ab" * 32, "size": 9}
    report = DeployReport("pi", "rpi5-ai-camera", "lenet5_digits", ["imx500"], 1, 9,
                          imx500_rpk=rpk)
    assert report.to_dict()["imx500_rpk"] == rpk
    assert "network.rpk  bundle/lenet5_digits_imx500.rpk, made by imx500-package on the " \
           "device (sha256 abababababab..., in release.json)" in deploy_text(report)
    assert "network.rpk" not in deploy_text(DeployReport("pi", "rpi5-cpu", "m", [], 0, 0))
