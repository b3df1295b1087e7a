"""``edgekit inspect``: the facts of a .tflite file or a bundle, as a dict and as text."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgekit.errors import InvalidModel
from edgekit.manifest import is_bundle, read_manifest
from edgekit.render import conversion_table, tflite_report
from edgekit.tflite_file import read_tflite


def inspect_path(path: str | Path) -> tuple[dict[str, Any], str]:
    """(facts for --json, text for people) about a .tflite file or a bundle folder."""
    path = Path(path)
    if path.is_dir():
        if not is_bundle(path):
            raise InvalidModel(f"{path} is a folder but not an edgekit bundle (no edgekit.json)")
        manifest = read_manifest(path)
        return manifest.to_dict(), conversion_table(manifest)
    if not path.exists():
        raise InvalidModel(f"{path}: no such file or folder")
    if path.suffix.lower() != ".tflite":
        raise InvalidModel(f"{path.name}: inspect reads .tflite files and bundle folders")
    info = read_tflite(path)
    facts = {
        "file": str(path), "size": info.size, "subgraphs": info.subgraphs,
        "edgetpu_compiled": info.edgetpu_compiled, "full_integer": info.full_integer,
        "description": info.description,
        "inputs": [t.to_dict() for t in info.inputs],
        "outputs": [t.to_dict() for t in info.outputs],
        "ops": [asdict(op) for op in info.ops],
    }
    return facts, tflite_report(info)
