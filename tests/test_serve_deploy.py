"""The live view on a deployed device: the camera targets, the unit, the token made on the
device (mode 0600, shown once), --status, and the unit's own command run on the device."""
from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from deploy_support import local_profile, ssh_args
from live_view import get, wait_for
from sshd import SshServer, free_port

from edgekit.deploy.agent import env as agent
from edgekit.deploy.plan import ShippedFile, plan_release
from edgekit.deploy.service import live_view_url, unit_text
from edgekit.deploy.targets import find_target, load_target
from edgekit.deploy.wheels import WheelInfo
from edgekit.errors import UsageError

STANDINS = ROOT / "tests" / "standins"


@pytest.mark.parametrize("name", ["rpi4-camera", "rpi5-camera"])
def test_camera_targets(name: str) -> None:
    target = find_target(name)
    assert target.camera == "picamera2:0" and target.serve == "0.0.0.0:8080"
    assert target.system_site_packages and target.system_packages == ("python3-picamera2",)
    assert any("python3-picamera2" in step for step in target.setup)
    assert target.to_dict()["serve"] == "0.0.0.0:8080"


def test_a_bad_serve_in_a_profile(tmp_path: Path) -> None:
    profile = local_profile(tmp_path, "bad", base="rpi4-camera",
                            edits={'serve = "0.0.0.0:8080"': 'serve = "everywhere"'})
    with pytest.raises(UsageError, match=r"bad.toml: \[run\] serve: 'everywhere' is not"):
        load_target(profile)


def _plan(tmp_path: Path, bundle: Path, target_name: str):
    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    return plan_release(bundle, find_target(target_name), wheel,
                        WheelInfo("edgekit", "0.1.0", "", ("numpy>=1.23",)), tmp_path)


def test_the_unit_asks_for_the_view_and_keeps_the_token_off_it(tmp_path: Path,
                                                               detector_bundle: Path) -> None:
    text = unit_text(_plan(tmp_path, detector_bundle, "rpi4-camera"), "/home/pi/edgekit")
    assert ("ExecStart=/home/pi/edgekit/current/venv/bin/edgekit run /home/pi/edgekit/current/"
            "bundle --source picamera2:0 --backend tflite --infer device=CPU --serve 0.0.0.0:8080\n"
            ) in text
    assert "EnvironmentFile=-/home/pi/edgekit/service.env\n" in text
    assert "TOKEN" not in text
    plain = unit_text(_plan(tmp_path, detector_bundle, "rpi4-cpu"), "/home/pi/edgekit")
    assert "--serve" not in plain and "EnvironmentFile" not in plain


def test_the_token_is_made_once_and_kept_private(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    locked: list[dict] = []  # the deploy lock itself is tested in test_deploy_ssh.py
    monkeypatch.setattr(agent, "require_lock", locked.append)
    first = agent.serve_token({"base": "edgekit"})
    env = tmp_path / "edgekit" / "service.env"
    assert first["created"] and first["env_file"] == str(env) and len(first["token"]) >= 32
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert f"EDGEKIT_SERVE_TOKEN={first['token']}\n" in env.read_text()
    again = agent.serve_token({"base": "edgekit"})
    assert again == {"env_file": str(env), "created": False}  # no token: it is shown once
    assert f"EDGEKIT_SERVE_TOKEN={first['token']}\n" in env.read_text()
    # A file a person edited (other variables, a looser mode) keeps its lines, gets 0600.
    env.write_text("OTHER=1\n")
    env.chmod(0o644)
    made = agent.serve_token({"base": "edgekit"})
    assert made["created"] and env.read_text() == f"OTHER=1\nEDGEKIT_SERVE_TOKEN={made['token']}\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    env.chmod(0o640)
    assert not agent.serve_token({"base": "edgekit"})["created"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    unit = tmp_path / "edgekit.service"
    unit.write_text("[Service]\nExecStart=/x/edgekit run /x/bundle --source 0 --serve "
                    "0.0.0.0:8080\n")
    assert agent.serve_info(str(tmp_path / "edgekit"), str(unit)) == {
        "address": "0.0.0.0:8080", "env_file": str(env), "token": True}
    unit.write_text("[Service]\nExecStart=/x/edgekit run /x/bundle --source 0\n")
    assert agent.serve_info(str(tmp_path / "edgekit"), str(unit)) is None
    assert len(locked) == 4  # it changes the device: only under the deploy's lock (4 calls)


def test_urls() -> None:
    assert live_view_url("raspberrypi.local", "0.0.0.0:8080") == "http://raspberrypi.local:8080/"
    assert live_view_url("10.0.0.7", "[::]:8080", "abc") == "http://10.0.0.7:8080/?token=abc"
    assert live_view_url("pi", "192.168.1.9:9000") == "http://192.168.1.9:9000/"
    assert live_view_url("fe80::1", "0.0.0.0:80") == "http://[fe80::1]:80/"


def _deploy(bundle: Path, profile: Path, server: SshServer, *extra: str):
    return run_cli("deploy", bundle, "--target", profile, *ssh_args(server), "--service",
                   *extra)


def _exec_start(unit: Path) -> list[str]:
    line = next(x for x in unit.read_text().splitlines() if x.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):])


