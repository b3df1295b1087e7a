"""The subprocess check of which TFLite runtimes load an artifact catches the op-version trap."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LENET

from edgekit.convert.runtimes import check_tflite_runtimes

pytestmark = pytest.mark.slow


def test_per_channel_dense_model_fails_on_tflite_runtime_214(tmp_path: Path, legacy_python: str,
                                                            monkeypatch) -> None:
    """TF 2.21's default dynamic-range model needs FULLY_CONNECTED v12; 2.14 stops at 11."""
    import tensorflow as tf

    from edgekit.convert.keras_model import export_saved_model, load_keras_model

    monkeypatch.setenv("EDGEKIT_TFLITE_PYTHONS", legacy_python)
    model = load_keras_model(LENET / "lenet5_digits.keras")
    export_saved_model(model, (32, 32, 1), tmp_path / "sm")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # per-channel dense: the default
    default = tmp_path / "default_dynamic.tflite"
    default.write_bytes(converter.convert())

    verdicts = check_tflite_runtimes([default])[default]
    assert verdicts["tflite-runtime 2.14.0"].startswith("fails:")
    assert "FULLY_CONNECTED" in verdicts["tflite-runtime 2.14.0"]
    assert any(k.startswith("ai-edge-litert") and v == "ok" for k, v in verdicts.items())
