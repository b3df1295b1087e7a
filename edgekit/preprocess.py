"""From an image on disk or a camera frame to the model's input tensor.

An ``InputSpec`` says what the model takes: shape (NHWC or NCHW), colour order
and normalisation, ``tensor = (pixel - mean) / std`` with pixels in 0..255.
It lives in the bundle manifest, so a device needs no training code to feed
the model. Quantisation to the artifact's integer type is not done here but at
the backend boundary (``edgekit.quant``), so one spec serves every format.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import InvalidData, UsageError

COLORS = ("rgb", "bgr", "gray")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")


@dataclass(frozen=True)
class InputSpec:
    """The model input and how to make it from a picture."""

    shape: tuple[int, ...]  # with batch 1, e.g. (1, 32, 32, 1)
    layout: str = "NHWC"
    color: str = "rgb"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (255.0,)
    resize: str = "stretch"  # or "letterbox" (keeps the aspect ratio, pads)
    dtype: str = "float32"
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False)
    # Where each value came from, by field name: "model card", "flag", "default", "model".
    origin: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise UsageError(f"unknown colour order {self.color!r}; choose from {COLORS}")
        if self.layout not in ("NHWC", "NCHW"):
            raise UsageError(f"unknown layout {self.layout!r}; use NHWC or NCHW")
        if len(self.shape) != 4:
            raise UsageError(f"an image model takes a 4-D input (N, H, W, C); got {self.shape}")
        for key in ("mean", "std"):
            check_normalisation(key, getattr(self, key), self.channels, self.origin.get(key))

    @property
    def height(self) -> int:
        return self.shape[1] if self.layout == "NHWC" else self.shape[2]

    @property
    def width(self) -> int:
        return self.shape[2] if self.layout == "NHWC" else self.shape[3]

    @property
    def channels(self) -> int:
        return self.shape[3] if self.layout == "NHWC" else self.shape[1]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    def pixel_range(self) -> tuple[float, float]:
        """What 0..255 pixels become under this spec: the lowest and highest tensor value."""
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        ends = np.concatenate([(0.0 - mean) / std, (255.0 - mean) / std])
        return float(ends.min()), float(ends.max())

    def describe(self) -> str:
        """One line: colour, mean, std, resize, each with where it came from."""
        def show(key: str, value: object) -> str:
            if isinstance(value, tuple):
                value = ",".join(f"{v:g}" for v in value)
            where = self.origin.get(key)
            return f"{key} {value}" + (f" ({where})" if where else "")

        size = "x".join(str(d) for d in self.sample_shape)
        lo, hi = self.pixel_range()
        return (f"input {size} {self.layout}: " + ", ".join(
            show(k, getattr(self, k)) for k in ("color", "mean", "std", "resize"))
            + f"; pixels 0..255 become {lo:g}..{hi:g}")

    def to_dict(self) -> dict:
        data = {"shape": list(self.shape), "layout": self.layout, "color": self.color,
                "mean": list(self.mean), "std": list(self.std), "resize": self.resize,
                "dtype": self.dtype, "name": self.name}
        if self.origin:
            data["origin"] = dict(self.origin)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        return cls(shape=tuple(data["shape"]), layout=data.get("layout", "NHWC"),
                   color=data.get("color", "rgb"), mean=tuple(data.get("mean", (0.0,))),
                   std=tuple(data.get("std", (255.0,))), resize=data.get("resize", "stretch"),
                   dtype=data.get("dtype", "float32"), name=data.get("name", ""),
                   origin=dict(data.get("origin", {})))


ORIGIN_FLAGS = {"mean": "--mean", "std": "--std", "color": "--color", "resize": "--resize"}


def check_normalisation(key: str, values: Sequence[float], channels: int,
                        origin: str | None = None) -> None:
    """Refuse a mean/std that cannot be right: wrong length, not finite, a std <= 0.

    ``origin`` ("flag", "model card", ...) goes into the message, so the person
    knows which setting to fix.
    """
    where = {"flag": ORIGIN_FLAGS.get(key, key), "model card": f"{key} in the model card"}.get(
        origin or "", key)
    shown = ",".join(f"{v:g}" for v in values) if values else "(empty)"
    if len(values) not in (1, channels):
        want = "one value" if channels == 1 else f"1 value or {channels}"
        raise UsageError(f"{where} {shown} has {len(values)} values; the model input has "
                         f"{channels} channel(s): give {want}")
    if not all(np.isfinite(v) for v in values):
        raise UsageError(f"{where} {shown} is not a finite number")
    if key == "std" and min(values) <= 0:
        raise UsageError(f"{where} {shown}: a std must be positive (tensor = (pixel - mean) / "
                         "std); for pixels scaled to 0..1 use 255")


def guess_layout(shape: Sequence[int]) -> str:
    """NCHW when the channel axis is plainly second (1x3x224x224), else NHWC."""
    if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    return "NHWC"


MAX_PIXELS = 50_000_000  # an image declaring more is refused before it is decoded
# What image libraries print when a file decodes only in part (libjpeg still returns an image).
_DAMAGE = ("Premature end", "Corrupt JPEG data", "Read Error", "Unexpected end", "truncated",
           "Not a JPEG file", "Invalid JPEG file structure")


def check_pixels(path: Path, max_pixels: float | None = MAX_PIXELS) -> None:
    """InvalidData when the file's header declares more than ``max_pixels`` pixels."""
    from edgekit.image_header import image_size

    try:
        size = image_size(path)
    except OSError as exc:
        raise InvalidData(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if max_pixels and size and size[0] * size[1] > max_pixels:
        width, height = size
        raise InvalidData(
            f"{path}: its header declares {width} x {height} pixels "
            f"({width * height / 1e6:.3g} megapixels; decoding takes about "
            f"{width * height * 3 / 1e9:.2g} GB), more than the limit of "
            f"{max_pixels / 1e6:g} megapixels: pass --max-megapixels "
            f"{-(-width * height // 1_000_000)} if you mean it")


def read_image(path: str | Path, max_pixels: float | None = MAX_PIXELS) -> np.ndarray:
    """Read an image file as a BGR (or grey) uint8 array; InvalidData when it cannot.

    Refused too: an image whose header declares more than ``max_pixels`` pixels (checked
    before decoding; None: no limit), and one that decodes only in part (a truncated JPEG,
    which OpenCV returns with its missing rows grey and a warning on stderr).
    """
    import cv2

    from edgekit.quiet import captured_stderr

    path = Path(path)
    if not path.is_file():
        raise InvalidData(f"{path}: no such image file")
    check_pixels(path, max_pixels)
    with captured_stderr() as said:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    damage = next((line.strip() for line in "".join(said).splitlines()
                   if any(d in line for d in _DAMAGE)), "")
    if image is None:
        raise InvalidData(f"{path}: OpenCV cannot decode it as an image (is it one?"
                          + (f" it says: {damage}" if damage else "") + ")")
    if damage:
        raise InvalidData(f"{path}: the image is damaged ({damage}): only part of it decodes; "
                          "use a complete copy")
    return image


@dataclass(frozen=True)
class Transform:
    """How a frame became the model input: ``input = frame * scale + pad``, per axis.

    ``frame_size`` is the frame's (width, height), used to clip boxes mapped back.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    frame_size: tuple[int, int]

    def boxes_to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) in model-input pixels to frame pixels, clipped to the frame."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y] * 2)
        pad = np.array([self.pad_x, self.pad_y] * 2)
        width, height = self.frame_size
        return np.clip((boxes - pad) / scale, 0, np.array([width, height] * 2, np.float64))

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) in frame pixels to model-input pixels (the inverse, unclipped)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        return boxes * np.array([self.scale_x, self.scale_y] * 2) + np.array(
            [self.pad_x, self.pad_y] * 2)


def letterbox_transform(frame_size: tuple[int, int], size: tuple[int, int]) -> Transform:
    """The transform that fits ``frame_size`` (w, h) into ``size`` (w, h), centred, aspect kept."""
    fw, fh = frame_size
    width, height = size
    scale = min(width / fw, height / fh)
    new_w, new_h = max(1, round(fw * scale)), max(1, round(fh * scale))
    return Transform(scale, scale, (width - new_w) // 2, (height - new_h) // 2, (fw, fh))


def fit(image: np.ndarray, width: int, height: int, mode: str = "stretch",
        fill: int = 114) -> tuple[np.ndarray, Transform]:
    """Resize to width x height, stretched or letterboxed (aspect kept, padded with ``fill``).

    Plain bilinear either way: it matches Coral's reference results, and on the
    bundled detector's clip it scored as well as area averaging.
    """
    import cv2

    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise InvalidData(f"expected an image array HxW or HxWxC, got "
                          f"{getattr(image, 'shape', type(image).__name__)}")
    h, w = image.shape[:2]
    if mode == "stretch":
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return resized.reshape(height, width, *image.shape[2:]), \
            Transform(width / w, height / h, 0.0, 0.0, (w, h))
    if mode != "letterbox":
        raise UsageError(f"unknown resize mode {mode!r}; use stretch or letterbox")
    t = letterbox_transform((w, h), (width, height))
    new_w, new_h = max(1, round(w * t.scale_x)), max(1, round(h * t.scale_y))
    canvas = np.full((height, width, *image.shape[2:]), fill, dtype=image.dtype)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    x, y = int(t.pad_x), int(t.pad_y)
    canvas[y:y + new_h, x:x + new_w] = resized.reshape(new_h, new_w, *image.shape[2:])
    return canvas, t


def convert_color(image_bgr: np.ndarray, color: str) -> np.ndarray:
    """A BGR (or grey) OpenCV image -> HxWxC in the model's colour order."""
    import cv2

    if image_bgr.ndim == 2:
        image_bgr = image_bgr[..., None]
    channels = image_bgr.shape[2]
    if color == "gray":
        if channels == 1:
            return image_bgr
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)[..., None]
    if channels == 1:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    if color == "rgb":
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    return image_bgr


def normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 HxWxC pixels -> float32 (pixel - mean) / std, batch axis and layout added."""
    x = (pixels.astype(np.float32) - np.asarray(spec.mean, np.float32)) / np.asarray(
        spec.std, np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return x[None]


def prepare(image_bgr: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Transform]:
    """One BGR frame -> (the float32 input tensor the spec describes, how it was fitted)."""
    pixels, transform = fit(image_bgr, spec.width, spec.height, spec.resize)
    pixels = convert_color(pixels, spec.color)
    if pixels.shape[2] != spec.channels:
        raise InvalidData(f"the model takes {spec.channels} channel(s); colour order "
                          f"{spec.color!r} gives {pixels.shape[2]}: set the input colour")
    return normalize(pixels, spec), transform


def image_to_tensor(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One BGR frame -> the float32 input tensor (1, ...) the spec describes."""
    return prepare(image_bgr, spec)[0]


def list_images(folder: Path) -> list[Path]:
    """Image files in a folder, sorted by name (not recursive)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
