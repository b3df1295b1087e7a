"""The subprocess check of which TFLite runtimes load an artifact catches the op-version trap."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LENET

from edgekit.convert.runtimes import check_tflite_runtimes


@pytest.mark.slow
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


@pytest.mark.parametrize("where", ["variable", "config file", "beside the checkout", "none"])
def test_the_runtimes_to_check_are_found_without_the_makefile(
        where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgekit convert` from an activated environment checks what `make demo` checks: the
    variable, else ~/.config/edgekit/config.toml, else the checkout's .venv-legacy."""
    from edgekit.convert.runtimes import runtime_pythons
    from edgekit.helpers import config

    monkeypatch.delenv("EDGEKIT_TFLITE_PYTHONS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    checkout = tmp_path / "checkout"
    (checkout / ".venv-legacy" / "bin").mkdir(parents=True)
    (checkout / ".venv-legacy" / "bin" / "python").write_text("")
    monkeypatch.setattr(config, "checkout_dir", lambda: checkout)
    mine = tmp_path / "mine" / "python"
    mine.parent.mkdir()
    mine.write_text("")
    if where == "variable":
        monkeypatch.setenv("EDGEKIT_TFLITE_PYTHONS", f"{mine}:{tmp_path / 'gone'}")
        expected, origin = [str(mine)], "$EDGEKIT_TFLITE_PYTHONS"
    elif where == "config file":
        (tmp_path / "config" / "edgekit").mkdir(parents=True)
        (tmp_path / "config" / "edgekit" / "config.toml").write_text(
            f'[convert]\ntflite_pythons = ["{mine}"]\n')
        expected, origin = [str(mine)], "config.toml"
    elif where == "beside the checkout":
        expected, origin = [str(checkout / ".venv-legacy" / "bin" / "python")], ".venv-legacy"
    else:
        monkeypatch.setattr(config, "checkout_dir", lambda: None)
        expected, origin = [], ""
    assert runtime_pythons()[1:] == expected
    assert origin in config.tflite_pythons()[1]


def test_a_broken_config_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekit.errors import UsageError
    from edgekit.helpers import config

    monkeypatch.delenv("EDGEKIT_TFLITE_PYTHONS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "edgekit").mkdir()
    (tmp_path / "edgekit" / "config.toml").write_text("[convert]\ntflite_pythons = 'x'\n")
    with pytest.raises(UsageError, match="takes a list of paths"):
        config.tflite_pythons()
    (tmp_path / "edgekit" / "config.toml").write_text("[convert\n")
    with pytest.raises(UsageError, match="config.toml: not a readable TOML file"):
        config.tflite_pythons()