@pytest.mark.slow
def test_deploy_service_with_the_live_view(ssh_server: SshServer, detector_bundle: Path,
                                           tmp_path: Path) -> None:
    port = free_port()
    profile = local_profile(tmp_path, "pi-camera", base="rpi4-camera",
                            edits={'serve = "0.0.0.0:8080"': f'serve = "0.0.0.0:{port}"'})
    first = _deploy(detector_bundle, profile, ssh_server, "--json")
    assert first.returncode == 0, first.stderr
    live = json.loads(first.stdout)["live_view"]
    token = re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=([\w-]+)",
                         live["url_with_token"])[1]
    assert live["new_token"] and live["url"] == f"http://127.0.0.1:{port}/"
    base = ssh_server.local_path("edgekit")
    env = base / "service.env"
    assert live["env_file"] == str(env) and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert f"EDGEKIT_SERVE_TOKEN={token}\n" in env.read_text()
    unit = ssh_server.local_path(".config/systemd/user/edgekit.service")
    assert f"EnvironmentFile=-{base}/service.env\n" in unit.read_text()
    assert token not in unit.read_text()
    argv = _exec_start(unit)
    assert argv[3:] == ["--source", "picamera2:0", "--backend", "tflite", "--infer", "device=CPU",
                        "--serve", f"0.0.0.0:{port}"]
    assert "include-system-site-packages = true" in (base / "current" / "venv" /
                                                    "pyvenv.cfg").read_text()
    # A redeploy keeps the token and does not show it again; --status shows the URL.
    again = _deploy(detector_bundle, profile, ssh_server)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"live view +http://127\.0\.0\.1:{port}/ \(the token is unchanged: in "
                     rf"{re.escape(str(env))} on the device, mode 0600\)", again.stdout)
    assert token not in again.stdout + again.stderr
    assert f"EDGEKIT_SERVE_TOKEN={token}\n" in env.read_text()
    status = run_cli("status", *ssh_args(ssh_server))
    assert status.returncode == 0, status.stderr
    assert f"live view: http://127.0.0.1:{port}/ (token in {env} on the device)" in status.stdout
    assert token not in status.stdout
    # The unit's command, run on the device as systemd starts it (its environment file read):
    # without Picamera2 it stops with one line; with it (here the stand-in, on a Pi
    # python3-picamera2, which the venv sees) the live view serves, behind the token.
    as_systemd = f"set -a; . {shlex.quote(str(env))}; set +a; exec {shlex.join(argv)}"
    missing = ssh_server.run(["sh", "-c", as_systemd], timeout=300)
    err = missing.stderr.decode()
    assert missing.returncode == 1 and err.count("error: ") == 1, err
    assert "--source picamera2:0: Picamera2 is not installed" in err
    pythonpath = f"{STANDINS / 'picamera2'}{os.pathsep}{STANDINS / 'libcamera'}"
    pidfile = ssh_server.local_path("live-view.pid")
    running = subprocess.Popen(ssh_server.ssh_command(
        ["sh", "-c", f"echo $$ > {shlex.quote(str(pidfile))}; "
                     f"export PYTHONPATH={shlex.quote(pythonpath)}; {as_systemd}"]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def serving() -> bool:
            try:
                return get(port, "/stats.json", {"Authorization": f"Bearer {token}"}
                           ).status == 200
            except OSError:
                return running.poll() is not None  # it ended: stop waiting

        assert wait_for(serving, timeout=120) and running.poll() is None, \
            running.communicate(timeout=10)[1].decode()
        assert get(port, "/stats.json").status == 401
        assert get(port, "/").status == 401
        stats = json.loads(get(port, "/stats.json", {"Authorization": f"Bearer {token}"}).body)
        assert stats["source"] == "camera module 0 (imx708) via Picamera2"
        assert "tflite-runtime 2.14.0" in stats["backend"]
        assert get(port, f"/snapshot.jpg?token={token}").status == 200
    finally:
        if pidfile.exists():  # the edgekit run this test started (the shell exec'd it)
            ssh_server.run(["kill", "-INT", pidfile.read_text().strip()])
        running.wait(timeout=60)
    assert running.returncode == 130  # Ctrl-C, as systemctl stop's SIGTERM would end it too
