"""Calibration and validation samples: from .npy/.npz arrays or a folder of images.

Arrays hold samples already in the model's pre-processed space (what the Keras
model takes). A folder of images is pre-processed with the model's InputSpec;
sub-folders named after the labels give each image its label.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import InvalidData, first_line
from edgekit.helpers.files import read_head, read_small, refuse_special
from edgekit.preprocess import InputSpec, image_to_tensor, list_images, prepare, read_image

X_KEYS = ("x", "images", "inputs", "data")
Y_KEYS = ("y", "labels", "targets")
BOX_KEYS = ("boxes", "classes", "counts")  # detection ground truth: (N, K, 4), (N, K), (N,)
MASKS_KEY = "masks"  # segmentation ground truth: (N, H, W) class ids
LABELS_MAX_BYTES = 16 * 1024 * 1024  # a labels file: one name per line
MAGIC = {".npz": (b"PK\x03\x04", b"PK\x05\x06"), ".npy": (b"\x93NUMPY",)}  # zip; numpy
# What numpy raises on a damaged, truncated or pickled .npy/.npz (while opening or reading it).
ARRAY_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError)


@dataclass
class Samples:
    """Pre-processed samples (N, ...) float32, with integer labels when known."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    boxes: dict[str, np.ndarray] | None = None  # detection truth (BOX_KEYS), boxes in input px
    label_names: list[str] | None = None  # labels learnt from sub-folder names (none given)
    from_images: bool = False  # made from image files with the input spec (not an array)
    masks: np.ndarray | None = None  # segmentation truth (MASKS_KEY), class ids per pixel

    def __len__(self) -> int:
        return len(self.x)


