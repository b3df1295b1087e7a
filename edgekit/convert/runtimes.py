"""Which installed TFLite runtimes load each artifact, checked for real in a subprocess.

A model that TensorFlow writes may use op versions an older runtime lacks
(tflite-runtime 2.14, on most Raspberry Pis, rejects FULLY_CONNECTED v12).
Each runtime is tried in its own process (one per runtime: importing two TFLite
runtimes, or TensorFlow, in one process breaks them), in this Python and in
the other Pythons configured (``edgekit.helpers.config.tflite_pythons``: the
``EDGEKIT_TFLITE_PYTHONS`` variable, config.toml, or the checkout's
.venv-legacy), such as a numpy<2 environment holding tflite-runtime.

A configured Python that is missing, is not a Python, hangs (``FIND_TIMEOUT_S`` to say
which runtimes it has) or has no TFLite runtime is skipped, and each skip is said in one
line (``skipped``): a runtime left out must not pass for one that was checked.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.helpers.config import tflite_pythons
from edgekit.helpers.subproc import Answer, last_json

FIND_TIMEOUT_S = 30  # to start and list its runtimes (about 2-5 s on a busy 2-core machine)
CHECK_TIMEOUT_S = 120  # to load and run every .tflite artifact in one runtime

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


Skipped = Callable[[str], None]  # told one line for each Python left out, and why


def _ignore(line: str) -> None:
    pass


def runtime_pythons() -> list[str]:
    """This Python, then the others configured (``config.tflite_pythons``) that exist."""
    extra = [p for p in tflite_pythons()[0] if Path(p).is_file()]
    # Compare paths without resolving links: every venv's python links to the same binary.
    this = os.path.abspath(sys.executable)
    return [sys.executable] + [p for p in extra if os.path.abspath(p) != this]


def _ask(python: str, code: str, args: tuple[str, ...], timeout: float) -> Answer:
    """Run ``python -I -c code args`` in a session of its own and read its JSON answer; on
    the timeout (or Ctrl-C) the whole session is ended: a wrapper script that hangs leaves no
    child behind. OSError when it cannot be started."""
    process = subprocess.Popen([python, "-I", "-c", code, *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_session(process)
        return Answer(None, -signal.SIGKILL, "", timeout=timeout)
    except BaseException:
        _end_session(process)
        raise
    return Answer(last_json(out), process.returncode, err.decode("utf-8", "replace"))


def _end_session(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _run(python: str, code: str, *args: str, timeout: float = CHECK_TIMEOUT_S) -> Any:
    answer = _ask(python, code, args, timeout)
    if not answer.ok:
        raise RuntimeError(answer.why())
    return answer.value


def _runtimes_in(python: str) -> tuple[list[list[str]], str]:
    """The TFLite runtimes ``python`` has ([module, package, version] each), or why none
    can be checked there ("" when it has some)."""
    try:
        answer = _ask(python, _FIND, (), FIND_TIMEOUT_S)
    except OSError as exc:
        return [], f"cannot be run ({exc.strerror or exc})"
    if answer.timeout is not None:
        return [], f"no answer within {FIND_TIMEOUT_S} s (it hangs)"
    entries = answer.value
    if not answer.ok or not isinstance(entries, list):
        return [], f"not a Python that answers ({answer.why()})"
    if not entries:
        return [], "it has no TFLite runtime (neither ai-edge-litert nor tflite-runtime)"
    return entries, ""


def find_runtimes(skipped: Skipped = _ignore) -> list[tuple[str, str, str]]:
    """(python, interpreter module, "package version") for every TFLite runtime reachable;
    ``skipped`` is told, in one line each, every configured Python left out and why."""
    configured, origin = tflite_pythons()
    where = f" (from {origin})" if origin else ""
    for python in configured:
        if not Path(python).is_file():
            skipped(f"TFLite runtimes in {python}{where} not checked: no such file")
    found, seen = [], set()
    for python in runtime_pythons():
        entries, why = _runtimes_in(python)
        if why:
            this = "" if python == sys.executable else where
            skipped(f"TFLite runtimes in {python}{this} not checked: {why}")
        for module, package, version in entries:
            label = f"{package} {version}"
            if label not in seen:
                seen.add(label)
                found.append((python, module, label))
    return found


def check_tflite_runtimes(paths: list[Path], skipped: Skipped = _ignore
                          ) -> dict[Path, dict[str, str]]:
    """For each .tflite path: {"tflite-runtime 2.14.0": "ok" | "fails: <why>"}; ``skipped``
    is told each Python left out (``find_runtimes``)."""
    results: dict[Path, dict[str, str]] = {p: {} for p in paths}
    if not paths:
        return results
    for python, module, label in find_runtimes(skipped):
        try:
            outcome = _run(python, _CHECK, module, *map(str, paths))
        except (RuntimeError, OSError) as exc:
            outcome = {"*": f"the check itself failed: {exc}"}
        for path in paths:
            verdict = outcome.get(str(path), outcome.get("*", "not checked"))
            results[path][label] = "ok" if verdict == "ok" else f"fails: {verdict}"
    return results
