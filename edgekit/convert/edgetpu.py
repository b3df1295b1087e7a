"""Compile the full-integer TFLite model for the Coral Edge TPU with ``edgetpu_compiler``.

The compiler is checked for, never installed; the int8 model is checked first
so a model the compiler would reject gets an explanation, not a compiler dump;
the compiler runs with an argument list; its report becomes the manifest's
``details``: operations on the Edge TPU and on the CPU, memory, subgraphs.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle.tflite_file import TFLiteInfo, read_tflite
from edgekit.convert.job import Job
from edgekit.errors import ConversionError, Skipped

COMPILER = "edgetpu_compiler"
HOW_TO_GET = (
    "edgetpu_compiler is not on PATH; it runs on x86-64 Linux only: add Coral's apt repository "
    "(https://coral.ai/docs/edgetpu/compiler/) and apt-get install edgetpu-compiler, then "
    "convert again (or compile the _int8.tflite there)"
)
TIMEOUT_S = 600
# Operations the compiler can map, from Coral's "Supported operations" table.
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
    "EXPAND_DIMS", "FULLY_CONNECTED", "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC",
    "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU",
    "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH",
    "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})


@dataclass
class CompilerReport:
    """What edgetpu_compiler says about one compiled model."""

    compiler_version: str = ""
    ops_total: int = 0
    ops_on_edgetpu: int = 0
    ops_on_cpu: int = 0
    on_chip_memory_used: str = ""
    on_chip_memory_remaining: str = ""
    off_chip_memory_used: str = ""
    subgraphs: int = 0
    operations: list[dict[str, Any]] = field(default_factory=list)  # operator, count, status


def check_edgetpu_ready(info: TFLiteInfo) -> list[str]:
    """Reasons the compiler would reject this model (empty when it looks compilable)."""
    problems = []
    if info.edgetpu_compiled:
        problems.append("it is already compiled for the Edge TPU")
    floats = sorted(d for d in info.tensor_dtypes if d.startswith("float"))
    if floats:
        problems.append(f"it is not full-integer (it has {', '.join(floats)} tensors): "
                        "quantise it with a calibration set (format tflite-int8)")
    for kind, tensors in (("input", info.inputs), ("output", info.outputs)):
        for t in tensors:
            if t.dtype not in ("int8", "uint8"):
                problems.append(f"its {kind} {t.name!r} is {t.dtype}; the Edge TPU needs int8 "
                                "or uint8 inputs and outputs")
            if t.dynamic_dims or any(d < 0 for d in t.shape):
                problems.append(f"its {kind} {t.name!r} has a dynamic shape {t.shape}; export "
                                "with static shapes")
            elif t.shape and t.shape[0] != 1 and kind == "input":
                problems.append(f"its {kind} {t.name!r} has batch {t.shape[0]}; the Edge TPU "
                                "needs batch 1")
    return problems


def unmapped_ops(info: TFLiteInfo) -> list[str]:
    """Builtin ops in the model that Coral documents as not running on the Edge TPU."""
    return sorted({op.name for op in info.ops if not op.custom and op.name not in EDGETPU_OPS})


_LINE_PATTERNS = {
    "compiler_version": r"Edge TPU Compiler version (\S+)",
    "ops_total": r"Total number of operations: (\d+)",
    "ops_on_edgetpu": r"Number of operations that will run on Edge TPU: (\d+)",
    "ops_on_cpu": r"Number of operations that will run on CPU: (\d+)",
    "on_chip_memory_used": r"On-chip memory used for caching model parameters: (\S+)",
    "on_chip_memory_remaining": r"On-chip memory remaining for caching model parameters: (\S+)",
    "off_chip_memory_used": r"Off-chip memory used for streaming uncached model parameters: (\S+)",
    "subgraphs": r"Number of Edge TPU subgraphs: (\d+)",
}
_OP_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def parse_compiler_report(text: str) -> CompilerReport:
    """Parse the compiler's console report and/or its .log operation table."""
    report = CompilerReport()
    for name, pattern in _LINE_PATTERNS.items():
        match = re.search(pattern, text)
        if match:
            value = match.group(1)
            setattr(report, name, int(value) if name in ("ops_total", "ops_on_edgetpu",
                                                         "ops_on_cpu", "subgraphs") else value)
    for line in text.splitlines():
        row = _OP_ROW.match(line.strip())
        if row and row.group(1) != "Operator":
            report.operations.append({"operator": row.group(1), "count": int(row.group(2)),
                                      "status": row.group(3)})
    if report.operations:
        mapped = sum(o["count"] for o in report.operations if o["status"] == "Mapped to Edge TPU")
        others = sum(o["count"] for o in report.operations) - mapped
        if not report.ops_on_edgetpu and not report.ops_on_cpu:
            # A fully mapped model prints no "will run on" lines: take them from the table.
            report.ops_on_edgetpu, report.ops_on_cpu = mapped, others
        report.ops_total = report.ops_total or mapped + others
    elif report.ops_total and not (report.ops_on_edgetpu or report.ops_on_cpu):
        report.ops_on_edgetpu = report.ops_total
    return report


