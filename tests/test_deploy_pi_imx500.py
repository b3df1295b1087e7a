"""The AI Camera target (rpi5-ai-camera) on the emulated Raspberry Pi (arm64 Debian bookworm,
Python 3.11, under qemu): the session's converted LeNet (imx500 and tflite-int8) deployed
there, ``imx500-package`` (a stand-in in /usr/local/bin) making the .rpk on the Pi before the
switch, the environment made with system site packages (where Raspberry Pi OS's Picamera2
lives: here the Picamera2 stand-ins, in /usr/lib/python3/dist-packages), the smoke test's
verify on tflite-runtime 2.14, then ``edgekit run --source imx500:0`` on the Pi through that
environment. Then the packager missing: one line, nothing switched.

The systemd device (test_deploy_systemd.py) proves the service; this proves the aarch64
environment. Slow: run it with
EDGEKIT_PI_BUILD=1 .venv/bin/python -m pytest -m pi tests/test_deploy_pi_imx500.py
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli
from deploy_support import intact, sha256, ssh_args
from sshd import SshServer
from test_deploy_imx500 import PACKAGER
from test_imx500 import STANDINS, sensor_outputs

pytestmark = [pytest.mark.slow, pytest.mark.pi]
SAMPLES = 5
FRAMES = 4
SYSTEM_SITE = "/usr/lib/python3/dist-packages"  # the system's site-packages on Debian


def deploy(pi: SshServer, bundle: Path):
    return run_cli("deploy", bundle, "--target", "rpi5-ai-camera", *ssh_args(pi),
                   "--release", f"samples={SAMPLES}", "--json")


def current(pi: SshServer) -> str:
    return os.readlink(pi.local_path("edgekit/current"))


def test_the_ai_camera_on_the_emulated_pi(emulated_pi: SshServer, imx500_bundle: Path,
                                          demo_clip: Path) -> None:
    pi = emulated_pi
    packager = pi.local_path("/usr/local/bin/imx500-package")
    placed = [packager, *(pi.local_path(f"{SYSTEM_SITE}/{name}")
                          for name in ("picamera2", "libcamera"))]
    try:
        packager.write_text(PACKAGER)
        packager.chmod(0o755)
        for name in ("picamera2", "libcamera"):  # where apt puts python3-picamera2
            shutil.copytree(STANDINS / name / name, pi.local_path(f"{SYSTEM_SITE}/{name}"),
                            dirs_exist_ok=True)
        started = time.monotonic()
        result = deploy(pi, imx500_bundle)
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["platform"] == "linux-aarch64" and sorted(report["formats"]) == [
            "imx500", "tflite-int8"]
        smoke = report["smoke"]
        assert smoke["runtime"] == "tflite-runtime 2.14.0" and smoke["format"] == "tflite-int8"
        assert smoke["matches"] == len(smoke["samples"]) == SAMPLES
        release = pi.local_path(f"edgekit/releases/{report['release']}")
        rpk = release / "bundle" / "lenet5_digits_imx500.rpk"
        assert rpk.read_bytes() == (release / "bundle" / "lenet5_digits_imx500.zip"
                                    ).read_bytes() + b"9464"  # made there, by the packager
        record = json.loads((release / "release.json").read_text())
        assert record["imx500_rpk"] == report["imx500_rpk"] == {
            "path": "bundle/lenet5_digits_imx500.rpk", "sha256": sha256(rpk),
            "size": rpk.stat().st_size}
        assert intact(release) and current(pi) == f"releases/{report['release']}"
        assert "include-system-site-packages = true" in (release / "venv" / "pyvenv.cfg"
                                                         ).read_text()

        loop_started = time.monotonic()
        # The sensor's loop on the Pi: Picamera2 (the stand-ins) seen through the system site
        # packages, the .rpk loaded, the tensors decoded by the deployed edgekit.
        outputs = sensor_outputs(imx500_bundle, demo_clip, FRAMES,
                                 pi.local_path("imx500-outputs.npz"))
        shutil.copy(demo_clip, pi.local_path("imx500-clip.avi"))
        env = {"EDGEKIT_STANDIN_CAMERAS": "imx500", "EDGEKIT_STANDIN_VIDEO": "imx500-clip.avi",
               "EDGEKIT_STANDIN_IMX500_OUTPUTS": "imx500-outputs.npz",
               "EDGEKIT_STANDIN_IMX500_WARMUP": "0"}
        loop = pi.run(["env", *(f"{k}={v}" for k, v in env.items()),
                       "edgekit/current/venv/bin/edgekit", "run", "edgekit/current/bundle",
                       "--source", "imx500:0", "--capture", f"max_frames={FRAMES}",
                       "--save", "imx500-run.jsonl", "--json"], timeout=600)
        assert loop.returncode == 0, loop.stderr.decode()
        assert json.loads(loop.stdout)["frames"] == FRAMES
        lines = [json.loads(x) for x in pi.local_path("imx500-run.jsonl").read_text().splitlines()]
        with np.load(outputs) as data:
            assert [x["top1"]["class_id"] for x in lines] == list(data["0"].argmax(axis=-1))

        loop_seconds = time.monotonic() - loop_started

        # No imx500-package on the Pi: one line naming the package, nothing switched.
        refused_started = time.monotonic()
        packager.unlink()
        before = current(pi)
        refused = deploy(pi, imx500_bundle)
        assert_clean_error(refused, "imx500-package", "sudo apt install -y imx500-all",
                           "the incomplete new release was removed")
        assert current(pi) == before
        assert not list(pi.local_path("edgekit/releases").glob(".incoming-*"))
        print(f"emulated Pi, AI Camera: deploy {seconds:.0f} s (steps {report['seconds']}; "
              f"environment reused: {report['venv_reused']}), the sensor's loop "
              f"{loop_seconds:.0f} s, the refused deploy "
              f"{time.monotonic() - refused_started:.0f} s")
    finally:
        for path in placed:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for name in ("imx500-outputs.npz", "imx500-clip.avi", "imx500-run.jsonl"):
            pi.local_path(name).unlink(missing_ok=True)
