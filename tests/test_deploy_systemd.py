"""The deployed service on a real systemd device: Debian bookworm booted by its own systemd
(systemd-nspawn), its sshd on a loopback port, user pi, Python 3.11 (tests/systemd_device.py).

The digit detector goes there with `deploy --service --offline` and a profile for this
machine whose camera is a video file on the device (the unit plays it with
--capture repeat=on); a second profile's camera is a file that is there but is no video:
its service fails after the switch. A third keeps camera 0, which the device lacks: deploy
refuses it before the switch. Each test starts from a device with no edgekit on it and pi's
systemd stopped.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, CliResult, assert_clean_error, run_cli
from deploy_support import local_profile, sha256, ssh_args
from systemd_device import SystemdDevice, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.systemd]
CLIP = "/home/pi/clip.avi"
NOT_A_VIDEO = "/etc/hostname"  # there on the device (the check before the switch passes)
UNREADABLE = f"{NOT_A_VIDEO}: cannot read it: it is not a video OpenCV can open"
SETTLE = "4"  # seconds, where a test does not check the default (10)


@pytest.fixture(scope="module")
def device(systemd_device: SystemdDevice, demo_clip: Path) -> SystemdDevice:
    """The device, with the demo clip as pi's own video file."""
    copy = subprocess.run(systemd_device.pi.scp_command([demo_clip], CLIP), capture_output=True,
                          check=False)
    assert copy.returncode == 0, copy.stderr
    return systemd_device


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(a profile whose camera is the clip on the device, one whose camera is a file that is
    no video, one whose camera 0 is not there)."""
    folder = tmp_path_factory.mktemp("profiles")
    clip = local_profile(folder, "bookworm-clip", edits={'camera = "0"': f'camera = "{CLIP}"'})
    broken = local_profile(folder, "bookworm-broken",
                           edits={'camera = "0"': f'camera = "{NOT_A_VIDEO}"'})
    return clip, broken, local_profile(folder, "bookworm-camera")


def deploy(device: SystemdDevice, bundle: Path, profile: Path, *extra: str,
           as_json: bool = True, service: bool = True) -> CliResult:
    return run_cli("deploy", bundle, "--target", profile, *ssh_args(device.pi), "--offline",
                   *(["--service"] if service else []), *(["--json"] if as_json else []), *extra)


def report_of(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def unit_file(device: SystemdDevice) -> str:
    return device.pi.local_path(".config/systemd/user/edgekit.service").read_text()


def current(device: SystemdDevice) -> str:
    return os.readlink(device.pi.local_path("edgekit/current")).split("/")[-1]


def no_pi_session(device: SystemdDevice) -> None:
    """Until every ssh session of pi has ended (deploy's included)."""
    wait_until(lambda: not device.pi_sessions(), 60, "pi's sessions to end")


def test_the_service_stays_up_and_keeps_running_after_deploy_with_lingering(
        device: SystemdDevice, detector_bundle: Path, profiles: tuple[Path, Path, Path]) -> None:
    device.reset(linger=True)
    report = report_of(deploy(device, detector_bundle, profiles[0]))
    service = report["service"]
    check = service["check"]
    assert check["healthy"] and check["settle"] == 10 and check["seconds"] >= 10
    assert check["restarts"] == 0 and check["active"] == "active" and check["sub"] == "running"
    assert service["linger"] is True and service["runs_after_deploy"] is True
    assert report["current"] == report["release"] == current(device)
    unit = device.pi.local_path(".config/systemd/user/edgekit.service").read_text()
    assert f"--source {CLIP} --capture repeat=on --backend tflite" in unit
    assert "StartLimitBurst=5" in unit and "StandardOutput=journal" in unit
    # Deploy's ssh sessions end; with lingering, pi's systemd and the service stay.
    no_pi_session(device)
    time.sleep(12)  # longer than logind's UserStopDelaySec (10 s) before a user's systemd stops
    state = device.unit()
    assert state["ActiveState"] == "active" and state["SubState"] == "running", state
    assert state["NRestarts"] == "0"
    assert f"edgekit run /home/pi/edgekit/current/bundle --source {CLIP} --capture repeat=on" in \
        device.command_of(state["MainPID"])
    status = run_cli("status", *ssh_args(device.pi))
    assert status.returncode == 0, status.stderr
    assert "service: edgekit.service running since" in status.stdout
    assert "0 automatic restart(s)" in status.stdout
    assert "lingering: on for pi" in status.stdout


def test_without_lingering_the_report_says_it_stops_and_status_agrees(
        device: SystemdDevice, detector_bundle: Path, profiles: tuple[Path, Path, Path]) -> None:
    device.reset(linger=False)
    result = deploy(device, detector_bundle, profiles[0], "--release", f"settle={SETTLE}",
                    as_json=False)
    assert result.returncode == 0, result.stderr
    assert "stayed up 4 s with no restart" in result.stdout
    assert ("lingering OFF for pi: pi's systemd, and edgekit.service with it, stops when "
            "pi's last session ends, and does not start at boot. pi has no other session, so "
            "it is NOT running once this command's SSH sessions have closed. Fix, once, as "
            "root on the device: loginctl enable-linger pi") in " ".join(result.stdout.split())
    no_pi_session(device)
    wait_until(lambda: not device.pi_manager_active(), 60, "pi's systemd to stop")
    assert device.unit() == {}  # nothing of pi's runs: no service
    status = run_cli("status", *ssh_args(device.pi))
    assert status.returncode == 0, status.stderr
    assert "edgekit.service was NOT running before this check: lingering is off" in \
        " ".join(status.stdout.split())
    assert "lingering: OFF for pi" in status.stdout
    # The root command the report gives turns it on: then it runs with no one logged in.
    device.set_linger(True)
    wait_until(device.running, 60, "edgekit.service to start with pi's lingering systemd")
    assert not device.pi_sessions()


def test_a_failing_release_is_switched_back_and_its_journal_reported(
        device: SystemdDevice, detector_bundle: Path, profiles: tuple[Path, Path, Path]) -> None:
    good, broken, no_camera = profiles
    device.reset(linger=True)
    # No earlier release: the failing one stays current, its service is stopped and disabled
    # (not left crash-looping), and deploy says so and why.
    first = deploy(device, detector_bundle, broken, "--release", f"settle={SETTLE}")
    assert_clean_error(first, "edgekit.service is failing with release",
                       UNREADABLE, "no earlier release to switch back to",
                       "stopped and disabled rather than left restarting")
    failing = json.loads(first.stdout)
    assert current(device) == failing["release"] and failing["service"]["check"]["journal"]
    assert failing["service"]["stopped"]
    state = device.unit()
    assert state["ActiveState"] in ("inactive", "failed") and \
        state["UnitFileState"] == "disabled", state
    status = run_cli("status", *ssh_args(device.pi))
    assert "service: edgekit.service NOT running" in status.stdout or "auto-restart" in \
        status.stdout, status.stdout
    # A good release over it, then the failing one again: deploy switches back to the good one.
    working = report_of(deploy(device, detector_bundle, good, "--release", f"settle={SETTLE}"))
    assert working["service"]["check"]["healthy"] and working["previous"] == failing["release"]
    again = deploy(device, detector_bundle, broken, as_json=False)
    assert_clean_error(again, "edgekit.service did not stay up with release",
                       f"its last error: {UNREADABLE}",
                       f"current is back on {working['release']}, which is running")
    assert f"edgekit: error: {UNREADABLE}" in again.stdout
    assert "edgekit.service: Main process exited, code=exited, status=1/FAILURE" in again.stdout
    assert f"current is {working['release']} again; edgekit.service running release" in \
        again.stdout
    assert current(device) == working["release"]
    assert f"--source {CLIP} --capture repeat=on" in unit_file(device)  # the good release's, back
    state = device.unit()
    assert state["ActiveState"] == "active" and state["NRestarts"] == "0", state
    # --rollback to the failing release uses the same check, and switches back too.
    back = run_cli("rollback", "--to", json.loads(first.stdout)["release"],
                   "--release", f"settle={SETTLE}", *ssh_args(device.pi))
    assert_clean_error(back, "did not stay up", f"current is back on {working['release']}")
    assert current(device) == working["release"] and device.running()
    # A camera the device lacks is found before the switch: nothing switches, nothing restarts.
    refused = deploy(device, detector_bundle, no_camera, as_json=False)
    assert_clean_error(refused, "the smoke test failed on the device: the service's camera 0 "
                       "is missing: no /dev/video0 on the device (plug the camera in, or set "
                       "the target's camera to one this device has)",
                       f"the running release ({working['release']}) is untouched")
    assert current(device) == working["release"] and device.running()
    assert device.unit()["NRestarts"] == "0"
    assert f"--source {CLIP} --capture repeat=on" in unit_file(device)


def test_a_first_service_that_fails_is_removed_when_switching_back(
        device: SystemdDevice, detector_bundle: Path, profiles: tuple[Path, Path, Path]) -> None:
    """The release before had no service: switching back stops and removes the new unit."""
    device.reset(linger=True)
    plain = report_of(deploy(device, detector_bundle, profiles[0], service=False))
    assert plain["service"] is None
    result = deploy(device, detector_bundle, profiles[1], "--release", f"settle={SETTLE}",
                    as_json=False)
    assert_clean_error(result, "did not stay up", f"current is back on {plain['release']}",
                       "which runs no service, as before")
    assert "it had no service, so edgekit.service was stopped and removed again" in \
        result.stdout
    assert current(device) == plain["release"]
    assert not device.pi.local_path(".config/systemd/user/edgekit.service").exists()
    assert device.unit().get("ActiveState") == "inactive"


def test_a_classifier_runs_as_the_service_and_shows_in_the_live_view(
        device: SystemdDevice, lenet_bundle: Path, tmp_path: Path) -> None:
    """Issue 21: the service runs any task. LeNet as the service, on the clip, stays up, and
    its live view (on the device's loopback, behind the token deploy made) shows its classes
    and counts frames."""
    from live_view import get, wait_for
    from sshd import free_port

    device.reset(linger=True)
    port = free_port()
    profile = local_profile(tmp_path, "bookworm-classifier", edits={
        'camera = "0"': f'camera = "{CLIP}"\nserve = "127.0.0.1:{port}"'})
    report = report_of(deploy(device, lenet_bundle, profile, "--release", f"settle={SETTLE}"))
    assert report["service"]["check"]["healthy"], report["service"]
    token = report["live_view"]["url_with_token"].rsplit("token=", 1)[1]
    headers = {"Authorization": f"Bearer {token}"}

    def stats() -> dict:
        answer = get(port, "/stats.json", headers)
        return json.loads(answer.body) if answer.status == 200 else {}

    assert wait_for(lambda: stats().get("frames", 0) >= 3, 60), stats()
    latest = stats()["latest"]
    assert latest["task"] == "classification" and len(latest["classes"]) == 5
    assert device.running() and device.unit()["NRestarts"] == "0"


def test_the_service_comes_back_after_a_reboot_with_no_login(
        device: SystemdDevice, detector_bundle: Path, profiles: tuple[Path, Path, Path]) -> None:
    device.reset(linger=True)
    report = report_of(deploy(device, detector_bundle, profiles[0], "--release",
                              f"settle={SETTLE}"))
    assert report["service"]["check"]["healthy"]
    device.reboot()
    wait_until(device.running, 120, "edgekit.service to start after the reboot")
    assert not device.pi_sessions()  # nobody logged in as pi: lingering started it
    state = device.unit()
    assert state["NRestarts"] == "0"
    assert CLIP in device.command_of(state["MainPID"])
    assert current(device) == report["release"]


def test_two_deploys_at_once_one_refuses_naming_the_holder_and_current_is_always_complete(
        device: SystemdDevice, detector_bundle: Path, profiles: tuple[Path, Path, Path]) -> None:
    good = profiles[0]
    device.reset(linger=True)
    report_of(deploy(device, detector_bundle, good, "--release",
                     f"settle={SETTLE}"))  # a running release
    link = device.pi.local_path("edgekit/current")
    seen, incomplete, stop = set(), [], threading.Event()

    def watch_current() -> None:  # what `current` points at, every 20 ms, must be complete
        while not stop.is_set():
            target = os.readlink(link)
            seen.add(target)
            if not (link.parent / target / "release.json").is_file():
                incomplete.append(target)
            time.sleep(0.02)

    def together(*extra: str) -> list[tuple[int, str, str]]:
        argv = [sys.executable, "-m", "edgekit", "deploy", str(detector_bundle), "--target",
                str(good), *ssh_args(device.pi), "--service", "--offline", "--release",
                f"settle={SETTLE}",
                "--json", *extra]
        runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=ROOT) for _ in range(2)]
        outputs = [run.communicate(timeout=600) for run in runs]
        return [(run.returncode, out, err) for run, (out, err) in zip(runs, outputs)]

    watcher = threading.Thread(target=watch_current)
    watcher.start()
    try:
        refusing = together()
        waiting = together("--release", "lock_timeout=300")  # the second waits for the first
    finally:
        stop.set()
        watcher.join()
    assert sorted(code for code, _, _ in refusing) == [0, 1], refusing
    refused = next(err for code, _, err in refusing if code == 1)
    assert_clean_error(CliResult(1, "", refused), "another deploy holds this device's lock",
                       f"from {socket.gethostname()} (pid ", "started 20",
                       "--release lock_timeout=SECONDS")
    assert [code for code, _, _ in waiting] == [0, 0], waiting
    new = [json.loads(out)["release"] for code, out, _ in refusing + waiting if code == 0]
    assert len(set(new)) == 3 and current(device) == max(new)
    assert not incomplete and len(seen) >= 2  # current moved, and was never incomplete
    assert not list(link.parent.glob("releases/.incoming-*")) and device.running()



