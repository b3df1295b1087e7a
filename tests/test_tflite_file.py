"""The runtime-free .tflite reader, on Coral's real models."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.bundle.tflite_file import read_tflite
from edgekit.errors import InvalidModel


def test_plain_mobilenet(coral: Path) -> None:
    info = read_tflite(coral / "mobilenet_v1_0.25_128_quant.tflite")
    assert not info.edgetpu_compiled
    assert info.full_integer
    names = {op.name: op for op in info.ops}
    assert set(names) == {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX"}
    assert names["CONV_2D"].count == 15 and names["DEPTHWISE_CONV_2D"].count == 13
    (inp,), (out,) = info.inputs, info.outputs
    assert inp.shape == (1, 128, 128, 3) and inp.dtype == "uint8"
    assert inp.quantization.scale == (0.0078125,) and inp.quantization.zero_point == (128,)
    assert out.shape == (1, 1001) and out.quantization.scale == (0.00390625,)


def test_compiled_mobilenet_is_recognised(coral: Path) -> None:
    info = read_tflite(coral / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    assert info.edgetpu_compiled
    assert [(op.name, op.custom, op.count) for op in info.ops] == [
        ("edgetpu-custom-op", True, 1)]
    assert info.inputs[0].shape == (1, 128, 128, 3)


def test_custom_op_model(coral: Path) -> None:
    info = read_tflite(coral / "model_invoking_error.tflite")
    assert info.custom_ops == ("fake-op-double",)
    assert not info.edgetpu_compiled


def test_truncated_file_is_invalid(coral: Path, tmp_path: Path) -> None:
    data = (coral / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:4096])
    with pytest.raises(InvalidModel, match="damaged or truncated"):
        read_tflite(cut)


def test_not_a_tflite_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(InvalidModel, match="not a TFLite model"):
        read_tflite(path)
    with pytest.raises(InvalidModel, match="no such file"):
        read_tflite(tmp_path / "missing.tflite")
