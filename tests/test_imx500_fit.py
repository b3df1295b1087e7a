"""A model too big for the IMX500's 8 MB: refused at 8 bits, and the mixed-precision remedy.

A file of its own so that pytest-xdist can run these minutes of conversion beside test_imx500.py
(a worker takes a file at a time). The remedy's test runs only with EDGEKIT_TEST_MIXED=1: MCT's
mixed-precision search and two imxconv-tf runs take about 9 CPU-minutes (16 min of wall time on
the 2-core CI machine), more than the whole of CI's time goal allows for one remedy; run it
before a release, or after a change to edgekit/convert/imx500*.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_imx500 import needs_toolchain

MIXED = pytest.mark.skipif(
    not os.environ.get("EDGEKIT_TEST_MIXED"),
    reason="about 9 CPU-minutes: set EDGEKIT_TEST_MIXED=1 to run the mixed-precision remedy")


def big_model(folder: Path) -> tuple[Path, Path]:
    """(a Keras model of 8.3 M parameters, its calibration .npy): its 8-bit weights, 8.16 MB,
    are more than the sensor's 8 MB hold."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2)(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(2600)(x)
    x = keras.layers.Dense(1400)(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.save(folder / "big.keras")
    np.save(folder / "calib.npy", np.random.default_rng(0).random((16, 32, 32, 3),
                                                                   dtype=np.float32))
    return folder / "big.keras", folder / "calib.npy"


@pytest.mark.slow
@needs_toolchain
def test_model_too_big_for_the_sensor_fails(tmp_path: Path) -> None:
    """8.3 M parameters do not fit the 8 MB: failed with the memory figures, nothing of it in
    the bundle (--no-remedy: no mixed precision to make it fit)."""
    model, calib = big_model(tmp_path)
    result = run_cli("convert", model, "-o", tmp_path / "b", "--formats",
                     "imx500", "--calib", calib, "--quantize", "remedy=off", "--json")
    assert result.returncode == 1
    row = json.loads(result.stdout)["artifacts"][0]
    assert row["status"] == "failed" and "does not fit the IMX500" in row["reason"]
    assert not list((tmp_path / "b").glob("big_imx500.*"))


@pytest.mark.slow
@needs_toolchain
@MIXED
def test_mixed_precision_makes_a_model_fit(tmp_path: Path) -> None:
    """The remedy: the same model, too big at 8 bits, is tried once more with mixed precision
    (weights of 8, 4 or 2 bits within three quarters of their 8-bit size) and then fits."""
    from edgekit.convert import ConvertOptions, convert

    model, calib = big_model(tmp_path)
    said: list[str] = []
    manifest = convert(model, tmp_path / "b", ConvertOptions(formats="imx500", calib=calib),
                       progress=said.append)  # in-process: minutes, past run_cli's timeout
    assert any("does not fit the IMX500" in line and "trying mixed precision" in line
               for line in said), said
    a = manifest.artifact("imx500")
    assert a.ok, a.reason
    assert a.details["quantisation"] == "mixed" and a.details["memory"]["fits"] is True
    assert (tmp_path / "b" / "big_imx500.zip").is_file()
