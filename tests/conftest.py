"""Shared fixtures: paths, the Coral test data from ../shared, a converted LeNet bundle."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# A test run started in the background by a shell without job control (`make test &` in a
# script) inherits SIGINT ignored, and so would every process the tests start: the Ctrl-C
# tests would then send a signal nothing hears. Python's own handler here means the
# processes the tests start get the default action again (a handler is reset by exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from system_packages import tool_version, tools_of

pytest_plugins = ["conftest_sshd"]  # the loopback OpenSSH server and the emulated Pi

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORAL = SHARED / "testdata" / "coral"
LENET = ROOT / "models" / "lenet5_digits"
DETECTOR = ROOT / "models" / "digit_detector"
SEGMENTER = ROOT / "models" / "digit_segmenter"
LEGACY_PYTHON = ROOT / ".venv-legacy" / "bin" / "python"
# The test files that start the emulated Pi (one runs per machine: pi_userland.sh), or look
# for a fleet run's leftovers among every process of the machine (test_fleet's Ctrl-C; its
# fleet SIGTERM test): under pytest-xdist they run on one worker, one after the other.
EMULATED_PI_FILES = {"test_deploy_pi.py", "test_deploy_pi_imx500.py", "test_emulated_pi.py",
                     "test_fleet.py", "test_pi_binfmt.py", "test_sigterm.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test of the emulated Pi outside EMULATED_PI_FILES could start a second Pi under
    pytest-xdist: say so at collection."""
    for item in items:
        if "emulated_pi" in getattr(item, "fixturenames", ()) and \
                item.path.name not in EMULATED_PI_FILES:
            raise pytest.UsageError(f"{item.nodeid} uses the emulated Pi: add "
                                    f"{item.path.name} to conftest.EMULATED_PI_FILES")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``make test`` runs ``-n 2 --dist loadfile``: a test file runs on one worker, so its
    module fixtures (a systemd device, fleet users, converted models) are built once, and
    EMULATED_PI_FILES count as one file. (xdist 3.8's loadgroup cannot group under pytest 9.)
    xdist starts the files with the most tests first, which mixes the CPU-bound deploy files
    with files that wait: starting the costliest files first made the run slower (docs/
    contributing.md)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "one-per-machine" if Path(path).name in EMULATED_PI_FILES else path

    return ByFile(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test that drives a system tool (Chromium, systemd-nspawn, qemu, ...) names the
    tool's version in its report: ``system_packages.tools_of``."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        names = tools_of(list(item.iter_markers()))
        if names:
            report.sections.append(("system tools", "\n".join(map(tool_version, names))))


@pytest.fixture(scope="session")
def coral() -> Path:
    """Coral's real test models and photos; skipped where ../shared is absent."""
    if not CORAL.is_dir():
        pytest.skip(f"needs Coral's test data in {CORAL} (../shared beside the checkout)")
    return CORAL


@pytest.fixture(scope="session")
def legacy_python() -> str:
    """A Python with tflite-runtime 2.14 (numpy < 2), as `make setup` builds it."""
    if LEGACY_PYTHON.is_file():
        return str(LEGACY_PYTHON)
    pytest.skip("needs tflite-runtime 2.14 in .venv-legacy: run `make setup`")


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """``build(folder)`` once per test run, in a folder every pytest-xdist worker sees: the
    first worker builds under a lock while the others wait, then all use what it built (a
    conversion costs tens of seconds of the 2 cores the workers share). A failed build is
    retried by the next worker that asks, from an empty folder."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    shared = base / "built-once"
    shared.mkdir(exist_ok=True)
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict | None = None) -> CliResult:
    """Run the real `edgekit` command in a subprocess, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
        cwd=cwd, env={**os.environ, **(env or {})}, timeout=600, check=False,
    )
    return CliResult(result.returncode, result.stdout, result.stderr)


def cli_json(*args: str | Path, code: int = 0, env: dict | None = None) -> Any:
    """Run the CLI, check its exit code first (with its stderr when it is wrong), then parse
    the JSON it printed."""
    result = run_cli(*args, env=env)
    assert result.returncode == code, (result.returncode, result.stderr)
    return json.loads(result.stdout)


def assert_clean_error(result: CliResult, *needles: str) -> None:
    """A failed command: non-zero exit, one 'error:' line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle.lower() in errors[0].lower(), errors[0]


@pytest.fixture(scope="session")
def lenet_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled LeNet converted to the default formats (every one but imx500, which has its
    own tests: test_imx500.py), once per test session (checked against tflite-runtime 2.14 too:
    convert finds the checkout's .venv-legacy)."""
    from edgekit.convert import convert

    return built_once(tmp_path_factory, "lenet", lambda folder: convert(
        LENET / "lenet5_digits.keras", folder / "bundle")) / "bundle"


def imx500_toolchain_missing() -> str:
    """Why the IMX500 conversion cannot run here ("" when it can)."""
    import shutil

    from edgekit.helpers.config import imx500_python

    if imx500_python()[0] is None:
        return "no .venv-imx500 beside the checkout (make setup-imx500)"
    if shutil.which("java") is None:
        return "no Java 17 (apt-get install openjdk-17-jre-headless)"
    return ""


@pytest.fixture(scope="session")
def imx500_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled LeNet converted for the AI Camera (imx500, with tflite-int8 and tflite-fp32
    beside it), once per test run (every pytest-xdist worker shares it: minutes of MCT and
    imxconv-tf). Skips without the toolchain. Tests copy it before changing it."""
    from edgekit.convert import ConvertOptions, convert

    missing = imx500_toolchain_missing()
    if missing:
        pytest.skip(missing)
    return built_once(tmp_path_factory, "lenet-imx500", lambda folder: convert(
        LENET / "lenet5_digits.keras", folder / "lenet",
        ConvertOptions(formats="tflite-fp32,tflite-int8,imx500"))) / "lenet"


@pytest.fixture(scope="session")
def segmenter_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled digit segmenter converted to the CPU formats, once per test session."""
    from edgekit.convert import ConvertOptions, convert

    formats = "tflite-fp32,tflite-int8,onnx,onnx-int8,openvino-fp32,openvino-fp16"
    return built_once(tmp_path_factory, "segmenter", lambda folder: convert(
        SEGMENTER / "digit_segmenter.keras", folder / "bundle",
        ConvertOptions(formats=formats))) / "bundle"


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo clip (digits moving over photos, MJPG) with its ground truth beside it."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    from edgekit.demo import make_clip

    return built_once(tmp_path_factory, "clip", lambda folder: make_clip(
        folder / "clip.avi", seconds=6, fps=15, seed=0)) / "clip.avi"


@pytest.fixture(scope="session")
def detector_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled digit detector, converted to one artifact per CPU backend."""
    from edgekit.convert import ConvertOptions, convert

    return built_once(tmp_path_factory, "detector", lambda folder: convert(
        DETECTOR / "digit_detector.keras", folder / "bundle",
        ConvertOptions(formats="tflite-fp32,tflite-int8,onnx,openvino-fp32"))) / "bundle"


@pytest.fixture(scope="session")
def ssd_twin(tmp_path_factory: pytest.TempPathFactory):
    """models/ssd_twin: one SSD-style model as a raw .tflite and with TFLite's post-process
    op (``make_twin.Twin``), once per test session."""
    pytest.importorskip("tensorflow")
    import importlib.util

    spec = importlib.util.spec_from_file_location("edgekit_ssd_twin",
                                                  ROOT / "models" / "ssd_twin" / "make_twin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.make_twin(tmp_path_factory.mktemp("ssd_twin"))


@pytest.fixture(scope="session")
def photos(coral: Path, demo_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real pictures: Coral's two photos and every 10th frame of the demo clip."""
    import cv2

    folder = tmp_path_factory.mktemp("photos")
    for name in ("cat.bmp", "grace_hopper.bmp"):
        cv2.imwrite(str(folder / f"{Path(name).stem}.png"), cv2.imread(str(coral / name)))
    capture = cv2.VideoCapture(str(demo_clip))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % 10 == 0:
            cv2.imwrite(str(folder / f"frame{index:03d}.png"), frame)
        index += 1
    capture.release()
    return folder
