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
    from edgekit.bundle.fidelity import load_validation

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


@pytest.mark.slow
def test_an_unreadable_image_gets_its_own_line_and_the_others_are_classified(
        lenet_bundle: Path, tmp_path: Path) -> None:
    from edgekit.bundle.fidelity import load_validation

    v = load_validation(lenet_bundle)
    good = tmp_path / "seven.png"
    cv2.imwrite(str(good), np.round(v.x[0, :, :, 0] * 255).astype(np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:40])
    missing = tmp_path / "missing.png"
    result = run_cli("classify", lenet_bundle, good, broken, missing, "-k", "1")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: 2 of 3 images could not be read")
    assert f"{good}\n  1. {v.y[0]} " in result.stdout
    assert f"{broken}\n  could not read it: " in result.stdout
    assert f"{missing}\n  could not read it: {missing}: no such image file" in result.stdout
    as_json = run_cli("classify", lenet_bundle, good, missing, "--json")
    assert as_json.returncode == 1, as_json.stderr
    results = json.loads(as_json.stdout)["results"]
    assert results[0]["classes"] and "no such image file" in results[1]["error"]
    table = run_cli("classify", lenet_bundle, good, missing, "--table", "csv", "-k", "2")
    assert table.returncode == 1
    assert table.stdout.splitlines()[0] == "image,rank,class,score,id"
    assert len(table.stdout.splitlines()) == 1 + 2 + 1


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "backend"), [("onnx", "onnxruntime"), ("onnx-int8", "onnxruntime"),
                                              ("openvino-fp16", "openvino"),
                                              ("tflite-fp32", "tflite")])
def test_format_alone_picks_a_backend_that_runs_it(lenet_bundle: Path, fmt: str, backend: str,
                                                   tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), np.full((32, 32), 200, np.uint8))
    result = run_cli("classify", lenet_bundle, image, "--format", fmt, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["backend"], data["format"]) == (backend, fmt)
