"""The format table is the one answer to "which backend runs which format": every decision
(the artifact a backend picks, the files it reads, bench's pairs, deploy's backend) comes
from ``Format.runs_on``."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.backends import BUILTIN_BACKENDS, backend_class
from edgekit.bundle.formats import (
    FORMATS,
    backend_suffixes,
    format_of_file,
    parse_formats,
    preferred_formats,
    runs,
    table_backends,
    why_not,
)
from edgekit.errors import UsageError


def test_the_table_names_only_built_in_backends_and_ranks_are_unique() -> None:
    assert table_backends() == set(BUILTIN_BACKENDS)
    for backend in BUILTIN_BACKENDS:
        ranks = [f.runner(backend).rank for f in FORMATS.values() if f.runner(backend)]
        assert len(ranks) == len(set(ranks)), backend


def test_each_backend_picks_its_most_deployable_format_first() -> None:
    assert preferred_formats("tflite") == ("tflite-int8", "tflite-fp32", "tflite-dynamic")
    assert preferred_formats("edgetpu") == ("edgetpu",)
    assert preferred_formats("onnxruntime") == ("onnx", "onnx-int8")
    assert preferred_formats("openvino")[:4] == ("openvino-fp32", "openvino-fp16", "onnx",
                                                 "tflite-fp32")
    assert preferred_formats("myriad") == ("openvino-fp16", "openvino-fp32", "onnx")


def test_old_openvino_gets_onnx_first_through_the_table() -> None:
    # 2021.4 reads neither IR v11 nor .tflite; 2022.3 reads IR v11 but not .tflite.
    assert preferred_formats("openvino", "2021.4.2") == ("onnx", "onnx-int8")
    assert preferred_formats("myriad", "2021.4.2") == ("onnx",)
    assert "tflite-fp32" not in preferred_formats("openvino", "2022.3.2")
    assert preferred_formats("openvino", "2022.3.2")[0] == "openvino-fp32"
    assert preferred_formats("openvino", "2026.4.1") == preferred_formats("openvino")
    assert "it is IR v11" in why_not("openvino", "openvino-fp32", "2021.4.2")
    assert why_not("openvino", "openvino-fp32", "2026.4.1") == ""
    assert "runs on tflite, openvino" in why_not("onnxruntime", "tflite-int8")


def test_every_derived_decision_agrees_with_runs_on() -> None:
    for key, fmt in FORMATS.items():
        for backend in BUILTIN_BACKENDS:
            listed = backend in fmt.backends
            assert runs(backend, key) == listed
            assert (key in preferred_formats(backend)) == listed
            assert (key in backend_class(backend).preferred_formats()) == \
                runs(backend, key, backend_class(backend).runtime_version())
            if listed:
                assert fmt.extension in backend_suffixes(backend)
                assert fmt.extension in backend_class(backend).file_suffixes()
    assert backend_suffixes("tflite") == (".tflite",)
    assert set(backend_suffixes("openvino")) == {".xml", ".onnx", ".tflite"}
    assert set(backend_suffixes("myriad")) == {".xml", ".onnx"}


def test_file_names_and_format_lists() -> None:
    assert format_of_file("m_int8_edgetpu.tflite").key == "edgetpu"
    assert format_of_file("m_int8.onnx").key == "onnx-int8"
    assert format_of_file("m.onnx").key == "onnx"
    assert format_of_file("m.keras") is None
    assert parse_formats("edgetpu") == ["tflite-int8", "edgetpu"]
    with pytest.raises(UsageError, match="unknown format 'tflite-int4'"):
        parse_formats("tflite-int4")


def test_bare_files_get_a_format_by_name_then_by_content(coral: Path) -> None:
    from edgekit.model import default_backend, file_format

    assert file_format(coral / "mobilenet_v1_0.25_128_quant.tflite").key == "tflite-int8"
    assert file_format(coral / "mobilenet_v1_0.25_128_quant_edgetpu.tflite").key == "edgetpu"
    assert default_backend(coral / "mobilenet_v1_0.25_128_quant.tflite") == "tflite"
    assert default_backend(coral / "mobilenet_v1_0.25_128_quant_edgetpu.tflite") == "edgetpu"
