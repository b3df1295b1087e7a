"""The one table of artifact formats: key, file name, converter, who can run it.

Everything that needs to know about formats (convert, inspect, bench, deploy)
reads this table instead of keeping its own list.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import UsageError


@dataclass(frozen=True)
class Format:
    key: str
    suffix: str  # appended to the model's name: lenet5_digits + "_int8.tflite"
    description: str
    converter: str  # "module:function", imported only when this format is built
    backends: tuple[str, ...]  # backends that run it, the CPU one used for fidelity first
    requires: tuple[str, ...] = ()  # formats it is built from
    extra_files: tuple[str, ...] = ()  # companions that travel with it (".bin" for IR)

    def filename(self, stem: str) -> str:
        return stem + self.suffix


FORMATS: dict[str, Format] = {
    f.key: f
    for f in (
        Format("tflite-fp32", "_fp32.tflite", "TFLite, float32",
               "edgekit.convert.tflite:convert_fp32", ("tflite", "openvino")),
        Format("tflite-dynamic", "_dynamic.tflite",
               "TFLite, dynamic range (int8 weights, float activations)",
               "edgekit.convert.tflite:convert_dynamic", ("tflite", "openvino")),
        Format("tflite-int8", "_int8.tflite", "TFLite, full integer (int8 or uint8 I/O)",
               "edgekit.convert.tflite:convert_int8", ("tflite", "openvino")),
        Format("edgetpu", "_int8_edgetpu.tflite", "TFLite compiled for the Coral Edge TPU",
               "edgekit.convert.edgetpu:compile_edgetpu", ("edgetpu",), ("tflite-int8",)),
        Format("onnx", ".onnx", "ONNX (opset 13)",
               "edgekit.convert.onnx:convert_onnx", ("onnxruntime", "openvino")),
        Format("onnx-int8", "_int8.onnx", "ONNX, int8 (QDQ, ONNX Runtime's static quantiser)",
               "edgekit.convert.onnx:convert_onnx_int8", ("onnxruntime", "openvino"),
               ("onnx",)),
        Format("openvino-fp32", "_fp32.xml", "OpenVINO IR, FP32 weights",
               "edgekit.convert.openvino:convert_fp32", ("openvino",),
               extra_files=(".bin",)),
        Format("openvino-fp16", "_fp16.xml", "OpenVINO IR, FP16 weights (what MYRIAD runs)",
               "edgekit.convert.openvino:convert_fp16", ("openvino", "myriad"),
               extra_files=(".bin",)),
    )
}


def parse_formats(text: str | None) -> list[str]:
    """"tflite-int8,onnx" -> keys in table order (with what they require); None -> all."""
    if not text or text.strip() == "all":
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


# Which artifact of a bundle a backend runs when none is named: the most deployable first.
_PREFERRED: dict[str, tuple[str, ...]] = {
    "tflite": ("tflite-int8", "tflite-fp32", "tflite-dynamic"),
    "edgetpu": ("edgetpu",),
    "openvino": ("openvino-fp32", "openvino-fp16", "onnx", "tflite-fp32"),
    "myriad": ("openvino-fp16", "openvino-fp32"),
    "onnxruntime": ("onnx",),
}


def preferred_formats(backend: str) -> tuple[str, ...]:
    """Formats ``backend`` runs, best first (table order for backends not listed above)."""
    if backend in _PREFERRED:
        return _PREFERRED[backend]
    return tuple(f.key for f in FORMATS.values() if backend in f.backends)

