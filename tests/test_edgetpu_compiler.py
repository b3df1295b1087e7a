"""The Edge TPU compiler step up to the compiler itself.

edgetpu_compiler is published only in Coral's apt repository (x86-64) and cannot
be installed on these machines, so the report parser is tested on report text
written from Coral's documented output format (coral.ai/docs/edgetpu/compiler and
compiler output quoted in google-coral/edgetpu issues), not on a live run.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgekit.bundle.tflite_file import read_tflite
from edgekit.convert.edgetpu import (
    HOW_TO_GET,
    check_edgetpu_ready,
    compile_edgetpu,
    explain_compiler_failure,
    parse_compiler_report,
    unmapped_ops,
)
from edgekit.convert.job import Job
from edgekit.errors import Skipped
from edgekit.preprocess import InputSpec

# Written from Coral's documented format: a model the compiler maps only partly.
PARTLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1379 ms.

Input model: model_int8.tflite
Input size: 4.41MiB
Output model: model_int8_edgetpu.tflite
Output size: 5.49MiB
On-chip memory used for caching model parameters: 1.92MiB
On-chip memory remaining for caching model parameters: 1.75KiB
Off-chip memory used for streaming uncached model parameters: 3.23MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 136
Operation log: model_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage \
of the model will instead run on the CPU, which is slower.
Number of operations that will run on Edge TPU: 135
Number of operations that will run on CPU: 1

Operator                       Count      Status

RESHAPE                        15         Mapped to Edge TPU
CONV_2D                        117        Mapped to Edge TPU
MAX_POOL_2D                    3          Mapped to Edge TPU
CUSTOM                         1          Operation is working on an unsupported data type
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# Written from the same format: everything mapped, so no "will run on" lines are printed.
FULLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 312 ms.

Input model: lenet5_digits_int8.tflite
Input size: 70.79KiB
Output model: lenet5_digits_int8_edgetpu.tflite
Output size: 155.38KiB
On-chip memory used for caching model parameters: 66.00KiB
On-chip memory remaining for caching model parameters: 7.81MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 9
Operation log: lenet5_digits_int8_edgetpu.log

Operator                       Count      Status

FULLY_CONNECTED                3          Mapped to Edge TPU
MAX_POOL_2D                    2          Mapped to Edge TPU
CONV_2D                        2          Mapped to Edge TPU
RESHAPE                        1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def test_parse_partly_mapped_report() -> None:
    r = parse_compiler_report(PARTLY_MAPPED)
    assert r.compiler_version == "16.0.384591198"
    assert (r.ops_total, r.ops_on_edgetpu, r.ops_on_cpu, r.subgraphs) == (136, 135, 1, 1)
    assert r.on_chip_memory_used == "1.92MiB"
    assert r.on_chip_memory_remaining == "1.75KiB"
    assert r.off_chip_memory_used == "3.23MiB"
    assert {"operator": "CUSTOM", "count": 1,
            "status": "Operation is working on an unsupported data type"} in r.operations
    assert sum(o["count"] for o in r.operations) == 136


def test_parse_fully_mapped_report_counts_from_the_table() -> None:
    r = parse_compiler_report(FULLY_MAPPED)
    assert (r.ops_total, r.ops_on_edgetpu, r.ops_on_cpu) == (9, 9, 0)
    assert r.off_chip_memory_used == "0.00B"
    assert [o["operator"] for o in r.operations][:2] == ["FULLY_CONNECTED", "MAX_POOL_2D"]


def test_compiler_failures_are_explained() -> None:
    text = ("Edge TPU Compiler version 16.0.384591198\nERROR: Didn't find op for builtin opcode "
            "'CONV_2D' version '6'\nInvalid model: model.tflite\nModel could not be parsed")
    why = explain_compiler_failure(text)
    assert "CONV_2D version 6" in why and "older TensorFlow" in why
    assert "quantised" in explain_compiler_failure("Model not quantized")


def test_precheck_rejects_float_and_compiled_models(coral: Path) -> None:
    compiled = read_tflite(coral / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    assert any("already compiled" in p for p in check_edgetpu_ready(compiled))
    plain = read_tflite(coral / "mobilenet_v1_0.25_128_quant.tflite")
    assert check_edgetpu_ready(plain) == []
    assert unmapped_ops(plain) == []


@pytest.mark.slow
def test_precheck_on_lenet_artifacts(lenet_bundle: Path) -> None:
    fp32 = read_tflite(lenet_bundle / "lenet5_digits_fp32.tflite")
    problems = " ".join(check_edgetpu_ready(fp32))
    assert "not full-integer" in problems and "int8 or uint8 inputs" in problems
    int8 = read_tflite(lenet_bundle / "lenet5_digits_int8.tflite")
    assert check_edgetpu_ready(int8) == []


def test_without_the_compiler_the_format_is_skipped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no edgetpu_compiler anywhere
    assert shutil.which("edgetpu_compiler") is None
    job = Job(model=None, name="m", spec=InputSpec((1, 8, 8, 1)), saved_model=tmp_path,
              workdir=tmp_path)
    with pytest.raises(Skipped) as skipped:
        compile_edgetpu(job, tmp_path / "m_int8_edgetpu.tflite")
    assert str(skipped.value) == HOW_TO_GET
    assert "x86-64" in HOW_TO_GET and "apt-get install edgetpu-compiler" in HOW_TO_GET
