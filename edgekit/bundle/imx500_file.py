"""Read what imxconv-tf wrote for the IMX500, without Sony's tools: ``packerOut.zip`` (its
``manifest.json`` and ``dnnParams.xml``: the network's input and output tensors as the sensor
lays them out) and the memory report beside it (``*_MemoryReport.json``, kept in a bundle as
``NAME_imx500.json``).

Imported by ``inspect`` and by the loop on the device: stdlib only, Python 3.9.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from edgekit.errors import InvalidModel

MAX_MEMBER_BYTES = 1024 * 1024  # manifest.json and dnnParams.xml are a few KB


@dataclass
class SensorTensor:
    """One tensor of the network as dnnParams.xml describes it."""

    name: str
    shape: tuple[int, ...]
    bits: int
    scale: float
    signed: bool


@dataclass
class PackerInfo:
    """What a packerOut.zip holds."""

    network: str
    target: str
    converter_version: str
    inputs: list[SensorTensor]
    outputs: list[SensorTensor]
    members: list[tuple[str, int]]  # (file, bytes)
    memory: dict[str, Any] = field(default_factory=dict)  # the memory report's figures

    def to_dict(self) -> dict[str, Any]:
        def tensor(t: SensorTensor) -> dict[str, Any]:
            return {"name": t.name, "shape": list(t.shape), "bits": t.bits, "scale": t.scale,
                    "signed": t.signed}
        return {"network": self.network, "target": self.target,
                "converter_version": self.converter_version,
                "inputs": [tensor(t) for t in self.inputs],
                "outputs": [tensor(t) for t in self.outputs],
                "members": [{"name": n, "size": s} for n, s in self.members],
                "memory": self.memory}


def memory_report_path(packed: Path) -> Path:
    """Where a bundle keeps the memory report of ``packed``: the same name, ``.json``."""
    return packed.with_suffix(".json")


def read_memory_report(path: Path) -> dict[str, Any]:
    """The memory report's figures ({} when there is none); InvalidModel when it is broken."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidModel(f"{path.name}: not a readable imxconv memory report ({exc})") \
            from None
    report = data.get("Memory Report", data) if isinstance(data, dict) else {}
    return {"memory_usage": report.get("Memory Usage", ""),
            "memory_available": report.get("Total Memory Available On Chip", ""),
            "utilization": report.get("Memory Utilization", ""),
            "fits": report.get("Fit In Chip"),
            "runtime_memory": report.get("Runtime Memory Physical Size", ""),
            "model_memory": report.get("Model Memory Physical Size", "")}


def read_packer(path: Path) -> PackerInfo:
    """The network in a packerOut.zip; InvalidModel when it is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [(i.filename, i.file_size) for i in archive.infolist()]
            names = {n for n, _ in members}
            if "dnnParams.xml" not in names:
                raise InvalidModel(f"{path.name}: not an IMX500 packerOut.zip (no "
                                   "dnnParams.xml in it); make it with imxconv-tf")
            manifest = json.loads(_member(archive, "manifest.json")) \
                if "manifest.json" in names else {}
            params = ElementTree.fromstring(_member(archive, "dnnParams.xml"))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModel(f"{path.name}: not a readable zip archive ({exc}); convert again "
                           "with --formats imx500") from None
    except (ValueError, ElementTree.ParseError) as exc:
        raise InvalidModel(f"{path.name}: its manifest.json or dnnParams.xml is broken "
                           f"({exc})") from None
    network = params.find(".//network")
    return PackerInfo(
        network=str(manifest.get("Network Name") or
                    (network.get("name", "") if network is not None else "")),
        target=str(manifest.get("Target", "")),
        converter_version=str(manifest.get("Release Version", "")),
        inputs=[_tensor(t) for t in params.iter("inputTensor")],
        outputs=[_tensor(t) for t in params.iter("outputTensor")],
        members=members,
        memory=read_memory_report(memory_report_path(path)))


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    if archive.getinfo(name).file_size > MAX_MEMBER_BYTES:
        raise ValueError(f"{name} is larger than {MAX_MEMBER_BYTES} bytes")
    return archive.read(name)


def _tensor(element: ElementTree.Element) -> SensorTensor:
    dims = sorted(element.iter("dimension"), key=lambda d: int(d.get("ordinal", "0")))
    return SensorTensor(name=element.get("name", ""),
                        shape=tuple(int(d.get("size", "0")) for d in dims),
                        bits=int(element.get("bitsPerElement", "0")),
                        scale=float(element.get("scale", "0")),
                        signed=element.get("format", "") == "signed")


def memory_line(memory: dict[str, Any]) -> str:
    """"on-chip memory 221.53KB of 8.00MB (3%): fits", as the tables show it."""
    fits = {True: "fits", False: "DOES NOT FIT"}.get(memory.get("fits"), "fit unknown")
    return (f"on-chip memory {memory.get('memory_usage') or '?'} of "
            f"{memory.get('memory_available') or '?'} ({memory.get('utilization') or '?'}): "
            f"{fits}")

