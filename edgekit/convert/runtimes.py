"""Which installed TFLite runtimes load each artifact, checked for real in a subprocess.

A model that TensorFlow writes may use op versions an older runtime lacks
(tflite-runtime 2.14, on most Raspberry Pis, rejects FULLY_CONNECTED v12).
Each runtime is tried in its own process (one per runtime: importing two TFLite
runtimes, or TensorFlow, in one process breaks them), in this Python and in
the other Pythons configured (``edgekit.config.tflite_pythons``: the
``EDGEKIT_TFLITE_PYTHONS`` variable, config.toml, or the checkout's
.venv-legacy), such as a numpy<2 environment holding tflite-runtime.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from edgekit.config import tflite_pythons
from edgekit.subproc import run_json

TIMEOUT_S = 300

_FIND = r"""
import importlib.util, json
from importlib.metadata import version, PackageNotFoundError
found = []
for module, package in (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime")):
    if importlib.util.find_spec(module) is None:
        continue
    try:
        found.append([module + ".interpreter", package, version(package)])
    except PackageNotFoundError:
        found.append([module + ".interpreter", package, "unknown"])
print(json.dumps(found))
"""

_CHECK = r"""
import json, sys
results = {}
try:
    Interpreter = __import__(sys.argv[1], fromlist=["Interpreter"]).Interpreter
    import numpy as np
except Exception as exc:
    print(json.dumps({"*": "%s: %s" % (type(exc).__name__, exc)}))
    raise SystemExit
for path in sys.argv[2:]:
    try:
        it = Interpreter(model_path=path)
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        results[path] = "ok"
    except Exception as exc:
        text = str(exc).strip().splitlines()
        results[path] = "%s: %s" % (type(exc).__name__, text[0] if text else "")
print(json.dumps(results))
"""


def runtime_pythons() -> list[str]:
    """This Python, then the others configured (``config.tflite_pythons``) that exist."""
    extra = [p for p in tflite_pythons()[0] if Path(p).is_file()]
    # Compare paths without resolving links: every venv's python links to the same binary.
    this = os.path.abspath(sys.executable)
    return [sys.executable] + [p for p in extra if os.path.abspath(p) != this]


def _run(python: str, code: str, *args: str) -> Any:
    answer = run_json([python, "-I", "-c", code, *args], TIMEOUT_S)
    if not answer.ok:
        raise RuntimeError(answer.why())
    return answer.value


def find_runtimes() -> list[tuple[str, str, str]]:
    """(python, interpreter module, "package version") for every TFLite runtime reachable."""
    found, seen = [], set()
    for python in runtime_pythons():
        try:
            entries = _run(python, _FIND)
        except (RuntimeError, OSError):
            continue
        for module, package, version in entries:
            label = f"{package} {version}"
            if label not in seen:
                seen.add(label)
                found.append((python, module, label))
    return found


def check_tflite_runtimes(paths: list[Path]) -> dict[Path, dict[str, str]]:
    """For each .tflite path: {"tflite-runtime 2.14.0": "ok" | "fails: <why>"}."""
    results: dict[Path, dict[str, str]] = {p: {} for p in paths}
    if not paths:
        return results
    for python, module, label in find_runtimes():
        try:
            outcome = _run(python, _CHECK, module, *map(str, paths))
        except (RuntimeError, OSError) as exc:
            outcome = {"*": f"the check itself failed: {exc}"}
        for path in paths:
            verdict = outcome.get(str(path), outcome.get("*", "not checked"))
            results[path][label] = "ok" if verdict == "ok" else f"fails: {verdict}"
    return results
