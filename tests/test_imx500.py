"""The Raspberry Pi AI Camera (Sony IMX500): the ``imx500`` format and ``--source imx500``.

Conversion runs Sony's real toolchain (MCT and imxconv-tf in .venv-imx500, Java 17); those
tests skip, saying why, where it is missing (``make setup-imx500``). Everything up to the sensor
runs for real against the stand-in of ``picamera2.devices.IMX500`` (tests/standins/picamera2):
its API, its metadata layout (the tensors column-major in ``CnnOutputTensor``, their shapes in
libcamera's packed ``CnnOutputTensorInfo``, the DNN time in ``CnnKpiInfo``) and its failures.
The fast tests use a bundle whose imx500 artifact is a hand-made packerOut.zip; the slow one
goes from ``convert`` to ``run --source imx500``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import LENET, ROOT, assert_clean_error, imx500_toolchain_missing, run_cli

from edgekit.bundle.integrity import sha256_file
from edgekit.bundle.manifest import Artifact, FileRecord, read_manifest, write_manifest
from edgekit.bundle.tables import conversion_table
from edgekit.errors import SourceLost, UsageError
from edgekit.helpers.config import IMX500_PYTHON_VAR
from edgekit.loop.imx500 import camera_number, to_keras
from edgekit.loop.picamera import is_imx500

STANDINS = ROOT / "tests" / "standins"
DNN_US = 6500


def standin_env(**extra: str) -> dict[str, str]:
    """The worktree's edgekit first, then the Picamera2 and libcamera stand-ins."""
    path = os.pathsep.join(str(p) for p in (ROOT, STANDINS / "picamera2", STANDINS / "libcamera"))
    return {"PYTHONPATH": path, "EDGEKIT_STANDIN_CAMERAS": "imx500",
            "EDGEKIT_STANDIN_IMX500_DNN_US": str(DNN_US), **extra}


needs_toolchain = pytest.mark.skipif(bool(imx500_toolchain_missing()),
                                     reason=imx500_toolchain_missing())


def packer_zip(path: Path, outputs: list[tuple[int, ...]]) -> None:
    """A packerOut.zip as imxconv-tf lays it out (its dnnParams.xml and manifest.json)."""
    tensors = "".join(
        f'<outputTensor ordinal="{i}" name="out{i}" bitsPerElement="8" scale="0.0039" '
        f'format="unsigned"><dimensions>'
        + "".join(f'<dimension size="{d}" ordinal="{j}"/>' for j, d in enumerate(shape))
        + "</dimensions></outputTensor>" for i, shape in enumerate(outputs))
    params = ('<?xml version="1.0"?><dnnParams><networks><network name="net" ordinal="0">'
              '<inputTensors><inputTensor ordinal="0" name="image:0" bitsPerElement="8" '
              'scale="0.0039" format="unsigned"><dimensions><dimension size="128" ordinal="0"/>'
              '<dimension size="128" ordinal="1"/><dimension size="3" ordinal="2"/>'
              f"</dimensions></inputTensor></inputTensors><outputTensors>{tensors}"
              "</outputTensors></network></networks></dnnParams>")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dnnParams.xml", params)
        archive.writestr("manifest.json", json.dumps({"Target": "IMX500", "Network Name": "net",
                                                      "Release Version": "3.19.1"}))
        archive.writestr("l2staticData.bin", b"\0" * 64)
    report = {"Memory Report": {"Memory Usage": "601.13KB", "Total Memory Available On Chip":
                                "8.00MB", "Memory Utilization": "8%", "Fit In Chip": True}}
    path.with_suffix(".json").write_text(json.dumps(report))


def add_imx500(source: Path, folder: Path, rpk: bool = True) -> Path:
    """A copy of ``source`` (a bundle) with an imx500 artifact, its .rpk beside it."""
    bundle = folder / "bundle"
    shutil.copytree(source, bundle)
    manifest = read_manifest(bundle)
    packed = bundle / f"{manifest.name}_imx500.zip"
    packer_zip(packed, [tuple(o["shape"][1:]) for o in manifest.outputs])
    files = [packed, packed.with_suffix(".json")]
    manifest.artifacts.append(Artifact(
        "imx500", "ok", file=packed.name, size=sum(f.stat().st_size for f in files),
        files={f.name: FileRecord(sha256_file(f), f.stat().st_size) for f in files}))
    write_manifest(manifest, bundle)
    if rpk:
        packed.with_suffix(".rpk").write_bytes(b"9464 network firmware stand-in")
    return bundle


