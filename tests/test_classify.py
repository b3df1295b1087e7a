"""`edgekit classify` on Coral's real MobileNet and on the LeNet bundle."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli


@pytest.mark.parametrize("backend", ["tflite", "openvino"])
def test_coral_mobilenet(coral: Path, backend: str) -> None:
    result = run_cli("classify", coral / "mobilenet_v1_0.25_128_quant.tflite",
                     coral / "cat.bmp", coral / "grace_hopper.bmp", "--labels",
                     coral / "imagenet_labels.txt", "--backend", backend, "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backend"] == backend
    cat, hopper = data["results"]
    assert "cat" in cat["classes"][0]["label"]
    assert hopper["classes"][0]["label"].startswith("academic gown")
    assert 0 < cat["classes"][0]["score"] <= 1


def test_human_output(coral: Path) -> None:
    result = run_cli("classify", coral / "mobilenet_v1_0.25_128_quant.tflite",
                     coral / "cat.bmp", "--labels", coral / "imagenet_labels.txt", "-k", "2")
    assert result.returncode == 0, result.stderr
    assert "on tflite (ai-edge-litert" in result.stdout
    assert "1. tiger cat" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tflite", "onnxruntime", "openvino"])
def test_lenet_bundle_reads_digit_images(lenet_bundle: Path, tmp_path: Path,
                                         backend: str) -> None:
    from edgekit.fidelity import load_validation

    v = load_validation(lenet_bundle)
    paths = []
    for i in range(8):
        path = tmp_path / f"digit{i}.png"
        cv2.imwrite(str(path), np.round(v.x[i, :, :, 0] * 255).astype(np.uint8))
        paths.append(path)
    result = run_cli("classify", lenet_bundle, *paths, "--backend", backend, "--json", "-k", "1")
    assert result.returncode == 0, result.stderr
    predicted = [int(r["classes"][0]["label"]) for r in json.loads(result.stdout)["results"]]
    assert np.mean(np.array(predicted) == v.y[:8]) >= 7 / 8
