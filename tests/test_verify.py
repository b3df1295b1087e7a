"""`edgekit verify`: file hashes against the manifest, then validation samples on a backend."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli

from edgekit.bundle.fidelity import load_validation
from edgekit.bundle.verify import verify_bundle


@pytest.fixture
def bundle_copy(lenet_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the converted LeNet that a test may damage."""
    return Path(shutil.copytree(lenet_bundle, tmp_path / "bundle"))


def test_verify_checks_files_then_runs_samples(lenet_bundle: Path) -> None:
    result = run_cli("verify", lenet_bundle, "--samples", "12", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["files_ok"] and len(data["files"]) >= 8
    assert all(f["actual_sha256"] == f["expected_sha256"] for f in data["files"])
    assert data["backend"] == "tflite" and data["format"] == "tflite-int8"
    assert len(data["samples"]) == 12
    v = load_validation(lenet_bundle)
    assert [s["reference_top1"] for s in data["samples"]] == \
        [int(r.argmax()) for r in v.reference[0][:12]]
    assert [s["label"] for s in data["samples"]] == [int(y) for y in v.y[:12]]
    assert data["agreement"] == 1.0 and data["accuracy"] >= 0.9
    text = run_cli("verify", lenet_bundle, "--samples", "3").stdout
    assert "all match" in text and "top-1 agrees with Keras on 3/3" in text


def test_verify_on_another_backend_and_format(lenet_bundle: Path) -> None:
    report = verify_bundle(lenet_bundle, backend="onnxruntime", samples=0)
    assert report.format == "onnx" and report.runtime.startswith("onnxruntime")
    assert len(report.samples) == len(load_validation(lenet_bundle).x)
    assert report.agreement == 1.0
    fp32 = verify_bundle(lenet_bundle, fmt="tflite-fp32", samples=4)
    assert fp32.format == "tflite-fp32" and max(s.max_abs_diff for s in fp32.samples) < 1e-4


def test_a_damaged_file_is_named_and_nothing_runs(bundle_copy: Path) -> None:
    target = bundle_copy / "lenet5_digits_int8.tflite"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF  # same size, other bytes
    target.write_bytes(bytes(data))
    (bundle_copy / "lenet5_digits.onnx").unlink()
    result = run_cli("verify", bundle_copy, "--json")
    assert_clean_error(result, "2 artifact file(s)", "lenet5_digits_int8.tflite",
                       "lenet5_digits.onnx", "copy the bundle again")
    data = json.loads(result.stdout)
    problems = {f["name"]: f["problem"] for f in data["files"] if not f["ok"]}
    assert problems == {"lenet5_digits_int8.tflite": "sha256 differs",
                        "lenet5_digits.onnx": "missing"}
    assert data["samples"] == [] and data["backend"] == ""


def test_without_validation_set_nothing_is_compared_unless_allowed(bundle_copy: Path) -> None:
    (bundle_copy / "validation.npz").unlink()
    report = verify_bundle(bundle_copy)
    assert report.files_ok and report.runtime and report.samples == []
    assert not report.validation and report.finite
    refused = run_cli("verify", bundle_copy)
    assert_clean_error(refused, "nothing to compare", "no validation samples", "--allow-empty")
    assert refused.returncode == 1
    allowed = run_cli("verify", bundle_copy, "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert "samples: none" in allowed.stdout and "on zeros ran" in allowed.stdout


def test_nan_in_an_output_fails_verify(bundle_copy: Path) -> None:
    """A float artifact whose arithmetic overflows answers NaN: verify (and so deploy's smoke
    test) must fail, not count it as a top-1 of class 0. (A sample of 3e38 is finite, so
    infer takes it; a NaN input would be refused before it ran.)"""
    import numpy as np

    path = bundle_copy / "validation.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["x"][1] = 3e38
    np.savez_compressed(path, **arrays)
    result = run_cli("verify", bundle_copy, "--format", "tflite-fp32", "--samples", "4",
                     "--json")
    assert_clean_error(result, "lenet5_digits_fp32.tflite outputs NaN or inf", "1 of 4 samples")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert [s["finite"] for s in data["samples"]] == [True, False, True, True]
    assert data["samples"][1]["max_abs_diff"] is None and data["finite"] is False
    assert data["samples"][1]["top1"] == -1 and data["agreement"] == 0.75


def test_verify_bad_input(tmp_path: Path, lenet_bundle: Path) -> None:
    assert_clean_error(run_cli("verify", tmp_path), "not an edgekit bundle")
    assert_clean_error(run_cli("verify", lenet_bundle, "--samples", "-1"), "--samples")
    assert_clean_error(run_cli("verify", lenet_bundle, "--format", "edgetpu"),
                       "no edgetpu artifact")


def test_a_bundle_is_opened_once_and_passed_on(lenet_bundle: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """verify reads the manifest once and hands the opened bundle on: check_files and
    load_model take it as it is (before, each read edgekit.json again)."""
    import edgekit.bundle.verify as verify_module
    import edgekit.model as model_module
    from edgekit.bundle.manifest import Manifest, read_manifest

    reads: list[Path] = []

    def counting(folder: Path) -> Manifest:
        reads.append(Path(folder))
        return read_manifest(folder)

    monkeypatch.setattr(verify_module, "read_manifest", counting)
    monkeypatch.setattr(model_module, "read_manifest", counting)
    report = verify_bundle(lenet_bundle, samples=2)
    assert report.files_ok and report.samples
    assert reads == [lenet_bundle]