def sensor_outputs(bundle: Path, clip: Path, frames: int, out: Path) -> Path:
    """What the sensor would compute for the clip's first ``frames``: the bundle's float
    model on each frame stretched to the input (the sensor scales its whole view), per output
    the frames stacked, as the stand-in takes them."""
    from edgekit.model import load_model
    from edgekit.preprocess import prepare

    capture = cv2.VideoCapture(str(clip))
    per_output: list[list[np.ndarray]] = []
    with load_model(bundle, backend="tflite", fmt="tflite-fp32") as model:
        spec = replace(model.spec, resize="stretch")
        for _ in range(frames):
            ok, image = capture.read()
            assert ok
            outputs = model.predict(prepare(cv2.resize(image, (640, 480)), spec)[0])
            per_output = per_output or [[] for _ in outputs]
            for store, o in zip(per_output, outputs):
                store.append(o[0])
    capture.release()
    np.savez(out, **{str(i): np.stack(s) for i, s in enumerate(per_output)})
    return out


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_source_names() -> None:
    assert is_imx500("imx500") and is_imx500("imx500:1")
    assert not is_imx500("imx5000") and not is_imx500("picamera2")
    assert camera_number("imx500") == 0 and camera_number("imx500:2") == 2
    for bad in ("imx500:", "imx500:x", "imx500:-1"):
        with pytest.raises(UsageError, match="imx500:N"):
            camera_number(bad)


def test_sensor_tensors_to_keras_order() -> None:
    """The sensor's tensors become the model's outputs: as they are, with a batch, or with
    their dimensions reversed (a column-major layout); a different network is refused."""
    grid = np.arange(8 * 8 * 4, dtype=np.float32).reshape(8, 8, 4)
    same = to_keras([grid[None]], [(1, 8, 8, 4)])
    assert np.array_equal(same[0][0], grid)
    reversed_ = to_keras([grid.transpose(2, 1, 0)], [(1, 8, 8, 4)])
    assert np.array_equal(reversed_[0][0], grid)
    with pytest.raises(SourceLost, match="another network"):
        to_keras([grid], [(1, 10)])
    with pytest.raises(SourceLost, match="2 output tensors"):
        to_keras([grid, grid], [(1, 8, 8, 4)])


def test_run_on_sensor_as_on_the_file(detector_bundle: Path, demo_clip: Path,
                                      tmp_path: Path) -> None:
    """--source imx500 gives every frame the detections the same model gives that frame from
    the file (the sensor's outputs through edgekit's decoder, drawing and --jsonl), and the
    infer stage's time is the sensor's DNN time from the KPI data."""
    bundle = add_imx500(detector_bundle, tmp_path)
    frames = 12
    outputs = sensor_outputs(bundle, demo_clip, frames, tmp_path / "outputs.npz")
    env = standin_env(EDGEKIT_STANDIN_VIDEO=str(demo_clip),
                      EDGEKIT_STANDIN_IMX500_OUTPUTS=str(outputs),
                      EDGEKIT_STANDIN_IMX500_WARMUP="0")
    sensor = run_cli("run", bundle, "--source", "imx500", "--capture", f"max_frames={frames}",
                     "--save", tmp_path / "sensor.jsonl", "--save", tmp_path / "sensor.avi",
                     "--json", env=env)
    assert sensor.returncode == 0, sensor.stderr
    report = json.loads(sensor.stdout)
    assert report["backend"].startswith("imx500 sensor")
    assert report["source"].startswith("IMX500 sensor 0")
    assert report["frames"] == frames
    assert (tmp_path / "sensor.avi").stat().st_size > 0
    plain = run_cli("run", bundle, "--source", demo_clip, "--infer", "format=tflite-fp32",
                    "--preprocess", "resize=stretch", "--capture", f"max_frames={frames}", "--save",
                    tmp_path / "file.jsonl", "--json")
    assert plain.returncode == 0, plain.stderr
    got, want = jsonl(tmp_path / "sensor.jsonl"), jsonl(tmp_path / "file.jsonl")
    assert len(got) == len(want) == frames
    assert sum(len(line["detections"]) for line in want) > 0
    for a, b in zip(got, want):
        assert a["frame"] == b["frame"]
        assert [d["label"] for d in a["detections"]] == [d["label"] for d in b["detections"]]
        for da, db in zip(a["detections"], b["detections"]):
            assert np.allclose(da["box"], db["box"], atol=1.0)
        assert a["timings_ms"]["infer"] == DNN_US / 1000