def explain_compiler_failure(output: str) -> str:
    """One line that says why the compiler failed and what to do about it."""
    version = re.search(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'", output)
    if version:
        op, number = version.groups()
        return (f"this edgetpu_compiler does not know {op} version {number}, which the "
                "installed TensorFlow writes; use the newest compiler (16+), or convert with an "
                "older TensorFlow (2.15 or earlier) for the Edge TPU artifact")
    for needle, why in (
        ("Model not quantized", "the model is not fully quantised"),
        ("Internal compiler error", "the compiler crashed on this model (Internal compiler "
         "error); try --min_runtime_version or a simpler model"),
        ("timeout", "the compiler timed out"),
    ):
        if needle.lower() in output.lower():
            return why
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def float_layers_note(job: Job) -> str:
    """The layers the int8 remedy kept float: on an Edge TPU they run on the CPU."""
    layers = job.details.get("tflite-int8", {}).get("int8_remedy", {}).get("float_layers") or []
    if not layers:
        return ""
    return (f"the int8 model keeps {len(layers)} layer(s) float (the int8 remedy chose it for "
            "agreement): on the Edge TPU those layers, and everything after the first of "
            "them, run on the CPU")


def compile_edgetpu(job: Job, out: Path) -> dict[str, Any]:
    """Run edgetpu_compiler on the job's int8 artifact; write ``out`` and return the report."""
    note = float_layers_note(job)
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise Skipped(HOW_TO_GET + (f"; note: {note}" if note else ""))
    source = job.built.get("tflite-int8")
    if source is None:
        raise Skipped("the Edge TPU compiler needs the tflite-int8 artifact, which was not built")
    info = read_tflite(source)
    problems = check_edgetpu_ready(info)
    if note:  # float layers were chosen: the compiler maps what it can, the rest runs on the CPU
        problems = [p for p in problems if not p.startswith("it is not full-integer")]
    if problems:
        raise ConversionError("the int8 model cannot be compiled for the Edge TPU: "
                              + "; ".join(problems))
    with tempfile.TemporaryDirectory(prefix="edgekit-edgetpu-") as tmp:
        args = [compiler, "--out_dir", tmp, "--show_operations", "--timeout_sec",
                str(TIMEOUT_S), str(source)]
        try:
            result = subprocess.run(args, capture_output=True, text=True,
                                    timeout=TIMEOUT_S + 30, check=False)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"edgetpu_compiler did not finish in {TIMEOUT_S} s") from None
        output = result.stdout + result.stderr
        compiled = Path(tmp) / (source.stem + "_edgetpu.tflite")
        if result.returncode != 0 or not compiled.exists():
            raise ConversionError(f"edgetpu_compiler failed: {explain_compiler_failure(output)}")
        log = compiled.with_suffix(".log")
        report = parse_compiler_report(output + "\n" + (log.read_text() if log.exists() else ""))
        shutil.move(str(compiled), out)
    warnings = [f"Coral documents {', '.join(unmapped_ops(info))} as not mapped to the Edge TPU"]\
        if unmapped_ops(info) else []
    if note:
        warnings.append(note)
    if report.ops_on_cpu:
        warnings.append(f"{report.ops_on_cpu} of {report.ops_total} operations run on the CPU, "
                        "not the Edge TPU (see details.operations)")
    return {"toolchain": {"edgetpu_compiler": report.compiler_version},
            "details": asdict(report), "warnings": warnings}
