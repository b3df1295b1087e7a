"""``edgekit inspect``: what a bundle or a model file holds, read without running it.

A bundle: its manifest as the convert table. A model file: its facts (header lines), its
inputs and outputs, and its operators (or layers), from the file itself: a .tflite through
edgekit's own FlatBuffer reader, an OpenVINO .xml by its XML, a .keras by the config inside
the archive (no TensorFlow), an .onnx through the ``onnx`` package (``edgekit[convert]``).
"""
from __future__ import annotations

import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from edgekit.bundle.manifest import is_bundle, read_manifest
from edgekit.bundle.tables import conversion_table, quantisation
from edgekit.bundle.tensors import TensorInfo
from edgekit.bundle.tflite_file import read_tflite
from edgekit.errors import BackendUnavailable, InvalidModel
from edgekit.helpers.render import csv_table, markdown_table, size, table

MODEL_SUFFIXES = (".tflite", ".onnx", ".xml", ".keras", ".zip")
TENSOR_HEADERS = ["", "name", "shape", "dtype", "quantisation"]


@dataclass
class ModelFacts:
    """What a model file says about itself."""

    path: Path
    kind: str  # "tflite", "onnx", "openvino", "keras"
    facts: list[tuple[str, str]]  # header lines: (what, value)
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: list[tuple[str, str, int]]  # (operator or layer type, version or "", count)
    ops_header: tuple[str, str, str] = ("operator", "version", "nodes")
    extra: dict[str, Any] = field(default_factory=dict)  # more for --json

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.path), "kind": self.kind, "size": self.path.stat().st_size,
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
                "ops": [{"name": n, "version": v, "count": c} for n, v, c in self.ops],
                **self.extra}


def inspect_path(path: str | Path, output: str = "text") -> tuple[dict[str, Any], str]:
    """(facts for --json, the rendering for ``output``: text, markdown or csv) of a bundle
    folder or a model file."""
    path = Path(path)
    if path.is_dir():
        if not is_bundle(path):
            raise InvalidModel(f"{path} is a folder but not an edgekit bundle (no edgekit.json)")
        manifest = read_manifest(path)
        return manifest.to_dict(), conversion_table(manifest, output)
    if not path.exists():
        raise InvalidModel(f"{path}: no such file or folder")
    readers = {".tflite": _tflite, ".onnx": _onnx, ".xml": _openvino, ".keras": _keras,
               ".zip": _imx500}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InvalidModel(f"{path.name}: inspect reads bundle folders and "
                           f"{', '.join(MODEL_SUFFIXES)} files")
    model = reader(path)
    return model.to_dict(), render_model(model, output)


def render_model(model: ModelFacts, output: str) -> str:
    """The header lines, the tensors and the operators; CSV holds both tables as one."""
    tensors = [[kind, t.name, _shape(t.shape), t.dtype, quantisation(t)]
               for kind, group in (("input", model.inputs), ("output", model.outputs))
               for t in group]
    versioned = bool(model.ops_header[1])
    ops = [[name, version, count] if versioned else [name, count]
           for name, version, count in model.ops]
    if output == "csv":
        rows = [[kind, name, shape, dtype, quant, "", ""]
                for kind, name, shape, dtype, quant in tensors]
        rows += [["operator", name, "", "", "", version, count]
                 for name, version, count in model.ops]
        return csv_table(["kind", "name", "shape", "dtype", "quantisation", "version",
                          "count"], rows).rstrip("\n")
    head = [f"{model.path.name}: {size(model.path.stat().st_size)}, {model.kind}"]
    head += [f"{what}: {value}" for what, value in model.facts]
    render = markdown_table if output == "markdown" else table
    headers = list(model.ops_header) if versioned else [model.ops_header[0],
                                                        model.ops_header[2]]
    parts = ["\n".join(head), render(TENSOR_HEADERS, tensors), render(headers, ops)]
    return "\n\n".join(parts)


def _shape(dims: tuple[int, ...]) -> str:
    """1x32x32x1; an unknown size (a batch left open) is "?"."""
    return "x".join("?" if d < 0 else str(d) for d in dims) or "-"


