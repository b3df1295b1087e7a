"""Quantisation at the model boundary."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.bundle.quant import dequantize, prepare_input, quantize
from edgekit.bundle.tensors import Quantization, TensorInfo
from edgekit.errors import InferenceError

UINT8 = TensorInfo("in", (1, 4), "uint8", Quantization((0.0078125,), (128,)))
INT8 = TensorInfo("in", (1, 4), "int8", Quantization((1 / 255,), (-128,)))
FLOAT = TensorInfo("in", (1, 4), "float32")


def test_uint8_round_trip() -> None:
    x = np.array([[-1.0, -0.5, 0.0, 0.99]], np.float32)
    q = quantize(x, UINT8)
    assert q.dtype == np.uint8 and q.tolist() == [[0, 64, 128, 255]]
    assert np.allclose(dequantize(q, UINT8), x, atol=0.0079)


def test_int8_clips_to_range() -> None:
    q = quantize(np.array([[-5.0, 0.0, 0.5, 5.0]], np.float32), INT8)
    assert q.tolist() == [[-128, -128, 0, 127]]


def test_per_channel_dequantize() -> None:
    spec = TensorInfo("w", (1, 2, 3), "int8", Quantization((0.5, 1.0, 2.0), (0, 0, 0), axis=2))
    y = np.ones((1, 2, 3), np.int8)
    assert dequantize(y, spec)[0, 0].tolist() == [0.5, 1.0, 2.0]


def test_prepare_input_checks_shape_and_dtype() -> None:
    with pytest.raises(InferenceError, match=r"has shape \(1, 3\).*takes \(1, 4\)"):
        prepare_input(np.zeros((1, 3), np.float32), FLOAT)
    with pytest.raises(InferenceError, match="is uint8; the model takes"):
        prepare_input(np.zeros((1, 4), np.uint8), FLOAT)
    assert prepare_input(np.zeros((1, 4), np.float64), FLOAT).dtype == np.float32
    assert prepare_input(np.zeros((1, 4), np.float32), UINT8).dtype == np.uint8
    assert prepare_input(np.zeros((1, 4), np.uint8), UINT8).dtype == np.uint8
