"""The one table of artifact formats: key, file name, converter, which backends run it.

Everything that needs to know about formats (convert, inspect, bench, classify, run, deploy)
reads this table instead of keeping its own list. ``runs_on`` is the one answer to "which
backend runs which format": the backends in the order convert tries them to measure
fidelity, each with its rank among the formats that backend runs (1: the artifact it picks
from a bundle when none is named) and the oldest runtime version that reads the file as
edgekit writes it. Every other decision derives from it: ``preferred_formats`` (what a
backend picks), ``backend_suffixes`` (the files a backend reads), ``runs`` (bench's pairs,
deploy's choice of backend).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from edgekit.errors import UsageError


@dataclass(frozen=True)
class Runner:
    """One backend that runs a format."""

    backend: str
    rank: int  # among the formats this backend runs: 1 is the one it picks first
    since: str = ""  # oldest runtime version that reads the file ("" : any)
    why: str = ""  # what that older runtime lacks

    def reads_with(self, version: str | None) -> bool:
        """Whether a runtime of ``version`` reads it (None: version unknown, assume yes)."""
        return not self.since or version is None or _version(version) >= _version(self.since)


def on(backend: str, rank: int, since: tuple[str, str] = ("", "")) -> Runner:
    return Runner(backend, rank, *since)


@dataclass(frozen=True)
class Format:
    key: str
    suffix: str  # appended to the model's name: lenet5_digits + "_int8.tflite"
    description: str
    converter: str  # "module:function", imported only when this format is built
    runs_on: tuple[Runner, ...]  # in order: convert measures fidelity on the first usable one
    requires: tuple[str, ...] = ()  # formats it is built from
    extra_files: tuple[str, ...] = ()  # companions that travel with it (".bin" for IR)
    elsewhere: str = ""  # with no runs_on: what runs it instead, and why nothing here does
    by_default: bool = True  # built without --formats; False: only when asked for by name

    def filename(self, stem: str) -> str:
        return stem + self.suffix

    @property
    def extension(self) -> str:
        """The file type: ".tflite", ".onnx", ".xml"."""
        return PurePath(self.suffix).suffix or self.suffix

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends that run it, in ``runs_on`` order."""
        return tuple(r.backend for r in self.runs_on)

    def runner(self, backend: str) -> Runner | None:
        return next((r for r in self.runs_on if r.backend == backend), None)


# OpenVINO reads the IR v11 that today's converter writes from 2022.1 on (2021.4 fails with
# "Cannot find reader for model format: xml"), and .tflite from 2023.0 on (2022.3's frontends
# are paddle, ir, tf and onnx: tests/test_openvino_legacy.py runs both).
_IR11 = ("2022.1", "it is IR v11, which OpenVINO reads from 2022.1 on")
_OV_TFLITE = ("2023.0", "OpenVINO reads .tflite from 2023.0 on")