def _tflite(path: Path) -> ModelFacts:
    info = read_tflite(path)
    return ModelFacts(
        path, "tflite",
        [("subgraphs", str(info.subgraphs)),
         ("Edge TPU compiled", "yes (edgetpu-custom-op)" if info.edgetpu_compiled else "no"),
         ("full integer", "yes" if info.full_integer else "no")],
        list(info.inputs), list(info.outputs),
        [(op.name + (" (custom)" if op.custom else ""), str(op.version), op.count)
         for op in info.ops],
        extra={"subgraphs": info.subgraphs, "edgetpu_compiled": info.edgetpu_compiled,
               "full_integer": info.full_integer, "description": info.description,
               "ops": [{"name": op.name, "version": op.version, "count": op.count,
                        "custom": op.custom} for op in info.ops]})


def _imx500(path: Path) -> ModelFacts:
    """An IMX500 packerOut.zip, with the memory report kept beside it (NAME_imx500.json)."""
    from edgekit.bundle.imx500_file import memory_line, read_packer

    info = read_packer(path)

    def tensor(t: Any) -> TensorInfo:
        kind = "int" if t.signed else "uint"
        return TensorInfo(t.name, t.shape, f"{kind}{t.bits}" if t.bits else "?")
    facts = [("target", info.target or "?"), ("network", info.network),
             ("imxconv", info.converter_version or "?"),
             ("memory", memory_line(info.memory) if info.memory else "no memory report beside "
              "it (imxconv-tf's *_MemoryReport.json)")]
    return ModelFacts(path, "imx500 packerOut.zip", facts,
                      [tensor(t) for t in info.inputs], [tensor(t) for t in info.outputs],
                      [(name, "", size) for name, size in info.members],
                      ops_header=("file", "", "bytes"), extra=info.to_dict())


def _onnx(path: Path) -> ModelFacts:
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise BackendUnavailable("inspecting an .onnx file needs the onnx package",
                                 "pip install onnx (or: pip install 'edgekit[convert]')") \
            from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and kin: not a model, or a damaged one
        raise InvalidModel(f"{path.name}: not a readable ONNX model ({type(exc).__name__})") \
            from None
    graph = model.graph
    weights = {init.name for init in graph.initializer}

    def tensor(value: Any) -> TensorInfo:
        kind = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
        try:
            dtype = str(helper.tensor_dtype_to_np_dtype(kind.elem_type))
        except (KeyError, ValueError):
            dtype = str(kind.elem_type)
        return TensorInfo(value.name, dims, dtype,
                          dynamic_dims=tuple(i for i, d in enumerate(dims) if d < 0))

    counts = Counter((node.domain or "ai.onnx", node.op_type) for node in graph.node)
    used = {"ai.onnx"} | {domain for domain, _ in counts}
    opsets = {(o.domain or "ai.onnx"): o.version for o in model.opset_import
              if (o.domain or "ai.onnx") in used}
    quantised = any(op in ("QuantizeLinear", "QLinearConv", "ConvInteger")
                    for _, op in counts)
    weight_bytes = sum(len(i.raw_data) for i in graph.initializer)
    return ModelFacts(
        path, "onnx",
        [("opset", ", ".join(f"{d} {v}" for d, v in sorted(opsets.items()))),
         ("producer", f"{model.producer_name} {model.producer_version}".strip() or "-"),
         ("int8 (QDQ)", "yes" if quantised else "no"),
         ("weights", f"{len(graph.initializer)} tensors, {size(weight_bytes)}")],
        [tensor(v) for v in graph.input if v.name not in weights],
        [tensor(v) for v in graph.output],
        [(op if domain == "ai.onnx" else f"{domain}.{op}", str(opsets.get(domain, "")), n)
         for (domain, op), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))],
        extra={"ir_version": model.ir_version, "opset_import": opsets,
               "producer": model.producer_name, "producer_version": model.producer_version,
               "int8_qdq": quantised, "weights": len(graph.initializer),
               "weight_bytes": weight_bytes})


_OV_TYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "u8": "uint8", "i8": "int8",
             "i32": "int32", "i64": "int64", "boolean": "bool"}


