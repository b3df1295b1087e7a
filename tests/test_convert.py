"""`edgekit convert` on real Keras models with the real toolchain (TF, tf2onnx, OpenVINO)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import LENET, run_cli

from edgekit.bundle.fidelity import load_validation
from edgekit.bundle.integrity import sha256_file
from edgekit.bundle.manifest import read_manifest
from edgekit.bundle.tflite_file import read_tflite

pytestmark = pytest.mark.slow
CPU_FORMATS = ["tflite-fp32", "tflite-dynamic", "tflite-int8", "onnx", "onnx-int8",
               "openvino-fp32", "openvino-fp16"]


def test_every_cpu_format_is_built_and_faithful(lenet_bundle: Path) -> None:
    manifest = read_manifest(lenet_bundle)
    by_format = {a.format: a for a in manifest.artifacts}
    assert list(by_format) == ["tflite-fp32", "tflite-dynamic", "tflite-int8", "edgetpu", "onnx",
                               "onnx-int8", "openvino-fp32", "openvino-fp16"]
    for key in CPU_FORMATS:
        a = by_format[key]
        assert a.status == "ok", (key, a.reason)
        assert a.fidelity is not None and a.fidelity.samples == 360
        assert a.fidelity.top1_agreement >= 0.99, key
        assert a.toolchain and a.seconds > 0
        assert a.size == sum(f.size for f in a.files.values())
        for name, record in a.files.items():
            assert sha256_file(lenet_bundle / name) == record.sha256
    for key in ("tflite-fp32", "onnx", "openvino-fp32"):  # float formats are exact to ~1e-5
        assert by_format[key].fidelity.max_abs_diff < 1e-4, key


def test_the_bundle_folder_has_a_plain_folders_mode(lenet_bundle: Path) -> None:
    """Not tempfile.mkdtemp's 0700: the mode a plain mkdir gives under this umask."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert lenet_bundle.stat().st_mode & 0o777 == 0o777 & ~umask
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in lenet_bundle.iterdir())


def test_int8_meets_the_accuracy_bar(lenet_bundle: Path) -> None:
    manifest = read_manifest(lenet_bundle)
    int8 = manifest.artifact("tflite-int8")
    keras_accuracy = manifest.validation["keras_accuracy"]
    assert keras_accuracy > 0.95
    assert int8.fidelity.top1_agreement >= 0.99
    assert abs(int8.fidelity.accuracy - keras_accuracy) <= 0.01
    info = read_tflite(lenet_bundle / int8.file)
    assert info.full_integer and info.inputs[0].dtype == "int8"
    assert info.inputs[0].shape == (1, 32, 32, 1) and not info.inputs[0].dynamic_dims
    # Batch 1 keeps shape ops (SHAPE, STRIDED_SLICE, PACK) out: only LeNet's own layers remain.
    assert {op.name for op in info.ops} <= {"CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                            "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"}


def test_edgetpu_row_says_why_it_was_skipped(lenet_bundle: Path) -> None:
    import shutil

    if shutil.which("edgetpu_compiler"):
        pytest.skip("edgetpu_compiler is installed here; this checks the message without it")
    a = read_manifest(lenet_bundle).artifact("edgetpu")
    assert a.status == "skipped"
    assert "edgetpu_compiler" in a.reason and "x86-64" in a.reason and "apt" in a.reason


def test_tflite_artifacts_load_in_each_runtime(lenet_bundle: Path, legacy_python: str) -> None:
    manifest = read_manifest(lenet_bundle)
    for key in ("tflite-fp32", "tflite-dynamic", "tflite-int8"):
        runtimes = manifest.artifact(key).runtimes
        assert runtimes.get("tflite-runtime 2.14.0") == "ok", (key, runtimes)
        assert any(label.startswith("ai-edge-litert") and v == "ok"
                   for label, v in runtimes.items()), runtimes


def test_openvino_fp32_is_really_fp32(lenet_bundle: Path) -> None:
    manifest = read_manifest(lenet_bundle)
    fp32 = manifest.artifact("openvino-fp32").details["constants"]
    fp16 = manifest.artifact("openvino-fp16").details["constants"]
    assert fp32.get("f32") and not fp32.get("f16")
    assert fp16.get("f16")
    bins = {k: manifest.artifact(k).files for k in ("openvino-fp32", "openvino-fp16")}
    assert "lenet5_digits_fp32.bin" in bins["openvino-fp32"]
    assert (lenet_bundle / "lenet5_digits_fp16.bin").stat().st_size < (
        lenet_bundle / "lenet5_digits_fp32.bin").stat().st_size * 0.6


def test_onnx_passes_the_full_checker(lenet_bundle: Path) -> None:
    import onnx

    quantised = onnx.load(str(lenet_bundle / "lenet5_digits_int8.onnx"))
    onnx.checker.check_model(quantised, full_check=True)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in quantised.graph.node}

    model = onnx.load(str(lenet_bundle / "lenet5_digits.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 13
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 32, 32, 1]


def test_bundle_holds_validation_and_round_trips(lenet_bundle: Path) -> None:
    manifest = read_manifest(lenet_bundle)
    assert manifest.task == "classification" and manifest.labels == [str(d) for d in range(10)]
    assert manifest.input.color == "gray" and manifest.input.shape == (1, 32, 32, 1)
    assert manifest.source["kind"] == "sequential"
    validation = load_validation(lenet_bundle)
    assert validation.x.shape == (360, 32, 32, 1) and validation.y.shape == (360,)
    assert validation.reference[0].shape == (360, 10)
    again = type(manifest).from_dict(json.loads((lenet_bundle / "edgekit.json").read_text()))
    assert again == manifest
    assert not list(lenet_bundle.parent.glob(".*partial*"))


def test_uint8_io_and_few_calibration_samples_warn(tmp_path: Path) -> None:
    calib = tmp_path / "calib.npy"
    np.save(calib, np.load(LENET / "calib.npz")["x"][:50])
    out = tmp_path / "u8"
    result = run_cli("convert", LENET / "lenet5_digits.keras", "-o", out, "--formats",
                     "tflite-int8", "--quantize", "int8_io=uint8", "--calib", calib, "--json", "-q")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (a,) = data["artifacts"]
    assert a["status"] == "ok" and a["inputs"][0]["dtype"] == "uint8"
    assert a["fidelity"]["top1_agreement"] >= 0.98
    assert any("only 50 calibration samples" in w for w in data["source"]["warnings"])
