"""Which installed TFLite runtimes load each artifact, checked for real in a subprocess.

A model that TensorFlow writes may use op versions an older runtime lacks
(tflite-runtime 2.14, on most Raspberry Pis, rejects FULLY_CONNECTED v12).
Each runtime is tried in its own process (one per runtime: importing two TFLite
runtimes, or TensorFlow, in one process breaks them), in this Python and in
any other Python listed in ``EDGEKIT_TFLITE_PYTHONS`` (os.pathsep-separated),
such as a numpy<2 environment holding tflite-runtime.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENV_VAR = "EDGEKIT_TFLITE_PYTHONS"
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
    """This Python, then the extra ones named in EDGEKIT_TFLITE_PYTHONS that exist."""
    extra = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p and Path(p).is_file()]
    # Compare paths without resolving links: every venv's python links to the same binary.
    this = os.path.abspath(sys.executable)
    return [sys.executable] + [p for p in extra if os.path.abspath(p) != this]


def _run(python: str, code: str, *args: str) -> object:
    result = subprocess.run([python, "-I", "-c", code, *args], capture_output=True, text=True,
                            timeout=TIMEOUT_S, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("[", "{"))]
    if not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {result.returncode}: {tail}")
    return json.loads(lines[-1])


def find_runtimes() -> list[tuple[str, str, str]]:
    """(python, interpreter module, "package version") for every TFLite runtime reachable."""
    found, seen = [], set()
    for python in runtime_pythons():
        try:
            entries = _run(python, _FIND)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError):
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
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            outcome = {"*": f"the check itself failed: {exc}"}
        for path in paths:
            verdict = outcome.get(str(path), outcome.get("*", "not checked"))
            results[path][label] = "ok" if verdict == "ok" else f"fails: {verdict}"
    return results
