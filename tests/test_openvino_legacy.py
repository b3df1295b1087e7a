"""The older OpenVINO Python APIs, for real: 2022.3 (openvino.runtime, Python 3.10) and
2021.4 (openvino.inference_engine, Python 3.9, the last PyPI wheel with the MYRIAD plugin).

`make setup-tests` builds .venv-openvino2021/2022 where those Pythons exist; the tests skip
otherwise. No NCS2 is attached here, so MYRIAD is tested up to the device boundary.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, CliResult, assert_clean_error

pytestmark = pytest.mark.slow
ENVS = {"2021.4.2": ROOT / ".venv-openvino2021", "2022.3.2": ROOT / ".venv-openvino2022"}


def _cli(version: str, *args: object) -> CliResult:
    import subprocess

    python = ENVS[version] / "bin" / "python"
    if not (ENVS[version] / ".installed").exists():
        pytest.skip(f"needs {ENVS[version].name} (make setup-tests, with Python "
                    f"{'3.9' if version.startswith('2021') else '3.10'} present)")
    result = subprocess.run([str(python), "-m", "edgekit", *map(str, args)],
                            capture_output=True, text=True, timeout=300, check=False)
    return CliResult(result.returncode, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def digits(lenet_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from edgekit.bundle.fidelity import load_validation

    folder = tmp_path_factory.mktemp("digits")
    v = load_validation(lenet_bundle)
    paths = []
    for i in range(6):
        paths.append(folder / f"{v.y[i]}_{i}.png")
        cv2.imwrite(str(paths[-1]), np.round(v.x[i, :, :, 0] * 255).astype(np.uint8))
    return paths


@pytest.mark.parametrize("version", list(ENVS))
def test_openvino_backend_on_the_old_api(version: str, lenet_bundle: Path,
                                         digits: list[Path]) -> None:
    result = _cli(version, "classify", lenet_bundle, *digits, "--backend", "openvino", "--json",
                  "-k", "1")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["runtime"] == f"openvino {version}"
    # 2021.4 cannot read IR v11, so the backend picks the bundle's ONNX there.
    expected = "lenet5_digits.onnx" if version.startswith("2021") else "lenet5_digits_fp32.xml"
    assert Path(data["artifact"]).name == expected
    for path, r in zip(digits, data["results"]):
        assert r["classes"][0]["label"] == path.name.split("_")[0]


@pytest.mark.parametrize("version", list(ENVS))
def test_myriad_stops_at_the_device_boundary(version: str, lenet_bundle: Path,
                                             digits: list[Path]) -> None:
    listed = _cli(version, "backends", "--json")
    assert listed.returncode == 0, listed.stderr
    statuses = {s["name"]: s for s in json.loads(listed.stdout)}
    myriad = statuses["myriad"]
    assert not myriad["usable"] and myriad["runtime"] == f"openvino {version}"
    result = _cli(version, "classify", lenet_bundle, digits[0], "--backend", "myriad")
    if version.startswith("2022"):  # the PyPI wheels of 2022.x leave the MYRIAD plugin out
        assert "without a working MYRIAD plugin" in myriad["reason"]
        assert_clean_error(result, "without a working MYRIAD plugin", "openvino==2021.4.2")
    elif "libusb" in myriad["reason"]:
        assert_clean_error(result, "libusb-1.0 is missing", "apt-get install libusb-1.0-0")
    else:  # the plugin loads; only the stick is missing
        assert myriad["reason"] == "no Intel NCS2 (MYRIAD) is attached"
        assert_clean_error(result, "no Intel NCS2 (MYRIAD) is attached", "udev")


def test_ir_v11_on_openvino_2021_is_explained(lenet_bundle: Path, digits: list[Path]) -> None:
    result = _cli("2021.4.2", "classify", lenet_bundle, digits[0], "--backend", "openvino",
                  "--format", "openvino-fp32")
    assert_clean_error(result, "IR v11", "--format onnx")


@pytest.mark.parametrize("version", list(ENVS))
def test_several_requests_in_flight_on_the_old_api(version: str, lenet_bundle: Path) -> None:
    """OpenVINO 2021.4 and 2022.3 (the NCS2's runtimes) keep several inferences in flight
    with their own async APIs: results equal the synchronous call's, in the order started."""
    python = ENVS[version] / "bin" / "python"
    if not (ENVS[version] / ".installed").exists():
        pytest.skip(f"needs {ENVS[version].name} (make setup-tests)")
    artifact = "lenet5_digits.onnx" if version.startswith("2021") else "lenet5_digits_fp32.xml"
    script = f"""
import json, numpy as np
from edgekit.backends import Concurrency, open_backend
from edgekit.bundle.fidelity import load_validation
x = load_validation({str(lenet_bundle)!r}).x[:12].astype(np.float32)
path = {str(lenet_bundle / artifact)!r}
with open_backend("openvino", path) as b:
    expected = [b.infer(x[i:i + 1])[0] for i in range(len(x))]
rows = []
for c in (Concurrency("latency", 3), Concurrency("throughput", None, 2)):
    with open_backend("openvino", path, concurrency=c) as b:
        started = [b.start(x[i:i + 1]) for i in range(len(x))]
        got = [p.result()[0] for p in started]
        rows.append({{"describe": b.describe(), "requests": b.requests, "streams": b.streams,
                      "same": all(np.allclose(g, e, atol=1e-6) for g, e in zip(got, expected)),
                      "timed": all(p.done_ns > p.started_ns for p in started)}})
print(json.dumps(rows))
"""
    import subprocess

    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    latency, throughput = json.loads(result.stdout.splitlines()[-1])
    assert latency["requests"] == 3 and latency["same"] and latency["timed"]
    assert "latency mode, 3 requests" in latency["describe"]
    assert throughput["requests"] == 2 and throughput["streams"] == 2
    assert throughput["same"] and throughput["timed"]


@pytest.mark.parametrize("version", sorted(ENVS))
def test_every_module_of_the_device_side_imports_on_the_old_python(version: str) -> None:
    """The NCS2's environments run Python 3.9/3.10: the loop, its tasks and the checks must
    import there (``int | None`` at run time, types.UnionType are 3.10+)."""
    modules = ["edgekit.cli.app", "edgekit.cli.run_cmd", "edgekit.cli.bench_cmd",
               "edgekit.loop.run", "edgekit.live.server", "edgekit.loop.labels",
               "edgekit.tasks.segmentation", "edgekit.tasks.generic", "edgekit.helpers.limits",
               "edgekit.helpers.output_files", "edgekit.helpers.files", "edgekit.helpers.text",
               "edgekit.bench.worker", "edgekit.loop.imx500", "edgekit.bundle.imx500_file"]
    python = ENVS[version] / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"needs {ENVS[version].name} (make setup-tests)")
    done = subprocess.run([str(python), "-c", "import " + ", ".join(modules) + "; "
                           "from edgekit.helpers.limits import check_arguments, checked\n"
                           "@checked\ndef f(x: 'int | None' = None) -> None: pass\nf(3)\n"
                           # a decoder's parameters: their fields' types say X | None
                           "from edgekit.tasks.detection import decoder_params\n"
                           "assert decoder_params({'name': 'yolo', 'num_classes': '3'})"
                           ".num_classes == 3"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
