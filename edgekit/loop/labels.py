"""A classification clip's truth: the class of each frame, to score a classifier in the loop.

Two places give it: an image folder with one sub-folder per class (named by label or class
id: ``digits/7/a.png``), or a sidecar beside a video, ``CLIP.labels.txt``, with one line per
run of frames, ``FIRST-LAST LABEL`` (frame numbers from 0, both included; ``#`` comments).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import InvalidData

SIDECAR_SUFFIX = ".labels.txt"


@dataclass
class ClassTruth:
    """Class ids per frame, by frame index (a video) or by frame name (a folder)."""

    source: str
    by_index: dict[int, int] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)

    def of(self, index: int, name: str) -> int | None:
        """The true class of a frame, or None when the truth does not say."""
        if name and name in self.by_name:
            return self.by_name[name]
        return self.by_index.get(index)


def sidecar_path(spec: str | Path) -> Path:
    """Where a video's labels sidecar would be: ``CLIP.labels.txt`` beside ``CLIP.avi``."""
    path = Path(str(spec))
    return path.with_name(path.stem + SIDECAR_SUFFIX)


def class_id(text: str, labels: Sequence[str], where: str) -> int:
    """A label (by name) or a class id (a number) -> the class id, checked against labels."""
    text = text.strip()
    if text in labels:
        return list(labels).index(text)
    if text.isdigit() and (not labels or int(text) < len(labels)):
        return int(text)
    known = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
    raise InvalidData(f"{where}: {text!r} is not one of the model's classes ({known or 'none'})")


def read_sidecar(path: Path, labels: Sequence[str], frames: int | None) -> ClassTruth:
    """A labels sidecar: ``FIRST-LAST LABEL`` lines; ranges must not overlap and must lie
    within the clip's ``frames`` (when known)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidData(f"{path}: cannot read it ({exc})") from None
    truth = ClassTruth(str(path))
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        where = f"{path}:{number}"
        found = re.fullmatch(r"(\d+)\s*-\s*(\d+)\s+(.+)", text)
        if not found:
            raise InvalidData(f"{where}: {text!r} is not 'FIRST-LAST LABEL' (e.g. '0-29 7')")
        first, last = int(found[1]), int(found[2])
        if first > last:
            raise InvalidData(f"{where}: the range {first}-{last} ends before it starts")
        if frames is not None and last >= frames:
            raise InvalidData(f"{where}: frame {last} is beyond the clip's {frames} frames "
                              f"(0..{frames - 1})")
        clash = next((i for i in range(first, last + 1) if i in truth.by_index), None)
        if clash is not None:
            raise InvalidData(f"{where}: frame {clash} is already labelled by an earlier line")
        cls = class_id(found[3], labels, where)
        truth.by_index.update({i: cls for i in range(first, last + 1)})
    return truth


def folder_truth(path: Path, files: Sequence[Path], labels: Sequence[str]) -> ClassTruth | None:
    """A folder whose images sit in class sub-folders: each image's class from its folder."""
    inside = [f for f in files if f.parent != path]
    if not inside:
        return None
    truth = ClassTruth(f"the sub-folders of {path}")
    for f in inside:
        truth.by_name[f"{f.parent.name}/{f.name}"] = class_id(f.parent.name, labels,
                                                              f"{f.parent}")
    return truth


def find_class_truth(spec: str | Path, labels: Sequence[str],
                     frames: int | None = None) -> ClassTruth | None:
    """The truth of a classification source, if it carries one (see the module's text)."""
    from edgekit.loop.sources import folder_images, is_live

    if is_live(str(spec)):
        return None
    path = Path(str(spec))
    if path.is_dir():
        return folder_truth(path, folder_images(path), labels)
    sidecar = sidecar_path(path)
    return read_sidecar(sidecar, labels, frames) if sidecar.is_file() else None
