"""Importing edgekit must stay cheap: no TensorFlow, OpenVINO, ONNX Runtime or TFLite runtime."""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "keras", "openvino", "onnxruntime", "onnx", "tf2onnx", "ai_edge_litert",
         "tflite_runtime", "cv2")


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}


def test_import_edgekit_loads_no_runtime() -> None:
    loaded = _modules_after("import edgekit")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_backends_and_converter_modules_import_no_runtime() -> None:
    loaded = _modules_after(
        "import edgekit.cli, edgekit.backends, edgekit.convert, edgekit.bundle.formats, "
        "edgekit.bundle.manifest, edgekit.bundle.fidelity, edgekit.bundle.tflite_file"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_help_runs_without_runtimes() -> None:
    out = subprocess.run([sys.executable, "-m", "edgekit", "--help"], capture_output=True,
                         text=True, check=True)
    assert "convert" in out.stdout and "inspect" in out.stdout
