"""The ``imx500`` format: a Keras model for the Raspberry Pi AI Camera's Sony IMX500 sensor.

Sony's toolchain pins TensorFlow 2.15 and Keras 2, so it runs in an environment of its own
(``.venv-imx500``, from ``make setup-imx500``; ``edgekit.helpers.config.imx500_python``):

1. the Keras 3 model crosses over as its config and per-layer weights, and is rebuilt with Keras
   2's classes there (``imx500_worker.py``; its float outputs are checked against Keras 3's);
2. model-compression-toolkit (MCT) quantises it with the IMX500 target platform on the
   calibration set (post-training quantisation; GPTQ when that misses the agreement bar);
3. ``imxconv-tf`` (Java 17) compiles the quantised model into ``packerOut.zip``, kept in the
   bundle as ``NAME_imx500.zip``, and a memory report, kept as ``NAME_imx500.json``. A model
   whose 8-bit weights do not fit the sensor's memory is tried once with mixed precision.

No runtime here runs packerOut.zip (the sensor does, after ``imx500-package`` on the Pi makes
``network.rpk``), so the fidelity is that of MCT's quantised Keras model run on this workstation:
it simulates the sensor's integer arithmetic. The manifest says so.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.fidelity import compare
from edgekit.bundle.imx500_file import memory_line, read_memory_report
from edgekit.convert.job import Job
from edgekit.convert.remedy import Candidate, Measured, RemedyPlan, search
from edgekit.errors import ConversionError, Skipped
from edgekit.helpers import interrupt
from edgekit.helpers.config import IMX500_VENV, imx500_python
from edgekit.helpers.subproc import run_json

WORKER = Path(__file__).with_name("imx500_worker.py")
SETUP = f"make setup-imx500 (in the edgekit checkout; it builds {IMX500_VENV})"
JAVA_FIX = ("imxconv-tf needs Java 17: sudo apt-get install openjdk-17-jre-headless "
            "(Debian, Raspberry Pi OS), then convert again")
CHIP_BYTES = 8 * 1024 * 1024  # the IMX500's memory for the network, as the report says
QUANTISE_TIMEOUT_S = 1800  # GPTQ on a mid-sized model takes minutes on two cores
COMPILE_TIMEOUT_S = 900
TRANSFER_TOLERANCE = 1e-3  # float outputs of the Keras 2 rebuild vs Keras 3's
SIMULATED_BY = "MCT's quantised model on this workstation (simulates the IMX500's int8)"


class DoesNotFit(Exception):
    """The quantised model needs more of the sensor's memory than there is: the signal for
    mixed precision inside this module; convert_imx500 raises it as a ConversionError."""


def toolchain() -> tuple[Path, Path]:
    """(The environment's Python, its imxconv-tf); Skipped with the one-line fix when either
    is missing, or Java 17 is."""
    python, origin = imx500_python()
    if python is None:
        raise Skipped(f"the IMX500 toolchain's environment is not here: run {SETUP}, then "
                      "convert again")
    if not python.is_file():
        raise Skipped(f"the IMX500 environment's Python {python} (from {origin}) does not "
                      f"exist: run {SETUP}, or fix {origin}")
    imxconv = python.parent / "imxconv-tf"
    if not imxconv.is_file():
        raise Skipped(f"{python.parent} has no imxconv-tf: run {SETUP}")
    problem = java_problem()
    if problem:
        raise Skipped(f"{problem}; {JAVA_FIX}")
    return python, imxconv


def java_problem() -> str:
    """Why Java 17 is not usable here ("" when it is)."""
    java = shutil.which("java")
    if java is None:
        return "java is not on PATH"
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"java -version failed ({exc})"
    match = re.search(r'version "(\d+)', done.stderr + done.stdout)
    if done.returncode != 0 or match is None:
        return "java -version gave no version"
    if int(match.group(1)) < 17:
        return f"java is version {match.group(1)}"
    return ""


def export_keras2(model: Any, folder: Path) -> None:
    """The model's config and per-layer weights, what the worker rebuilds it from."""
    import keras

    if not isinstance(model, keras.Sequential) and type(model).__name__ != "Functional":
        raise ConversionError("the IMX500 toolchain takes a Sequential or Functional Keras "
                              f"model, and this one is a subclassed {type(model).__name__}: "
                              "rebuild it with the functional API")
    config = {"class_name": type(model).__name__, "config": model.get_config()}
    (folder / "model.json").write_text(json.dumps(config), encoding="utf-8")
    weights = {f"{layer.name}/{i}": w for layer in model.layers
               for i, w in enumerate(layer.get_weights())}
    np.savez(folder / "weights.npz", **weights)


def _quantise(python: Path, folder: Path, mode: str, out: Path, **extra: Any) -> dict[str, Any]:
    request = {"folder": str(folder), "mode": mode, "out": str(out), **extra}
    path = folder / f"request-{mode}.json"
    path.write_text(json.dumps(request), encoding="utf-8")
    answer = run_json([str(python), str(WORKER), str(path)], QUANTISE_TIMEOUT_S,
                      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    interrupt.check()
    value = answer.value if isinstance(answer.value, dict) else None
    if value is None:
        raise ConversionError(f"MCT ({mode}) gave no answer: {answer.why()}")
    if not value.get("ok"):
        raise ConversionError(f"MCT ({mode}) refused the model: {value.get('error')}")
    return value


def _outputs(folder: Path, mode: str, kind: str) -> list[np.ndarray]:
    path = folder / f"outputs-{mode}.npz"
    if not path.is_file():
        return []
    with np.load(path) as data:
        keys = sorted((k for k in data.files if k.startswith(kind + "/")),
                      key=lambda k: int(k.split("/")[1]))
        return [data[k] for k in keys]


def explain_converter_failure(output: str) -> str:
    """imxconv-tf's reason in one line: its last ERROR line without the time, the code and the
    logger's place, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    text = (errors or lines or ["no output"])[-1]
    text = re.sub(r"^.*?\b(ERROR|CRITICAL)\s*:\s*(CODE:\s*\[\w+\]\s*)?", "", text)
    return re.sub(r"\s*\[[^\]]*\.py:\d+\]$", "", text)[:300]


def compile_imx500(imxconv: Path, quantised: Path) -> tuple[Path, Path]:
    """imxconv-tf on the quantised model: (packerOut.zip, the memory report), written beside
    the model (imxconv-tf refuses an output folder that exists: one per model)."""
    out = quantised.parent / "imxconv"
    try:
        done = subprocess.run([str(imxconv), "-i", str(quantised), "-o", str(out)],
                              capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"imxconv-tf did not finish in {COMPILE_TIMEOUT_S} s") from None
    interrupt.check()
    packed = out / "packerOut.zip"
    reports = sorted(out.glob("*_MemoryReport.json"))
    if done.returncode != 0 or not packed.is_file() or not reports:
        output = done.stdout + done.stderr
        memory = re.search(r"Not enough memory, available: *([\d.]+\s*\w+)\s*, *required: "
                           r"*([\d.]+\s*\w+)", output)
        if memory:
            raise DoesNotFit(f"the model does not fit the IMX500: it needs {memory.group(2)} "
                             f"and the sensor has {memory.group(1)}; make it smaller (fewer "
                             "filters or units, a smaller input)")
        raise ConversionError("imxconv-tf refused the model: " + explain_converter_failure(output))
    return packed, reports[0]


def convert_imx500(job: Job, out: Path) -> dict[str, Any]:
    """MCT + imxconv-tf in the IMX500 environment; ``out`` is packerOut.zip, the memory report
    beside it (``.json``)."""
    python, imxconv = toolchain()
    if job.calibration is None:
        raise Skipped("the IMX500 needs an int8 model, and quantising needs calibration data: "
                      "give --calib (a folder of images, or a .npy/.npz of pre-processed "
                      "samples)")
    with tempfile.TemporaryDirectory(prefix="edgekit-imx500-") as tmp:
        folder = Path(tmp)
        interrupt.remember(folder)
        try:
            return _convert(job, out, python, imxconv, folder)
        except DoesNotFit as exc:
            raise ConversionError(str(exc)) from None
        finally:
            interrupt.forget(folder)


def _convert(job: Job, out: Path, python: Path, imxconv: Path, folder: Path) -> dict[str, Any]:
    export_keras2(job.model, folder)
    np.save(folder / "calib.npy", job.calibration.astype(np.float32))
    if job.validation is not None:
        np.save(folder / "val.npy", job.validation.x.astype(np.float32))
    answers: dict[str, dict[str, Any]] = {}
    produced: dict[str, list[np.ndarray]] = {}  # candidate file -> its simulated outputs

    def candidate(mode: str, **extra: Any) -> Candidate:
        def build(path: Path) -> list[str]:
            job.progress(f"imx500: quantising with MCT ({mode})")
            answers[mode] = _quantise(python, folder, mode, path, **extra)
            produced[str(path)] = _outputs(folder, mode, "quantised")
            return []
        return Candidate(mode, build)

    plan = _plan(job, produced)
    quantised = folder / f"{job.name}.keras"  # imxconv names the network after the file
    remedy = search(quantised, "imx500", [candidate("ptq"), candidate("gptq")], plan,
                    job.progress)
    kept = remedy.get("remedy", "ptq")
    job.progress("imx500: compiling with imxconv-tf")
    try:
        packed, report = compile_imx500(imxconv, quantised)
        memory = read_memory_report(report)
        if memory["fits"] is False:
            raise DoesNotFit(f"the model does not fit the IMX500: {memory_line(memory)}; make "
                             "it smaller (fewer filters or units, a smaller input)")
    except DoesNotFit as exc:
        if not job.remedies:
            raise
        job.progress(f"imx500: {exc}; trying mixed precision")
        refit = folder / "mixed" / f"{job.name}.keras"
        refit.parent.mkdir()
        candidate("mixed", weights_bytes=_weights_budget(job.model)).build(refit)
        try:
            packed, report = compile_imx500(imxconv, refit)
        except DoesNotFit as again:
            raise DoesNotFit(f"{again} (also with mixed precision)") from None
        memory = read_memory_report(report)
        kept, quantised = "mixed", refit
        remedy = {}  # the agreement below is the mixed-precision model's
    if memory["fits"] is False:
        raise DoesNotFit(f"the model does not fit the IMX500: {memory_line(memory)} (also "
                         "with mixed precision); make it smaller")
    transfer = _transfer_diff(job, _outputs(folder, kept, "float"))
    if transfer is not None and transfer > TRANSFER_TOLERANCE:
        raise ConversionError(f"the model changed crossing from Keras 3 to Keras 2 (its float "
                              f"outputs differ by up to {transfer:.3g}): a layer whose "
                              "arguments Keras 2 reads differently")
    simulated = produced.get(str(quantised)) or _outputs(folder, kept, "quantised")
    if simulated:
        job.simulated["imx500"] = simulated
    shutil.move(str(packed), out)
    shutil.move(str(report), out.with_suffix(".json"))
    details: dict[str, Any] = {
        "memory": memory, "quantisation": kept, "simulated_by": SIMULATED_BY,
        "calibration_samples": int(len(job.calibration)),
        "keras2_transfer_max_abs_diff": transfer,
    }
    if remedy:
        details["int8_remedy"] = remedy
    versions = next(iter(answers.values()), {}).get("versions", {})
    return {"toolchain": versions,
            "details": details,
            "warnings": [f"fidelity: {SIMULATED_BY}, not the sensor itself",
                         memory_line(memory)]}


def _plan(job: Job, produced: dict[str, list[np.ndarray]]) -> RemedyPlan | None:
    """The int8 bar with a judge that scores a candidate's simulated outputs (no backend here
    runs the format)."""
    if job.remedy is None or job.validation is None or job.scoring is None:
        return None
    validation, scoring = job.validation, job.scoring

    def judge(path: Path, fmt: str) -> Measured:
        outputs = produced.get(str(path))
        if not outputs:
            return Measured(None, None)
        fidelity = compare(validation.reference, outputs, validation, scoring, SIMULATED_BY)
        return Measured(fidelity.top1_agreement, None)

    return RemedyPlan(job.remedy.target, judge, job.remedy.enabled)


def _weights_budget(model: Any) -> float:
    """Weights memory for mixed precision: three quarters of the 8-bit weights' size, at most
    half the chip (the rest is the runtime's and the activations')."""
    return float(min(CHIP_BYTES // 2, int(model.count_params() * 0.75)))


def _transfer_diff(job: Job, float_outputs: list[np.ndarray]) -> float | None:
    """How far the Keras 2 rebuild's float outputs are from Keras 3's (None: not measured)."""
    if job.validation is None or not float_outputs:
        return None
    diffs = [float(np.abs(np.asarray(f).reshape(r.shape) - r).max())
             for f, r in zip(float_outputs, job.validation.reference)]
    return max(diffs)

