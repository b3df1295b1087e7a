"""`edgekit inspect` on Coral's real models and on a bundle."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli


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
    data = json.loads(run_cli("inspect", lenet_bundle, "--json").stdout)
    assert data["schema"] == "edgekit.bundle/1"


def test_inspect_bad_paths(tmp_path: Path) -> None:
    assert_clean_error(run_cli("inspect", tmp_path / "missing.tflite"), "no such file")
    assert_clean_error(run_cli("inspect", tmp_path), "not an edgekit bundle")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert_clean_error(run_cli("inspect", junk), "not a TFLite model")