def _openvino(path: Path) -> ModelFacts:
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise InvalidModel(f"{path.name}: not a readable OpenVINO IR ({exc})") from None
    if root.tag != "net":
        raise InvalidModel(f"{path.name}: not an OpenVINO IR (its root element is "
                           f"<{root.tag}>, not <net>)")
    layers = root.findall("./layers/layer")

    def dims(port: ElementTree.Element | None) -> tuple[int, ...]:
        if port is None:
            return ()
        return tuple(int(d.text) if (d.text or "").strip().lstrip("-").isdigit() else -1
                     for d in port.findall("dim"))

    inputs, outputs = [], []
    for layer in layers:
        if layer.get("type") == "Parameter":
            data = layer.find("data")
            port = layer.find("./output/port")
            inputs.append(TensorInfo(
                (port.get("names") if port is not None else None) or layer.get("name", ""),
                dims(port), _OV_TYPES.get(data.get("element_type", "") if data is not None
                                          else "", "float32")))
        elif layer.get("type") == "Result":
            port = layer.find("./input/port")
            precision = (port.get("precision", "FP32") if port is not None else "FP32").lower()
            outputs.append(TensorInfo(layer.get("output_names") or layer.get("name", ""),
                                      dims(port), {"fp32": "float32", "fp16": "float16"}.get(
                                          precision, precision)))
    counts = Counter((layer.get("type", "?"), layer.get("version", ""))
                     for layer in layers if layer.get("type") not in ("Parameter", "Result"))
    constants = Counter(c.get("element_type", "?") for layer in layers
                        if layer.get("type") == "Const" for c in layer.findall("data"))
    weights = path.with_suffix(".bin")
    return ModelFacts(
        path, "openvino",
        [("IR version", root.get("version", "?")), ("name", root.get("name", "")),
         ("constants", ", ".join(f"{n} {t}" for t, n in sorted(constants.items())) or "none"),
         ("weights", f"{weights.name}, {size(weights.stat().st_size)}" if weights.is_file()
          else f"{weights.name} is missing: copy it beside the .xml")],
        inputs, outputs,
        [(op, version, n) for (op, version), n in sorted(counts.items(),
                                                         key=lambda kv: (-kv[1], kv[0]))],
        ops_header=("layer type", "opset", "layers"),
        extra={"ir_version": root.get("version"), "name": root.get("name"),
               "constants": dict(constants), "weights_file": weights.is_file()})


def _keras(path: Path) -> ModelFacts:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            names = archive.namelist()
            metadata = json.loads(archive.read("metadata.json")) \
                if "metadata.json" in names else {}
            parameters = _keras_parameters(archive) if "model.weights.h5" in names else None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise InvalidModel(f"{path.name}: not a Keras 3 .keras archive ({exc})") from None
    inner = config.get("config", {})
    layers = inner.get("layers", [])
    shapes = {layer.get("config", {}).get("name"): layer.get("config", {}).get("batch_shape")
              for layer in layers if layer.get("class_name") == "InputLayer"}
    if not shapes and config.get("build_config"):  # a subclassed model: what it was built on
        shapes = {"input": config["build_config"].get("input_shape")}

    def tensor(name: str, shape: Any) -> TensorInfo:
        dims = tuple(-1 if d is None else int(d) for d in (shape or []))
        return TensorInfo(name or "", dims, "float32",
                          dynamic_dims=tuple(i for i, d in enumerate(dims) if d < 0))

    outputs = [TensorInfo(entry[0], (), "-") for entry in _layer_refs(inner.get("output_layers"))]
    counts = Counter(layer.get("class_name", "?") for layer in layers)
    return ModelFacts(
        path, "keras",
        [("model", f"{config.get('class_name', '?')} {inner.get('name', '')}".strip()),
         ("keras", metadata.get("keras_version", "?")),
         ("saved", metadata.get("date_saved", "?")),
         ("parameters", "-" if parameters is None else f"{parameters:,}"),
         ("layers", str(len(layers)) if layers else "- (subclassed: its code defines them)")],
        [tensor(name, shape) for name, shape in shapes.items()], outputs,
        [(name, "", n) for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))],
        ops_header=("layer class", "", "layers"),  # no versions: a two-column table
        extra={"model_class": config.get("class_name"), "name": inner.get("name"),
               "keras_version": metadata.get("keras_version"), "parameters": parameters,
               "layer_names": [layer.get("config", {}).get("name") for layer in layers]})


def _layer_refs(refs: Any) -> list[list[Any]]:
    """Keras's output_layers: [name, node, tensor], or a list of them."""
    if not refs:
        return []
    return [refs] if isinstance(refs[0], str) else list(refs)


def _keras_parameters(archive: zipfile.ZipFile) -> int | None:
    """How many weights the model holds, as Keras's count_params counts them (None without
    h5py, which reads them)."""
    try:
        import h5py
    except ImportError:
        return None
    import io

    total = 0
    with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        def add(name: str, item: Any) -> None:  # the optimizer's state is not the model's
            nonlocal total
            if isinstance(item, h5py.Dataset) and not name.startswith("optimizer"):
                total += int(item.size)
        weights.visititems(add)
    return total