def test_frames_before_the_network_runs(detector_bundle: Path, demo_clip: Path,
                                        tmp_path: Path) -> None:
    """Frames whose metadata has no tensors yet (the network still loading) are skipped and
    counted; a network that never starts ends the run with one line, after the wait."""
    bundle = add_imx500(detector_bundle, tmp_path)
    outputs = sensor_outputs(bundle, demo_clip, 4, tmp_path / "outputs.npz")
    env = standin_env(EDGEKIT_STANDIN_VIDEO=str(demo_clip),
                      EDGEKIT_STANDIN_IMX500_OUTPUTS=str(outputs),
                      EDGEKIT_STANDIN_IMX500_WARMUP="3")
    result = run_cli("run", bundle, "--source", "imx500", "--capture", "max_frames=4", "--json",
                     env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dropped"] == 3
    never = run_cli("run", bundle, "--source", "imx500", "--capture", "max_frames=4",
                    env=standin_env(EDGEKIT_IMX500_WAIT_S="0.5"))
    assert never.returncode != 0
    assert "no output tensors" in never.stderr and "Traceback" not in never.stderr


@pytest.mark.parametrize("case, env, args, needle", [
    ("no IMX500 among the cameras", {"EDGEKIT_STANDIN_CAMERAS": "imx708"}, (),
     "Requested camera dev-node not found"),
    ("firmware refused", {"EDGEKIT_STANDIN_IMX500_FAIL": "firmware"}, (),
     "Unable to set network firmware"),
    ("a backend named", {}, ("--backend", "tflite"), "--backend"),
    ("bad camera number", {}, ("--source", "imx500:x"), "imx500:N"),
])
def test_sensor_failures_one_line(detector_bundle: Path, tmp_path: Path, case: str,
                                  env: dict, args: tuple, needle: str) -> None:
    bundle = add_imx500(detector_bundle, tmp_path)
    source = () if "--source" in args else ("--source", "imx500")
    result = run_cli("run", bundle, *source, *args, "--capture", "max_frames=2",
                     env=standin_env(**env))
    assert_clean_error(result, needle)


def test_bundle_without_imx500_artifact(detector_bundle: Path) -> None:
    result = run_cli("run", detector_bundle, "--source", "imx500", env=standin_env())
    assert_clean_error(result, "has none", "--formats imx500")
    assert result.returncode == 2


def test_no_picamera2_says_what_to_install(detector_bundle: Path, tmp_path: Path) -> None:
    bundle = add_imx500(detector_bundle, tmp_path)
    result = run_cli("run", bundle, "--source", "imx500", env={"PYTHONPATH": str(ROOT)})
    assert_clean_error(result, "python3-picamera2")


def test_no_rpk_and_no_packager(detector_bundle: Path, tmp_path: Path) -> None:
    bundle = add_imx500(detector_bundle, tmp_path, rpk=False)
    env = standin_env(PATH=os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin")
    result = run_cli("run", bundle, "--source", "imx500", env=env)
    assert_clean_error(result, "imx500-package", "imx500-tools")


def test_inspect_reads_packer_and_memory_report(tmp_path: Path) -> None:
    packed = tmp_path / "m_imx500.zip"
    packer_zip(packed, [(8, 8, 4), (10,)])
    result = run_cli("inspect", packed)
    assert result.returncode == 0, result.stderr
    assert "target: IMX500" in result.stdout
    assert "on-chip memory 601.13KB of 8.00MB (8%): fits" in result.stdout
    assert "8x8x4" in result.stdout and "uint8" in result.stdout
    facts = json.loads(run_cli("inspect", packed, "--json").stdout)
    assert facts["memory"]["fits"] is True and facts["outputs"][1]["shape"] == [10]
    broken = tmp_path / "broken_imx500.zip"
    broken.write_bytes(b"not a zip")
    assert_clean_error(run_cli("inspect", broken), "not a readable zip archive")


def test_bench_lists_imx500_as_not_runnable_here(detector_bundle: Path,
                                                 tmp_path: Path) -> None:
    from edgekit.bench import plan

    bundle = add_imx500(detector_bundle, tmp_path)
    rows = [p for p in plan(bundle, None) if p.format == "imx500"]
    assert len(rows) == 1 and rows[0].backend == "sensor"
    assert "the IMX500 sensor runs it" in rows[0].skip and "--source imx500" in rows[0].skip


def test_backends_says_what_the_device_needs() -> None:
    result = run_cli("backends", "--json")
    assert result.returncode == 0, result.stderr
    row = next(r for r in json.loads(result.stdout) if r["name"] == "imx500 (sensor)")
    assert not row["usable"]
    assert "imx500-all" in row["hint"] and "python3-picamera2" in row["hint"]


def test_toolchain_missing_is_skipped_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    from edgekit.convert.imx500 import toolchain
    from edgekit.errors import Skipped

    monkeypatch.setenv(IMX500_PYTHON_VAR, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(Skipped, match="make setup-imx500"):
        toolchain()
    env = tmp_path / "env" / "bin"
    env.mkdir(parents=True)
    for name in ("python", "imxconv-tf"):
        (env / name).write_text("#!/bin/sh\n")
    monkeypatch.setenv(IMX500_PYTHON_VAR, str(env / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(Skipped, match="java is not on PATH.*openjdk-17-jre-headless"):
        toolchain()
    old = tmp_path / "old"
    old.mkdir()
    (old / "java").write_text('#!/bin/sh\necho \'openjdk version "11.0.2"\' >&2\n')
    (old / "java").chmod(0o755)
    monkeypatch.setenv("PATH", str(old))
    with pytest.raises(Skipped, match="java is version 11"):
        toolchain()


@pytest.mark.slow
def test_convert_without_the_environment_skips_the_row(tmp_path: Path) -> None:
    result = run_cli("convert", LENET / "lenet5_digits.keras", "-o", tmp_path / "b",
                     "--formats", "imx500", "--json",
                     env={IMX500_PYTHON_VAR: str(tmp_path / "none" / "python")})
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["artifacts"][0]
    assert row["status"] == "skipped" and "make setup-imx500" in row["reason"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["edgekit.json",
                                                                  "validation.npz"]


@pytest.mark.slow
@needs_toolchain
def test_convert_lenet_then_run_on_the_sensor(imx500_bundle: Path, demo_clip: Path,
                                              tmp_path: Path) -> None:
    """The whole path: MCT + imxconv-tf on LeNet (>= 99% top-1 agreement, the memory report
    in the bundle and the table), inspect, then run --source imx500 on the stand-in."""
    bundle = tmp_path / "lenet"
    shutil.copytree(imx500_bundle, bundle)  # the session's conversion, shared
    table = conversion_table(read_manifest(bundle))  # what convert printed
    assert "on-chip memory" in table and ": fits" in table and "simulates the IMX500" in table
    a = read_manifest(bundle).artifact("imx500")
    assert a.ok and a.fidelity.top1_agreement >= 0.99, (a.reason, a.fidelity)
    assert a.details["memory"]["fits"] is True
    assert a.details["keras2_transfer_max_abs_diff"] < 1e-4
    assert set(a.files) == {"lenet5_digits_imx500.zip", "lenet5_digits_imx500.json"}
    with zipfile.ZipFile(bundle / a.file) as archive:
        assert "dnnParams.xml" in archive.namelist()
    shown = run_cli("inspect", bundle / a.file)
    assert "network: lenet5_digits" in shown.stdout, shown.stdout
    (bundle / a.file).with_suffix(".rpk").write_bytes(b"9464 stand-in")
    outputs = sensor_outputs(bundle, demo_clip, 6, tmp_path / "outputs.npz")
    run = run_cli("run", bundle, "--source", "imx500", "--capture", "max_frames=6", "--save",
                  tmp_path / "run.jsonl", "--json",
                  env=standin_env(EDGEKIT_STANDIN_VIDEO=str(demo_clip),
                                  EDGEKIT_STANDIN_IMX500_OUTPUTS=str(outputs),
                                  EDGEKIT_STANDIN_IMX500_WARMUP="0"))
    assert run.returncode == 0, run.stderr
    lines = jsonl(tmp_path / "run.jsonl")
    assert len(lines) == 6
    with np.load(outputs) as data:
        expected = data["0"].argmax(axis=-1)
    assert [line["top1"]["class_id"] for line in lines] == list(expected)


@pytest.mark.slow
@needs_toolchain
def test_no_calibration_data_skips_the_row_with_the_fix(tmp_path: Path) -> None:
    """A model with no data beside it and no --calib: the row is skipped saying to give
    --calib (quantising needs it), the bundle keeps nothing of it, the other rows are built."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(
        tmp_path / "small.keras")
    result = run_cli("convert", tmp_path / "small.keras", "-o", tmp_path / "b", "--formats",
                     "tflite-fp32,imx500", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["format"]: r for r in json.loads(result.stdout)["artifacts"]}
    assert rows["tflite-fp32"]["status"] == "ok"
    assert rows["imx500"]["status"] == "skipped" and "give --calib" in rows["imx500"]["reason"]
    assert not list((tmp_path / "b").glob("small_imx500.*"))


def test_converter_reason_in_one_line() -> None:
    from edgekit.convert.imx500 import explain_converter_failure

    output = ("2026-12-07 01:06:20,100 INFO : CODE: [CNV] starting\n"
              "2026-12-07 01:06:28,388 ERROR : CODE: [USOP] The network contains unsupported "
              "ops: keras.src.layers.rnn.gru.GRU [/x/site-packages/uni/common/logger.py:185]\n"
              "Traceback (most recent call last):\n")
    assert explain_converter_failure(output) == ("The network contains unsupported ops: "
                                                 "keras.src.layers.rnn.gru.GRU")
    assert explain_converter_failure("") == "no output"


@pytest.mark.slow
@needs_toolchain
def test_layer_the_converter_refuses_fails(tmp_path: Path) -> None:
    """A GRU: MCT quantises it, imxconv-tf refuses it; failed with the converter's reason."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Reshape((14 * 14, 4))(x)
    x = keras.layers.GRU(8)(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(
        tmp_path / "gru.keras")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((16, 16, 16, 3),
                                                                     dtype=np.float32))
    result = run_cli("convert", tmp_path / "gru.keras", "-o", tmp_path / "b", "--formats",
                     "imx500", "--calib", tmp_path / "calib.npy", "--json")
    assert result.returncode == 1
    row = json.loads(result.stdout)["artifacts"][0]
    assert row["status"] == "failed"
    assert row["reason"] == ("imxconv-tf refused the model: The network contains unsupported "
                             "ops: keras.src.layers.rnn.gru.GRU")
    assert not list((tmp_path / "b").glob("gru_imx500.*"))


def _agent(command: str, payload: dict, path: str) -> dict:
    """The device agent run as deploy runs it (its source on stdin), with ``path`` as PATH."""
    import subprocess

    from edgekit.deploy.shipping import agent_source

    done = subprocess.run([sys.executable, "-", command, json.dumps(payload)],
                          input=agent_source(), capture_output=True, timeout=60,
                          env={**os.environ, "PATH": path}, check=False)
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return json.loads(done.stdout.decode().splitlines()[-1])


def test_agent_makes_the_rpk_on_the_device(tmp_path: Path) -> None:
    """Deploy's device side: imx500-package (a stand-in here) turns the verified release's
    packerOut.zip into NAME_imx500.rpk, read-only, its sha256 in release.json; an .rpk whose
    sha256 differs from the release's, or no imx500-package, is one line and leaves nothing."""
    from test_deploy import Holder

    base = tmp_path / "edgekit"
    incoming = base / "releases" / ".incoming-r1"
    (incoming / "bundle").mkdir(parents=True)
    packer_zip(incoming / "bundle" / "m_imx500.zip", [(10,)])
    (incoming / "release.json").write_text(json.dumps({"id": "r1", "files": []}))
    tools = tmp_path / "tools"
    tools.mkdir()
    packager = tools / "imx500-package"
    packager.write_text('#!/bin/sh\n[ "$1" = -i ] && [ "$3" = -o ] || exit 2\n'
                        'cat "$2" > "$4/network.rpk" && printf 3695 >> "$4/network.rpk"\n')
    packager.chmod(0o755)
    holder = Holder(sys.executable, base, "t")
    try:
        payload = {"base": str(base), "lock": "t", "release": "r1",
                   "artifact": "bundle/m_imx500.zip"}
        path = f"{tools}{os.pathsep}/usr/bin{os.pathsep}/bin"
        wrong = _agent("imx500", {**payload, "expect_sha256": "0" * 64}, path)
        assert not wrong["ok"] and wrong["code"] == "imx500_sha256", wrong
        assert "sha256" in wrong["error"] and "\n" not in wrong["error"]
        assert sorted(p.name for p in (incoming / "bundle").iterdir()) == ["m_imx500.json",
                                                                          "m_imx500.zip"]
        assert not (incoming / ".imx500-work").exists()
        missing = _agent("imx500", payload, str(tmp_path / "empty"))
        assert not missing["ok"] and missing["code"] == "imx500_tools_missing"
        assert "imx500-all" in missing["error"]
        made = _agent("imx500", payload, path)
        assert made["ok"], made
        rpk = incoming / "bundle" / "m_imx500.rpk"
        assert rpk.read_bytes().endswith(b"3695") and rpk.stat().st_mode & 0o222 == 0
        assert made["rpk"]["sha256"] == sha256_file(rpk)
        record = json.loads((incoming / "release.json").read_text())
        assert record["files"] == [made["rpk"]] and record["imx500_rpk"]["path"] == \
            "bundle/m_imx500.rpk"
        again = _agent("imx500", {**payload, "expect_sha256": made["rpk"]["sha256"]}, path)
        assert again["ok"] and again["rpk"] == made["rpk"]
    finally:
        holder.release()