def test_the_ai_camera_gets_its_rpk_and_the_service_runs_the_sensor(
        device: SystemdDevice, imx500_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    """Target rpi5-ai-camera (made for this machine) with the session's converted LeNet:
    imx500-package (a stand-in in /usr/local/bin) makes the .rpk on the device before the
    switch, its sha256 in release.json; the smoke test finds the AI Camera through the
    release's Picamera2 (the stand-ins, on the profile's PYTHONPATH); the service runs
    `edgekit run --source imx500:0` (no --backend) and stays up."""
    import shutil

    from test_deploy_imx500 import PACKAGER
    from test_imx500 import STANDINS, sensor_outputs

    device.reset(linger=True)
    standins = device.pi.local_path("standins")
    shutil.rmtree(standins, ignore_errors=True)
    shutil.copytree(STANDINS, standins)
    sensor_outputs(imx500_bundle, demo_clip, 6, device.pi.local_path("imx500-outputs.npz"))
    packager = device.pi.local_path("/usr/local/bin/imx500-package")
    packager.write_text(PACKAGER)
    packager.chmod(0o755)
    environment = {"PYTHONPATH": "/home/pi/standins/picamera2:/home/pi/standins/libcamera",
                   "EDGEKIT_STANDIN_CAMERAS": "imx500", "EDGEKIT_STANDIN_VIDEO": CLIP,
                   "EDGEKIT_STANDIN_IMX500_OUTPUTS": "/home/pi/imx500-outputs.npz",
                   "EDGEKIT_STANDIN_IMX500_WARMUP": "0"}
    table = ", ".join(f'{k} = "{v}"' for k, v in environment.items())
    profile = local_profile(tmp_path, "bookworm-ai-camera", "rpi5-ai-camera",
                            edits={'serve = "0.0.0.0:8080"': 'serve = ""',
                                   "setup = [": f"environment = {{{table}}}\nsetup = ["})
    try:
        report = report_of(deploy(device, imx500_bundle, profile, "--release", f"settle={SETTLE}"))
        assert sorted(report["formats"]) == ["imx500", "tflite-int8"]
        assert report["service"]["check"]["healthy"], report["service"]
        release = device.pi.local_path(f"edgekit/releases/{report['release']}")
        rpk = release / "bundle" / "lenet5_digits_imx500.rpk"
        assert rpk.read_bytes() == (release / "bundle" / "lenet5_digits_imx500.zip"
                                    ).read_bytes() + b"9464"
        record = json.loads((release / "release.json").read_text())
        assert record["imx500_rpk"]["sha256"] == sha256(rpk)
        unit = unit_file(device)
        assert "--source imx500:0" in unit and "--backend" not in unit
        state = device.unit()
        assert state["ActiveState"] == "active" and state["NRestarts"] == "0", state
        assert "--source imx500:0" in device.command_of(state["MainPID"])
    finally:
        packager.unlink()
        shutil.rmtree(standins, ignore_errors=True)