FORMATS: dict[str, Format] = {
    f.key: f
    for f in (
        Format("tflite-fp32", "_fp32.tflite", "TFLite, float32",
               "edgekit.convert.tflite:convert_fp32",
               (on("tflite", 2), on("openvino", 4, _OV_TFLITE))),
        Format("tflite-dynamic", "_dynamic.tflite",
               "TFLite, dynamic range (int8 weights, float activations)",
               "edgekit.convert.tflite:convert_dynamic",
               (on("tflite", 3), on("openvino", 7, _OV_TFLITE))),
        Format("tflite-int8", "_int8.tflite", "TFLite, full integer (int8 or uint8 I/O)",
               "edgekit.convert.tflite:convert_int8",
               (on("tflite", 1), on("openvino", 6, _OV_TFLITE))),
        Format("edgetpu", "_int8_edgetpu.tflite", "TFLite compiled for the Coral Edge TPU",
               "edgekit.convert.edgetpu:compile_edgetpu", (on("edgetpu", 1),),
               requires=("tflite-int8",)),
        Format("onnx", ".onnx", "ONNX (opset 13)", "edgekit.convert.onnx:convert_onnx",
               (on("onnxruntime", 1), on("openvino", 3), on("myriad", 3))),
        Format("onnx-int8", "_int8.onnx", "ONNX, int8 (QDQ, ONNX Runtime's static quantiser)",
               "edgekit.convert.onnx:convert_onnx_int8",
               (on("onnxruntime", 2), on("openvino", 5)), requires=("onnx",)),
        Format("openvino-fp32", "_fp32.xml", "OpenVINO IR, FP32 weights",
               "edgekit.convert.openvino:convert_fp32",
               (on("openvino", 1, _IR11), on("myriad", 2, _IR11)), extra_files=(".bin",)),
        Format("openvino-fp16", "_fp16.xml", "OpenVINO IR, FP16 weights (what MYRIAD runs)",
               "edgekit.convert.openvino:convert_fp16",
               (on("openvino", 2, _IR11), on("myriad", 1, _IR11)), extra_files=(".bin",)),
        # No backend runs it here: the sensor does (loop/imx500.py); convert measures MCT's
        # quantised model instead. The .json beside packerOut.zip is imxconv's memory report.
        Format("imx500", "_imx500.zip",
               "Sony IMX500 (Raspberry Pi AI Camera): MCT int8, imxconv-tf's packerOut.zip",
               "edgekit.convert.imx500:convert_imx500", (), extra_files=(".json",),
               elsewhere="the IMX500 sensor runs it (on a Pi with the AI Camera: edgekit run "
                         "BUNDLE --source imx500); no runtime on a workstation runs "
                         "packerOut.zip, so convert measured MCT's quantised model instead",
               # Minutes of MCT and imxconv-tf per model, for one camera: asked for by name.
               by_default=False),
    )
}


def parse_formats(text: str | None) -> list[str]:
    """"tflite-int8,onnx" -> keys in table order (with what they require); "all" -> every
    format; None -> the default ones (all but those built only when named, as imx500)."""
    if not text:
        return [key for key, f in FORMATS.items() if f.by_default]
    if text.strip() == "all":
        return list(FORMATS)
    asked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in asked if t not in FORMATS]
    if unknown:
        raise UsageError(
            f"unknown format {', '.join(map(repr, unknown))}; choose from: {', '.join(FORMATS)}"
        )
    wanted = set(asked)
    for key in asked:
        wanted.update(FORMATS[key].requires)
    return [key for key in FORMATS if key in wanted]


def format_of_file(name: str) -> Format | None:
    """The format a file name was written as, by its suffix (longest match wins)."""
    matches = [f for f in FORMATS.values() if name.endswith(f.suffix)]
    return max(matches, key=lambda f: len(f.suffix)) if matches else None


def table_backends() -> frozenset[str]:
    """The backends the table names (the built-ins); a third-party one reads its own suffixes."""
    return frozenset(r.backend for f in FORMATS.values() for r in f.runs_on)


def preferred_formats(backend: str, version: str | None = None) -> tuple[str, ...]:
    """The formats ``backend`` runs, best first (by rank, then table order). With the
    runtime's ``version``, only those it reads (OpenVINO 2021.4: ONNX, no IR v11)."""
    ranked = [(runner.rank, i, f.key) for i, f in enumerate(FORMATS.values())
              for runner in f.runs_on
              if runner.backend == backend and runner.reads_with(version)]
    return tuple(key for _, _, key in sorted(ranked))


def why_not(backend: str, key: str, version: str | None = None) -> str:
    """Why ``backend`` (a runtime of ``version``) does not run ``key`` ("" when it does)."""
    fmt = FORMATS[key]
    runner = fmt.runner(backend)
    if runner is None:
        return f"the {backend} backend does not run {key}; {key} runs on {', '.join(fmt.backends)}"
    if not runner.reads_with(version):
        return f"{backend} {version} cannot run {key}: {runner.why}"
    return ""


def runs(backend: str, key: str, version: str | None = None) -> bool:
    """Whether ``backend`` runs the ``key`` artifact (a runtime of ``version``, if given)."""
    runner = FORMATS[key].runner(backend) if key in FORMATS else None
    return runner is not None and runner.reads_with(version)


def backend_suffixes(backend: str) -> tuple[str, ...]:
    """The file types ``backend`` reads, from the formats it runs (".tflite", ".onnx"...)."""
    return tuple(dict.fromkeys(FORMATS[k].extension for k in preferred_formats(backend)))


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("-")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
