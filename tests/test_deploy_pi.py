"""End to end on the emulated Raspberry Pi (arm64 Debian bookworm, Python 3.11, under qemu):
deploy the LeNet bundle with the rpi4-cpu profile, then classify there with tflite-runtime 2.14
and get the workstation's top-1 answers.

Slow (a venv and pip install of tflite-runtime, numpy and OpenCV under qemu); run it with
EDGEKIT_PI_BUILD=1 .venv/bin/python -m pytest -m pi tests/test_deploy_pi.py
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, cli_json, run_cli
from deploy_support import intact, ssh_args
from live_view import get, wait_for
from sshd import SshServer, free_port

from edgekit.bundle.fidelity import load_validation

pytestmark = [pytest.mark.slow, pytest.mark.pi]
SAMPLES = 20


def test_deploy_lenet_to_the_emulated_pi(emulated_pi: SshServer, lenet_bundle: Path,
                                         detector_bundle: Path, demo_clip: Path,
                                         tmp_path: Path) -> None:
    emulated_pi.run("rm -rf edgekit digits .config/systemd/user/edgekit.service")  # a fresh Pi
    started = time.monotonic()
    result = run_cli("deploy", lenet_bundle, "--target", "rpi4-cpu", *ssh_args(emulated_pi),
                     "--release", f"samples={SAMPLES}", "--json")
    first_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["platform"] == "linux-aarch64" and report["python"].startswith("3.11.")
    assert not report["venv_reused"] and report["bytes_copied"] == report["bytes_total"]
    smoke = report["smoke"]
    assert smoke["runtime"] == "tflite-runtime 2.14.0" and smoke["format"] == "tflite-int8"
    assert len(smoke["samples"]) == SAMPLES and smoke["matches"] == SAMPLES
    assert smoke["compared_with"].startswith("tflite (ai-edge-litert")
    assert [s["device"] for s in smoke["samples"]] == [s["workstation"] for s in
                                                       smoke["samples"]]
    release = emulated_pi.local_path("edgekit/releases") / report["release"]
    assert intact(release)

    # Classify pictures on the Pi with the deployed edgekit (OpenCV reads them there).
    v = load_validation(lenet_bundle)
    pictures = []
    for i in range(8):
        pictures.append(tmp_path / f"digit_{i}_{v.y[i]}.png")
        cv2.imwrite(str(pictures[-1]), np.round(v.x[i, :, :, 0] * 255).astype(np.uint8))
    emulated_pi.run(["mkdir", "-p", "digits"])
    copy = subprocess.run(emulated_pi.scp_command(pictures, "digits/"), capture_output=True,
                          check=False)
    assert copy.returncode == 0, copy.stderr
    on_pi = emulated_pi.run(["edgekit/current/venv/bin/edgekit", "classify",
                             "edgekit/current/bundle", *[f"digits/{p.name}" for p in pictures],
                             "--json", "-k", "1"], timeout=600)
    assert on_pi.returncode == 0, on_pi.stderr.decode()
    pi_answers = json.loads(on_pi.stdout)
    here = cli_json("classify", lenet_bundle, *pictures, "--json", "-k", "1")
    assert pi_answers["runtime"] == "tflite-runtime 2.14.0"
    assert [r["classes"][0]["id"] for r in pi_answers["results"]] == \
        [r["classes"][0]["id"] for r in here["results"]]

    # The detector as a service (same profile: the environment is reused), then the unit's
    # command, the detection loop, run on the Pi on a clip instead of a camera.
    service = run_cli("deploy", detector_bundle, "--target", "rpi4-cpu", *ssh_args(emulated_pi),
                      "--service", "--json")
    assert service.returncode == 0, service.stderr
    deployed = json.loads(service.stdout)
    assert deployed["venv_reused"]
    assert deployed["service"]["systemd"] is False  # a chroot has none: installed, not started
    assert deployed["service"]["installed"] and deployed["service"]["check"] is None
    copy = subprocess.run(emulated_pi.scp_command([demo_clip], "clip.avi"), capture_output=True,
                          check=False)
    assert copy.returncode == 0, copy.stderr
    loop = emulated_pi.run(["edgekit/current/venv/bin/edgekit", "run", "edgekit/current/bundle",
                            "--source", "clip.avi", "--backend", "tflite", "--capture",
                            "max_frames=10",
                            "--json"], timeout=600)
    assert loop.returncode == 0, loop.stderr.decode()
    ran = json.loads(loop.stdout)
    assert ran["frames"] == 10 and "tflite-runtime 2.14.0" in ran["backend"]

    # A redeploy copies nothing and reinstalls nothing, on the Pi too.
    started = time.monotonic()
    again = run_cli("deploy", lenet_bundle, "--target", "rpi4-cpu", *ssh_args(emulated_pi),
                    "--json")
    redeploy_seconds = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["bytes_copied"] == 0 and second["venv_reused"]
    print(f"emulated Pi: first deploy {first_seconds:.0f} s (environment "
          f"{report['venv_seconds']:.0f} s), redeploy {redeploy_seconds:.0f} s")
    classifier_service(emulated_pi, lenet_bundle, tmp_path)


def classifier_service(pi: SshServer, bundle: Path, tmp_path: Path) -> None:
    """Issue 21: LeNet as the service, its camera the clip already on the Pi, with the live
    view. The chroot has no systemd, so the unit's command is run as systemd would run it
    (its environment file read); it stays up and its live view shows the classifier."""
    home = pi.run("pwd").stdout.decode().strip()
    port = free_port()
    profile = tmp_path / "rpi4-cpu-classifier.toml"
    profile.write_text((ROOT / "targets" / "rpi4-cpu.toml").read_text().replace(
        'camera = "0"', f'camera = "{home}/clip.avi"\nserve = "127.0.0.1:{port}"'))
    result = run_cli("deploy", bundle, "--target", profile, *ssh_args(pi), "--service",
                     "--json")
    assert result.returncode == 0, result.stderr
    deployed = json.loads(result.stdout)
    assert deployed["venv_reused"] and deployed["service"]["installed"]
    token = deployed["live_view"]["url_with_token"].rsplit("token=", 1)[1]
    unit = pi.local_path(".config/systemd/user/edgekit.service").read_text()
    argv = shlex.split(next(x for x in unit.splitlines()
                            if x.startswith("ExecStart="))[len("ExecStart="):])
    assert argv[3:7] == ["--source", f"{home}/clip.avi", "--capture", "repeat=on"]
    as_systemd = (f"cd edgekit && set -a; . ./service.env; set +a; echo $$ > ../service.pid; "
                  f"exec {shlex.join(argv)}")
    running = subprocess.Popen(pi.ssh_command(["sh", "-c", as_systemd]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    headers = {"Authorization": f"Bearer {token}"}

    def stats() -> dict:
        try:
            answer = get(port, "/stats.json", headers)
        except OSError:
            return {}
        return json.loads(answer.body) if answer.status == 200 else {}

    try:
        assert wait_for(lambda: stats().get("frames", 0) >= 3 or running.poll() is not None,
                        300, step=1.0), stats()
        assert running.poll() is None, running.communicate(timeout=10)[1].decode()
        latest = stats()["latest"]
        assert latest["task"] == "classification" and len(latest["classes"]) == 5
        assert "tflite-runtime 2.14.0" in stats()["backend"]
        assert get(port, "/stats.json").status == 401  # the token deploy made guards it
    finally:
        pid = pi.local_path("service.pid")
        if pid.exists():
            pi.run(["kill", "-TERM", pid.read_text().strip()])
        running.wait(timeout=120)
    assert running.returncode == 143  # SIGTERM, as systemctl stop ends it
