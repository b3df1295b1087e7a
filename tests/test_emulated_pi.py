"""The emulated Raspberry Pi answers over SSH like a Pi running Raspberry Pi OS bookworm."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from sshd import CuttingProxy, SshServer

pytestmark = [pytest.mark.slow, pytest.mark.pi]

VENV = "/tmp/edgekit-test-venv"
CHECK_IMPORT = (
    "import numpy, tflite_runtime, tflite_runtime.interpreter as t; "
    "print(tflite_runtime.__version__, numpy.__version__, t.Interpreter.__name__)"
)


def test_pi_is_aarch64_with_python_311(emulated_pi: SshServer) -> None:
    lock = "import multiprocessing; multiprocessing.Lock(); print(multiprocessing.cpu_count())"
    result = emulated_pi.run(
        f"uname -m; python3 --version; whoami; pwd; python3 -c {shlex.quote(lock)}", timeout=120
    )
    assert result.returncode == 0, result.stderr
    machine, version, user, cwd, cpus = result.stdout.decode().splitlines()
    assert int(cpus) >= 1
    assert machine == "aarch64"
    assert version.startswith("Python 3.11.")
    assert user == "pi"
    assert cwd == emulated_pi.home == "/home/pi"
    assert emulated_pi.local_path("/etc/debian_version").read_text().startswith("12.")


def test_scp_to_the_pi(emulated_pi: SshServer, tmp_path: Path) -> None:
    local = tmp_path / "model.tflite"
    local.write_bytes(os.urandom(300_000))
    result = subprocess.run(
        emulated_pi.scp_command([local], "model.tflite"), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr
    copied = emulated_pi.local_path("model.tflite")
    try:
        assert copied.read_bytes() == local.read_bytes()
        assert copied.stat().st_uid == 1000  # owned by pi
    finally:
        copied.unlink(missing_ok=True)


def test_cut_link_to_the_pi(emulated_pi: SshServer, tmp_path: Path) -> None:
    local = tmp_path / "bundle.tar"
    local.write_bytes(os.urandom(4 * 1024 * 1024))
    assert emulated_pi.log_file is not None
    with CuttingProxy(emulated_pi.host, emulated_pi.port) as proxy:
        proxy.cut_after(upload=1_000_000)
        command = emulated_pi.through(proxy.port).scp_command([local], "bundle.tar")
        result = subprocess.run(command, capture_output=True, timeout=120, check=False)
    partial = emulated_pi.local_path("bundle.tar")
    try:
        assert result.returncode != 0
        assert proxy.cuts == 1
        assert not partial.exists() or partial.stat().st_size < local.stat().st_size
        deadline = time.monotonic() + 30
        while "Connection reset" not in emulated_pi.log_file.read_text():
            assert time.monotonic() < deadline, "the Pi's sshd did not notice the cut"
            time.sleep(0.2)
    finally:
        partial.unlink(missing_ok=True)


def test_pi_venv_runs_tflite_runtime(emulated_pi: SshServer) -> None:
    """What a deployment does on the Pi: a venv with tflite-runtime 2.14 and numpy < 2."""
    python = f"{VENV}/bin/python"
    steps = [
        ["rm", "-rf", VENV],
        ["python3", "-m", "venv", VENV],
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "tflite-runtime==2.14.0",
            "numpy<2",
        ],
        [python, "-c", CHECK_IMPORT],
    ]
    started = time.monotonic()
    result = emulated_pi.run(" && ".join(shlex.join(step) for step in steps), timeout=1200)
    seconds = time.monotonic() - started
    emulated_pi.run(["rm", "-rf", VENV])
    assert result.returncode == 0, result.stderr.decode()
    runtime, numpy_version, interpreter = result.stdout.decode().split()
    assert runtime == "2.14.0"
    assert numpy_version.startswith("1.")
    assert interpreter == "Interpreter"
    print(f"venv + pip install tflite-runtime==2.14.0 numpy<2 + import: {seconds:.0f} s")
