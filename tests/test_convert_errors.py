"""Bad input to `edgekit convert`: one clear line, non-zero exit, nothing half-written."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LENET, assert_clean_error, run_cli

MODEL = LENET / "lenet5_digits.keras"


def _nothing_written(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not (folder / "out").exists()
    assert not leftovers, leftovers


def test_missing_file(tmp_path: Path) -> None:
    assert_clean_error(run_cli("convert", tmp_path / "nope.keras", "-o", tmp_path / "out"),
                       "no such file")
    _nothing_written(tmp_path)


def test_missing_data_is_said_before_the_model_loads(tmp_path: Path) -> None:
    for flag, what in (("--calib", "calibration data"), ("--val", "validation data")):
        result = run_cli("convert", MODEL, "-o", tmp_path / "out", flag, tmp_path / "gone.npz")
        assert_clean_error(result, f"{what}: {tmp_path / 'gone.npz'} does not exist")
        assert "loading" not in result.stderr  # said before TensorFlow loads the model
    _nothing_written(tmp_path)


def test_file_that_is_not_a_keras_model(tmp_path: Path, coral: Path) -> None:
    text = tmp_path / "notes.keras"
    text.write_text("this is not a model\n")
    assert_clean_error(run_cli("convert", text, "-o", tmp_path / "out"), "not a valid .keras")
    tflite = coral / "mobilenet_v1_0.25_128_quant.tflite"
    assert_clean_error(run_cli("convert", tflite, "-o", tmp_path / "out"), "not a Keras model")
    _nothing_written(tmp_path)


@pytest.mark.slow
def test_truncated_keras_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.keras"
    data = MODEL.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    assert_clean_error(run_cli("convert", broken, "-o", tmp_path / "out"), "damaged")
    _nothing_written(tmp_path)


@pytest.mark.slow
def test_corrupt_weights_inside_a_valid_archive(tmp_path: Path) -> None:
    import zipfile

    broken = tmp_path / "corrupt.keras"
    with zipfile.ZipFile(MODEL) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".h5"):
                data = data[:64] + bytes(b ^ 0xFF for b in data[64:4096]) + data[4096:]
            dst.writestr(item, data)
    assert_clean_error(run_cli("convert", broken, "-o", tmp_path / "out"), "corrupt.keras",
                       "damaged", "save the model again")
    _nothing_written(tmp_path)


@pytest.mark.slow
def test_calibration_data_of_the_wrong_shape(tmp_path: Path) -> None:
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((120, 28, 28, 1), np.float32))
    result = run_cli("convert", MODEL, "-o", tmp_path / "out", "--calib", calib)
    assert_clean_error(result, "(28, 28, 1)", "(32, 32, 1)")
    _nothing_written(tmp_path)


def test_unknown_format_name(tmp_path: Path) -> None:
    result = run_cli("convert", MODEL, "-o", tmp_path / "out", "--formats", "tflite-fp16")
    assert_clean_error(result, "unknown format 'tflite-fp16'", "tflite-int8")
    assert result.returncode == 2
    _nothing_written(tmp_path)


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("convert", MODEL, "-o", out)
    assert_clean_error(result, "already exists", "--force")
    forced = run_cli("convert", MODEL, "-o", out, "--force")
    assert_clean_error(forced, "not an edgekit bundle")
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_failed_reconvert_keeps_the_old_bundle(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_cli("convert", MODEL, "-o", out, "--formats", "tflite-fp32", "-q")
    assert first.returncode == 0, first.stderr
    before = (out / "edgekit.json").read_text()
    calib = tmp_path / "bad.npy"
    np.save(calib, np.zeros((120, 8, 8, 1), np.float32))
    again = run_cli("convert", MODEL, "-o", out, "--force", "--calib", calib)
    assert_clean_error(again, "calibration data")
    assert (out / "edgekit.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "out"]


@pytest.mark.slow
def test_ctrl_c_leaves_no_partial_bundle(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "convert", str(MODEL), "-o", str(tmp_path / "out")],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "[2/" in line:
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("convert", tmp_path / "nope.keras", "-o", tmp_path / "out", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "InvalidModel" in result.stderr
