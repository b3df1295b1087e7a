"""`edgekit inspect` on Coral's real models and on a bundle."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli_json, run_cli


def test_inspect_plain_mobilenet(coral: Path) -> None:
    result = run_cli("inspect", coral / "mobilenet_v1_0.25_128_quant.tflite")
    assert result.returncode == 0, result.stderr
    assert "Edge TPU compiled: no" in result.stdout
    assert "DEPTHWISE_CONV_2D" in result.stdout
    assert "scale 0.0078125, zero point 128" in result.stdout


def test_inspect_compiled_mobilenet_json(coral: Path) -> None:
    result = run_cli("inspect", coral / "mobilenet_v1_0.25_128_quant_edgetpu.tflite", "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["edgetpu_compiled"] is True
    assert facts["ops"] == [{"name": "edgetpu-custom-op", "version": 1, "count": 1,
                             "custom": True}]
    assert facts["inputs"][0]["dtype"] == "uint8"
    assert facts["inputs"][0]["quantization"]["zero_point"] == [128]


@pytest.mark.slow
def test_inspect_bundle(lenet_bundle: Path) -> None:
    result = run_cli("inspect", lenet_bundle)
    assert result.returncode == 0, result.stderr
    assert "tflite-int8" in result.stdout and "keras (reference)" in result.stdout
    data = cli_json("inspect", lenet_bundle, "--json")
    assert data["schema"] == "edgekit.bundle/1"


def test_inspect_bad_paths(tmp_path: Path) -> None:
    assert_clean_error(run_cli("inspect", tmp_path / "missing.tflite"), "no such file")
    assert_clean_error(run_cli("inspect", tmp_path), "not an edgekit bundle")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert_clean_error(run_cli("inspect", junk), "not a TFLite model")


@pytest.mark.slow
def test_inspect_onnx_openvino_and_keras_files(lenet_bundle: Path) -> None:
    from conftest import LENET

    onnx = run_cli("inspect", lenet_bundle / "lenet5_digits_int8.onnx")
    assert onnx.returncode == 0, onnx.stderr
    assert "int8 (QDQ): yes" in onnx.stdout and "QuantizeLinear" in onnx.stdout
    assert "input   image" in onnx.stdout and "1x32x32x1" in onnx.stdout
    ir = cli_json("inspect", lenet_bundle / "lenet5_digits_fp16.xml", "--json")
    assert ir["kind"] == "openvino" and ir["ir_version"] == "11" and ir["weights_file"]
    assert "f16" in ir["constants"] and ir["inputs"][0]["shape"] == [1, 32, 32, 1]
    assert ir["outputs"][0]["shape"] == [1, 10]
    keras = run_cli("inspect", LENET / "lenet5_digits.keras")
    assert keras.returncode == 0, keras.stderr
    assert "model: Sequential lenet5_digits" in keras.stdout
    assert "parameters: 61,706" in keras.stdout  # Keras's count_params, not the optimizer's
    assert "?x32x32x1" in keras.stdout and "Conv2D" in keras.stdout
    table = run_cli("inspect", lenet_bundle / "lenet5_digits_int8.tflite", "--table", "csv")
    assert table.returncode == 0, table.stderr
    rows = list(csv.reader(io.StringIO(table.stdout)))
    assert rows[0] == ["kind", "name", "shape", "dtype", "quantisation", "version", "count"]
    assert len({len(r) for r in rows}) == 1 and ["input", "output"] == [r[0] for r in rows[1:3]]
    markdown = run_cli("inspect", lenet_bundle, "--table", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert "| format | status |" in markdown.stdout and "max \\|diff\\|" in markdown.stdout


def test_inspect_a_detector_lists_its_decoders_parameters(detector_bundle: Path) -> None:
    """The parameters come from the decoder's declaration, as --decoder-param's help does."""
    result = run_cli("inspect", detector_bundle)
    assert result.returncode == 0, result.stderr
    assert "decoder edgekit-grid: score_threshold 0.3, " in result.stdout
    assert "  size_scale (a finite number >= 0, default 0.5): " in result.stdout
