"""Calibration and validation samples: from .npy/.npz arrays or a folder of images.

Arrays hold samples already in the model's pre-processed space (what the Keras
model takes). A folder of images is pre-processed with the model's InputSpec;
sub-folders named after the labels give each image its label.
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import InvalidData
from edgekit.preprocess import InputSpec, image_to_tensor, list_images, read_image

X_KEYS = ("x", "images", "inputs", "data")
Y_KEYS = ("y", "labels", "targets")
BOX_KEYS = ("boxes", "classes", "counts")  # detection ground truth: (N, K, 4), (N, K), (N,)


@dataclass
class Samples:
    """Pre-processed samples (N, ...) float32, with integer labels when known."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    boxes: dict[str, np.ndarray] | None = None  # detection truth (BOX_KEYS), boxes in input px

    def __len__(self) -> int:
        return len(self.x)


def _from_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray] | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            x_key = next((k for k in X_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if x_key is None:
                raise InvalidData(f"{path}: cannot tell which array holds the samples "
                                  f"(found {keys}); name it 'x' (and the labels 'y')")
            y_key = next((k for k in Y_KEYS if k in keys), None)
            boxes = {k: data[k] for k in BOX_KEYS} if all(k in keys for k in BOX_KEYS) else None
            return data[x_key], (data[y_key] if y_key else None), boxes
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InvalidData(f"{path}: not a readable .npz file ({exc})") from None


def _from_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InvalidData(f"{path}: not a readable .npy file ({exc})") from None


def _from_folder(path: Path, spec: InputSpec,
                 labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if classes:
        index = {name: i for i, name in enumerate(labels)} if labels else None
        xs, ys = [], []
        for folder in classes:
            if index is not None and folder.name not in index:
                raise InvalidData(f"{folder}: sub-folder name is not one of the labels")
            label = index[folder.name] if index is not None else classes.index(folder)
            for image in list_images(folder):
                xs.append(image_to_tensor(read_image(image), spec)[0])
                ys.append(label)
        if not xs:
            raise InvalidData(f"{path}: its sub-folders hold no images")
        return np.stack(xs), np.asarray(ys, dtype=np.int64)
    images = list_images(path)
    if not images:
        raise InvalidData(f"{path}: no image files in it (.png, .jpg, .bmp, ...)")
    return np.stack([image_to_tensor(read_image(p), spec)[0] for p in images]), None


def read_labels(path: str | Path) -> list[str]:
    """Labels, one per line; "ID NAME" / "ID: NAME" lines (Coral's format) index by ID."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidData(f"labels: cannot read {path} ({exc})") from None
    pairs = [re.match(r"^(\d+)[\s:]+(.+)$", line) for line in lines]
    if lines and all(pairs):
        table = {int(m.group(1)): m.group(2).strip() for m in pairs}
        return [table.get(i, "") for i in range(max(table) + 1)]
    return lines


def load_samples(path: str | Path, spec: InputSpec, labels: Sequence[str] = (),
                 what: str = "samples") -> Samples:
    """Load samples and check they fit the model input; InvalidData when they do not."""
    path = Path(path)
    if not path.exists():
        raise InvalidData(f"{what}: {path} does not exist")
    boxes = None
    if path.is_dir():
        x, y = _from_folder(path, spec, labels)
    elif path.suffix == ".npz":
        x, y, boxes = _from_npz(path)
    elif path.suffix == ".npy":
        x, y = _from_npy(path), None
    else:
        raise InvalidData(f"{what}: {path} is not a folder of images, .npy or .npz file")
    x = np.asarray(x)
    want = spec.sample_shape
    if x.ndim == len(want) and want[-1] == 1 and x.shape[1:] == want[:-1]:
        x = x[..., None]  # (N, H, W) greyscale for an (H, W, 1) model
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
        raise InvalidData(
            f"{what} in {path} have shape {tuple(x.shape[1:])} per sample; the model takes "
            f"{tuple(want)}: give samples of that shape (N, {', '.join(map(str, want))})"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise InvalidData(f"{what} in {path} are {x.dtype}, not numbers")
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2:  # one-hot
            y = y.argmax(axis=1)
        if len(y) != len(x):
            raise InvalidData(f"{path}: {len(x)} samples but {len(y)} labels")
        y = y.astype(np.int64)
    if boxes is not None and any(len(v) != len(x) for v in boxes.values()):
        raise InvalidData(f"{path}: {len(x)} samples but the box arrays hold a different count")
    return Samples(x.astype(np.float32), y, str(path), boxes)