def check_array_file(path: Path, kind: str) -> None:
    """InvalidData unless ``path`` is a regular file that starts like a ``kind`` (".npz" or
    ".npy") file: a device, an empty file, text, a pickle get one line before numpy sees it."""
    refuse_special(path, "")
    try:
        head = read_head(path, 8)
    except OSError as exc:
        raise InvalidData(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not head.startswith(MAGIC[kind]):
        what = "it is empty" if not head else "it does not start like a numpy one"
        raise InvalidData(f"{path}: not a readable {kind} file ({what}); save the arrays with "
                          f"numpy.{'savez' if kind == '.npz' else 'save'}")


def array_problem(exc: BaseException) -> str:
    """What is wrong with a .npy/.npz file numpy failed on (one of ARRAY_ERRORS), in words:
    never numpy's advice to unpickle it."""
    if "pickle" in str(exc):
        return "it holds Python objects, not plain numeric arrays (edgekit never unpickles data)"
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
        return f"it is damaged or truncated ({first_line(exc)})"
    return first_line(exc)


def _from_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None,
                                   dict[str, np.ndarray] | None, np.ndarray | None]:
    check_array_file(path, ".npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            x_key = next((k for k in X_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if x_key is None:
                raise InvalidData(f"{path}: cannot tell which array holds the samples "
                                  f"(found {keys}); name it 'x' (and the labels 'y')")
            y_key = next((k for k in Y_KEYS if k in keys), None)
            boxes = {k: data[k] for k in BOX_KEYS} if all(k in keys for k in BOX_KEYS) else None
            masks = data[MASKS_KEY] if MASKS_KEY in keys else None
            return data[x_key], (data[y_key] if y_key else None), boxes, masks
    except ARRAY_ERRORS as exc:
        raise InvalidData(f"{path}: not a readable .npz file: {array_problem(exc)}") from None


def _from_npy(path: Path) -> np.ndarray:
    check_array_file(path, ".npy")
    try:
        return np.load(path, allow_pickle=False)
    except ARRAY_ERRORS as exc:
        raise InvalidData(f"{path}: not a readable .npy file: {array_problem(exc)}") from None


def _listing(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def folder_labels(path: Path, names: Sequence[str], labels: Sequence[str],
                  classes: int | None) -> tuple[dict[str, int], list[str] | None]:
    """Which class each sub-folder holds, and the labels learnt from the names (if any).

    A sub-folder's name is its label. With labels known, folders are matched by
    name, and a numeric name that is not a label is that class number. Without
    labels, numeric names are class numbers; other names become the labels (in
    sorted order, as Keras's image_dataset_from_directory numbers them) only when
    there is one folder per class of the model. Anything else is InvalidData.
    """
    numeric = all(n.isdigit() for n in names)
    if labels:
        index = {name: i for i, name in enumerate(labels)}
        mapping = {n: index[n] if n in index else int(n) for n in names
                   if n in index or (n.isdigit() and int(n) < len(labels))}
        unmatched = [n for n in names if n not in mapping]
        if unmatched:
            raise InvalidData(
                f"{path}: sub-folder(s) {_listing(unmatched)} match no label; the labels are "
                f"{_listing(list(labels))}: name each sub-folder after its label (or its "
                "number), or give the labels the folders use with --labels")
        return mapping, None
    if numeric:
        mapping = {n: int(n) for n in names}
        too_big = [n for n in names if classes is not None and int(n) >= classes]
        if too_big:
            raise InvalidData(f"{path}: sub-folder(s) {_listing(too_big)} name classes the model "
                              f"does not have (it has {classes}: 0..{classes - 1})")
        learnt = ([str(i) for i in range(classes)]
                  if classes is not None and sorted(mapping.values()) == list(range(classes))
                  else None)
        return mapping, learnt
    if classes is None or len(names) != classes:
        have = "an unknown number of" if classes is None else str(classes)
        raise InvalidData(
            f"{path}: {len(names)} sub-folders ({_listing(list(names))}) for a model with "
            f"{have} classes: without labels edgekit cannot tell which class each folder "
            "holds; give --labels FILE (one label per line, in the model's class order)")
    ordered = sorted(names)
    return {n: i for i, n in enumerate(ordered)}, ordered


def _images(folder: Path, spec: InputSpec) -> list[np.ndarray]:
    return [image_to_tensor(read_image(p), spec)[0] for p in list_images(folder)]


def _masked_folder(path: Path, spec: InputSpec) -> tuple[np.ndarray, np.ndarray] | None:
    """A segmentation set: ``DIR/images/`` and ``DIR/masks/``, one mask per image, named after
    it (``a.jpg`` -> ``a.png``), an 8-bit image of class ids at the image's size. Each mask is
    brought to the model input the way its image is (letterbox, crop...), nearest neighbour,
    padding as class 0. None when ``path`` is not laid out so."""
    import cv2

    images, masks = path / "images", path / "masks"
    if not (images.is_dir() and masks.is_dir()):
        return None
    files = list_images(images)
    by_stem = {m.stem: m for m in list_images(masks)}
    lonely = [f.name for f in files if f.stem not in by_stem]
    spare = sorted(set(by_stem) - {f.stem for f in files})
    if lonely or spare:
        raise InvalidData(f"{masks}: the masks do not match the images in {images} "
                          f"({len(lonely)} image(s) without a mask, e.g. {lonely[:3]}; "
                          f"{len(spare)} mask(s) without an image, e.g. {spare[:3]}): name "
                          "each mask after its image, as a .png")
    if not files:
        raise InvalidData(f"{images}: no image files in it (.png, .jpg, .bmp, ...)")
    xs, ms = [], []
    for f in files:
        image = read_image(f)
        tensor, transform = prepare(image, spec)
        mask = cv2.imread(str(by_stem[f.stem]), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2 or mask.shape != image.shape[:2]:
            got = "unreadable" if mask is None else f"of shape {mask.shape}"
            raise InvalidData(f"{by_stem[f.stem]}: a mask is one channel of class ids at its "
                              f"image's size {image.shape[:2]}, and this one is {got}")
        matrix = np.array([[transform.scale_x, 0, transform.pad_x],
                           [0, transform.scale_y, transform.pad_y]], np.float32)
        ms.append(cv2.warpAffine(mask, matrix, (spec.width, spec.height),
                                 flags=cv2.INTER_NEAREST, borderValue=0))
        xs.append(tensor[0])
    return np.stack(xs), np.stack(ms)


def _from_folder(path: Path, spec: InputSpec, labels: Sequence[str], classes: int | None,
                 labelled: bool) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    folders = sorted(p for p in path.iterdir() if p.is_dir())
    if not folders:
        xs = _images(path, spec)
        if not xs:
            raise InvalidData(f"{path}: no image files in it (.png, .jpg, .bmp, ...)")
        return np.stack(xs), None, None
    learnt = None
    if labelled:
        mapping, learnt = folder_labels(path, [f.name for f in folders], labels, classes)
    xs, ys = [], []
    for folder in folders:
        images = _images(folder, spec)
        xs += images
        if labelled:
            ys += [mapping[folder.name]] * len(images)
    if not xs:
        raise InvalidData(f"{path}: its sub-folders hold no images")
    return np.stack(xs), (np.asarray(ys, dtype=np.int64) if labelled else None), learnt


def read_labels(path: str | Path) -> list[str]:
    """Labels, one per line; "ID NAME" / "ID: NAME" lines (Coral's format) index by ID."""
    path = Path(path)
    try:
        text = read_small(path, LABELS_MAX_BYTES, "labels:").decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidData(f"labels: cannot read {path} ({exc})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidData(f"labels: {path} holds no labels (it is empty); give one label per "
                          "line, in the model's class order")
    pairs = [re.match(r"^(\d+)[\s:]+(.+)$", line) for line in lines]
    if lines and all(pairs):
        table = {int(m.group(1)): m.group(2).strip() for m in pairs}
        return [table.get(i, "") for i in range(max(table) + 1)]
    return lines


def load_samples(path: str | Path, spec: InputSpec, labels: Sequence[str] = (),
                 what: str = "samples", classes: int | None = None,
                 labelled: bool = True) -> Samples:
    """Load samples and check their shape; InvalidData when they do not fit the model input.

    ``labelled`` False (calibration) ignores what sub-folder names would say.
    The contents (NaN, range, labels) are checked by ``edgekit.data.datacheck``.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidData(f"{what}: {path} does not exist")
    refuse_special(path, f"{what}:")
    boxes, learnt, masks = None, None, None
    masked = _masked_folder(path, spec) if path.is_dir() else None
    if masked is not None:
        (x, masks), y = masked, None
    elif path.is_dir():
        x, y, learnt = _from_folder(path, spec, labels, classes, labelled)
    elif path.suffix == ".npz":
        x, y, boxes, masks = _from_npz(path)
    elif path.suffix == ".npy":
        x, y = _from_npy(path), None
    else:
        raise InvalidData(f"{what}: {path} is not a folder of images, .npy or .npz file")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InvalidData(f"{what} in {path} are {x.dtype}, not real numbers: give float32 "
                          "samples in the model's pre-processed space")
    want = spec.sample_shape
    if x.ndim == len(want) and want[-1] == 1 and x.shape[1:] == want[:-1]:
        x = x[..., None]  # (N, H, W) greyscale for an (H, W, 1) model
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
        raise InvalidData(_shape_problem(what, path, x, spec))
    if y is not None:
        y = _labels_array(np.asarray(y), len(x), path)
    if boxes is not None and any(len(v) != len(x) for v in boxes.values()):
        raise InvalidData(f"{path}: {len(x)} samples but the box arrays hold a different count")
    if masks is not None:
        masks = _masks_array(np.asarray(masks), len(x), path)
    return Samples(x.astype(np.float32), y, str(path), boxes, learnt, path.is_dir(), masks)


def _masks_array(masks: np.ndarray, count: int, path: Path) -> np.ndarray:
    """Segmentation truth: (N, H, W) whole class ids 0..255, one mask per sample."""
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3 or len(masks) != count:
        raise InvalidData(f"{path}: {count} samples but masks of shape {masks.shape}: give "
                          f"'{MASKS_KEY}' as (N, H, W) class ids, one mask per sample")
    if not np.issubdtype(masks.dtype, np.integer) or masks.min() < 0 or masks.max() > 255:
        raise InvalidData(f"{path}: the masks are not class ids 0..255 ({masks.dtype}, "
                          f"{masks.min()}..{masks.max()})")
    return masks.astype(np.int64)


def _shape_problem(what: str, path: Path, x: np.ndarray, spec: InputSpec) -> str:
    want = spec.sample_shape
    got = tuple(x.shape[1:])
    if x.ndim == len(want) + 1 and spec.layout == "NHWC" and got[:-1] == want[:-1]:
        return (f"{what} in {path} have {got[-1]} channel(s) per sample; the model takes "
                f"{want[-1]} ({spec.color}): give samples of shape (N, "
                f"{', '.join(map(str, want))})")
    return (f"{what} in {path} have shape {got} per sample (rank {x.ndim}); the model takes "
            f"{tuple(want)}: give samples of that shape (N, {', '.join(map(str, want))})")


def _labels_array(y: np.ndarray, count: int, path: Path) -> np.ndarray:
    if y.ndim == 2:  # one-hot
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != count:
        raise InvalidData(f"{path}: {count} samples but {len(y)} labels of shape {y.shape}")
    whole = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and bool(np.all(np.isfinite(y) & (y == np.round(y)))))
    if not whole:
        raise InvalidData(f"{path}: the labels are not whole class numbers ({y.dtype}); give "
                          "integer labels 0..classes-1 (or one-hot rows)")
    return y.astype(np.int64)
