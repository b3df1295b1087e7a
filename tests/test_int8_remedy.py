"""int8 that stays faithful, and gates that refuse what is not (issue 8).

The model is scripts/outlier_cnn.py: a small CNN trained on scikit-learn's digits with one
loud channel, which plain int8 (TFLite and ONNX Runtime alike) gets wrong on about one
sample in fifteen.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DETECTOR, ROOT, assert_clean_error, run_cli

from edgekit.bundle.manifest import read_manifest
from edgekit.bundle.tflite_file import read_tflite

pytestmark = pytest.mark.slow
INT8 = "tflite-int8,onnx-int8"


@pytest.fixture(scope="module")
def outlier_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sklearn")
    import importlib.util

    spec = importlib.util.spec_from_file_location("outlier_cnn", ROOT / "scripts" /
                                                  "outlier_cnn.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)  # the script, without putting scripts/ on sys.path
    return recipe.build(tmp_path_factory.mktemp("outlier"))["model"]


@pytest.fixture(scope="module")
def plain(outlier_cnn: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default quantisation, kept as it is (--no-remedy)."""
    out = tmp_path_factory.mktemp("plain") / "bundle"
    result = run_cli("convert", outlier_cnn, "-o", out, "--formats", INT8, "--quantize",
                     "remedy=off",
                     "--json", "-q")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plain_int8_is_weak_and_says_so(plain: dict) -> None:
    by = {a["format"]: a for a in plain["artifacts"]}
    assert by["onnx"]["fidelity"]["top1_agreement"] == 1.0
    for fmt in ("tflite-int8", "onnx-int8"):
        assert by[fmt]["status"] == "ok"
        assert by[fmt]["fidelity"]["top1_agreement"] < 0.97, fmt
        assert "int8_remedy" not in by[fmt]["details"]
    warnings = plain["source"]["warnings"]
    for fmt in ("tflite-int8", "onnx-int8"):
        line = next(w for w in warnings if w.startswith(fmt))
        assert "below 99%" in line and "--quantize remedy=off kept the default quantisation" in line


def test_remedies_keep_the_sensitive_layers_float(outlier_cnn: Path, tmp_path: Path,
                                                  plain: dict) -> None:
    out = tmp_path / "bundle"
    result = run_cli("convert", outlier_cnn, "-o", out, "--formats", INT8)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    before = {a["format"]: a["fidelity"]["top1_agreement"] for a in plain["artifacts"]}
    for fmt in ("tflite-int8", "onnx-int8"):
        a = manifest.artifact(fmt)
        remedy = a.details["int8_remedy"]
        assert a.fidelity.top1_agreement >= 0.99, (fmt, remedy)
        assert remedy["passed"] and remedy["target"] == 0.99
        assert remedy["agreement_before"] == before[fmt]
        assert remedy["agreement_after"] == a.fidelity.top1_agreement
        assert 2 <= len(remedy["float_layers"]) <= 4, remedy["float_layers"]
        assert any("conv1" in name for name in remedy["float_layers"])
        attempts = remedy["attempts"]
        assert attempts[0]["remedy"] == "none" and attempts[-1]["remedy"] == remedy["remedy"]
        assert all(x["size"] > 0 and x["latency_ms"] > 0 for x in attempts)
        assert remedy["remedy_seconds"] > 0
    tried = [x["remedy"] for x in manifest.artifact("onnx-int8").details["int8_remedy"][
        "attempts"]]
    assert tried[1:4] == ["7-bit weights (reduce_range)", "entropy calibration",
                          "percentile calibration"]
    tflite_tried = [x["remedy"] for x in manifest.artifact("tflite-int8").details[
        "int8_remedy"]["attempts"]]
    assert tflite_tried[1] == "per-tensor weights"
    info = read_tflite(out / manifest.artifact("tflite-int8").file)  # int8 I/O, float inside
    assert info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    assert not info.full_integer
    table = result.stdout
    assert "int8 remedy:" in table and "layer(s) kept float" in table and "tried:" in table
    edgetpu = run_cli("inspect", out)  # the bundle's table shows the same notes
    assert "int8 remedy:" in edgetpu.stdout


