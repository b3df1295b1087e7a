"""edgekit sends nothing anywhere: the runtimes' telemetry stays off (edgekit/helpers/telemetry.py).

Each command runs in a fresh process with a fresh HOME and temporary folder and no CI
variable (OpenVINO's converter skips telemetry in CI, which would hide a regression), under a
Python audit hook that logs every process started and every network call. Without
`telemetry.off()`, one OpenVINO conversion forks about a hundred sender processes and writes
~/intel/openvino_ga_cid, and importing ONNX Runtime writes a device id and an event database
under ~/.cache/Microsoft and a .ses file in the temporary folder.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LENET

AUDITED = r"""
import sys
log = open(sys.argv[1], "w", buffering=1)
WATCH = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system", "os.exec",
         "subprocess.Popen", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
         "socket.sendto", "urllib.Request"}
def hook(event, args):
    if event in WATCH:
        log.write(event + " " + repr(args)[:400] + "\n")
sys.addaudithook(hook)
sys.argv = ["edgekit"] + sys.argv[2:]
from edgekit.cli import main
main()
"""
CI_VARIABLES = ("CI", "TF_BUILD", "JENKINS_URL")


def audited(tmp_path: Path, *args: str | Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    home, temp, log = tmp_path / "home", tmp_path / "tmp", tmp_path / "audit.log"
    home.mkdir()
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    env.update(HOME=str(home), TMPDIR=str(temp), EDGEKIT_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", AUDITED, str(log), *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=900, check=False)
    return result, log.read_text().splitlines()


def assert_no_telemetry_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not [p for p in left if p.startswith(("intel", ".cache/Microsoft"))], left
    assert not (tmp_path / "tmp" / ".ses").exists()


@pytest.mark.slow
def test_convert_starts_no_telemetry_process_and_touches_no_network(tmp_path: Path) -> None:
    result, events = audited(tmp_path, "convert", LENET / "lenet5_digits.keras", "-o",
                             tmp_path / "bundle", "-q", "--formats",
                             "tflite-int8,onnx,onnx-int8,openvino-fp32,openvino-fp16")
    assert result.returncode == 0, result.stderr
    # OpenVINO's sender forks (multiprocessing); what edgekit starts is the TFLite runtime
    # check (python -I -c ...), and libraries ask `uname -p` or `fc-list` for facts
    assert not [e for e in events if e.startswith(("os.fork", "os.forkpty"))], events
    programs = {e.split("'")[1].rsplit("/", 1)[-1] for e in events
                if e.startswith("subprocess.Popen")}
    assert programs <= {Path(sys.executable).name, "python", "python3", "uname", "fc-list"}, \
        programs
    assert any("'-I', '-c'" in e for e in events), "the runtime check ran (the hook works)"
    assert not [e for e in events if e.startswith(("socket.", "urllib."))], events
    assert_no_telemetry_files(tmp_path)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bench_workers_report_nothing(lenet_bundle: Path, tmp_path: Path) -> None:
    result, events = audited(tmp_path, "bench", lenet_bundle, "--backends",
                             "openvino,onnxruntime", "--runs", "5", "-q")
    assert result.returncode == 0, result.stderr
    started = [e for e in events if e.startswith(("os.", "subprocess."))]
    assert started and all("edgekit.bench.worker" in e for e in started), started
    assert not [e for e in events if e.startswith(("socket.", "urllib."))], events
    assert_no_telemetry_files(tmp_path)  # the workers inherit ORT_DISABLE_TELEMETRY


def test_off_blocks_openvinos_telemetry_package_and_sets_onnxruntimes_switch() -> None:
    code = ("from edgekit.helpers import telemetry; telemetry.off()\n"
            "import importlib, os\n"
            "try:\n    importlib.import_module('openvino_telemetry'); print('imported')\n"
            "except ImportError:\n    print('blocked')\n"
            "print(os.environ['ORT_DISABLE_TELEMETRY'], telemetry.is_off())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["blocked", "1", "True"]