def test_edgetpu_says_float_layers_run_on_the_cpu(outlier_cnn: Path, tmp_path: Path) -> None:
    import shutil

    if shutil.which("edgetpu_compiler"):
        pytest.skip("edgetpu_compiler is installed here; this checks the note without it")
    result = run_cli("convert", outlier_cnn, "-o", tmp_path / "b", "--formats", "edgetpu",
                     "--json", "-q")
    assert result.returncode == 0, result.stderr
    edgetpu = {a["format"]: a for a in json.loads(result.stdout)["artifacts"]}["edgetpu"]
    assert edgetpu["status"] == "skipped"
    assert "layer(s) float" in edgetpu["reason"] and "run on the CPU" in edgetpu["reason"]


def test_gate_fails_artifacts_below_it_and_keeps_the_old_bundle(outlier_cnn: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    first = run_cli("convert", outlier_cnn, "-o", out, "--formats", "onnx", "-q")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    gated = run_cli("convert", outlier_cnn, "-o", out, "--formats", INT8, "--quantize",
                    "remedy=off,min_agreement=0.99", "--force")
    assert_clean_error(gated, "2 format(s) failed", "tflite-int8", "onnx-int8",
                       "left as it was")
    assert gated.returncode == 1
    assert "is below --quantize min_agreement 0.99" in gated.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    fresh = tmp_path / "fresh"  # no old bundle: written, without the failed artifacts' files
    result = run_cli("convert", outlier_cnn, "-o", fresh, "--formats", INT8, "--quantize",
                     "remedy=off,min_agreement=0.99", "--json", "-q")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    statuses = {a["format"]: a["status"] for a in data["artifacts"]}
    assert statuses == {"tflite-int8": "failed", "onnx": "ok", "onnx-int8": "failed"}
    assert sorted(p.name for p in fresh.iterdir()) == ["edgekit.json", "outlier_cnn.onnx",
                                                        "validation.npz"]
    assert read_manifest(fresh).validation["min_agreement"] == 0.99
    passed = run_cli("convert", outlier_cnn, "-o", fresh, "--formats", INT8,
                     "--quantize", "min_agreement=0.99", "--force", "-q")  # the remedies reach it
    assert passed.returncode == 0, passed.stderr


def test_gate_needs_something_to_measure(outlier_cnn: Path, tmp_path: Path) -> None:
    empty = tmp_path / "model.keras"
    empty.write_bytes(outlier_cnn.read_bytes())  # no model card: no validation data
    result = run_cli("convert", empty, "-o", tmp_path / "out", "--formats", "onnx",
                     "--quantize", "min_agreement=0.9")
    assert_clean_error(result, "--quantize min_agreement needs an agreement", "--val")
    assert result.returncode == 2
    assert not (tmp_path / "out").exists()


def test_the_detectors_onnx_int8_stays_faithful_on_any_x86(tmp_path: Path) -> None:
    """The bundled detector's onnx-int8 agreed 86.5% (mAP) with Keras on this AVX2-only CPU
    (ONNX Runtime's int8 kernels saturate without VNNI) and 99.8% on one with AVX512-VNNI;
    the remedies, 7-bit weights first, bring it to the bar wherever it runs."""
    out = tmp_path / "bundle"
    result = run_cli("convert", DETECTOR / "digit_detector.keras", "-o", out, "--formats",
                     "onnx-int8", "-q")
    assert result.returncode == 0, result.stderr
    artifact = read_manifest(out).artifact("onnx-int8")
    remedy = artifact.details.get("int8_remedy", {})
    assert artifact.fidelity.top1_agreement >= 0.98, remedy
    assert "reaches only" not in result.stderr
