"""The pixels' way to the tensor: an image read safely (its size checked before it is decoded),
resized to the input by the spec's mode and filter (with the ``Transform`` that maps results back
to the frame), its colours put in order, normalised."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import InvalidData, UsageError
from edgekit.helpers.files import refuse_special
from edgekit.helpers.limits import checked
from edgekit.preprocess.spec import (
    IMAGE_SUFFIXES,
    INTERPOLATIONS,
    PIL_FILTERS,
    InputSpec,
    Resize,
    check_interpolation,
    parse_resize,
)

MAX_PIXELS = 50_000_000  # an image declaring more is refused before it is decoded
# What image libraries print when a file decodes only in part (libjpeg still returns an image).
_DAMAGE = ("Premature end", "Corrupt JPEG data", "Read Error", "Unexpected end", "truncated",
           "Not a JPEG file", "Invalid JPEG file structure")


def check_pixels(path: Path, max_pixels: float | None = MAX_PIXELS) -> None:
    """InvalidData when the file's header declares more than ``max_pixels`` pixels (None: no
    limit of edgekit's own; a limit that is not a finite number above 0 is a UsageError, never
    a guard switched off)."""
    from edgekit.helpers.image_header import image_size
    from edgekit.helpers.limits import MAX_DECODE_PIXELS, finite

    if max_pixels is not None:
        max_pixels = finite(max_pixels, "the limit on an image's pixels", low=0, low_open=True,
                            high=MAX_DECODE_PIXELS)

    try:
        size = image_size(path)
    except OSError as exc:
        raise InvalidData(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if max_pixels is not None and size and size[0] * size[1] > max_pixels:
        width, height = size
        raise InvalidData(
            f"{path}: its header declares {width} x {height} pixels "
            f"({width * height / 1e6:.3g} megapixels; decoding takes about "
            f"{width * height * 3 / 1e9:.2g} GB), more than the limit of "
            f"{max_pixels / 1e6:g} megapixels: pass --max-megapixels "
            f"{-(-width * height // 1_000_000)} if you mean it")


@checked
def read_image(path: str | Path, max_pixels: float | None = MAX_PIXELS) -> np.ndarray:
    """Read an image file as a BGR (or grey) uint8 array; InvalidData when it cannot.

    Refused too: an image whose header declares more than ``max_pixels`` pixels (checked
    before decoding; None: no limit), and one that decodes only in part (a truncated JPEG,
    which OpenCV returns with its missing rows grey and a warning on stderr).
    """
    import cv2

    from edgekit.helpers.quiet import captured_stderr

    path = Path(path)
    refuse_special(path, "image")
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


def crop_box(frame_size: tuple[int, int], size: tuple[int, int],
             fraction: float = 1.0) -> tuple[int, int, int, int]:
    """The centred crop (x, y, width, height) of a ``frame_size`` (w, h) frame that
    ``center-crop:FRACTION`` resizes to ``size`` (w, h).

    At fraction 1 it is the largest centred region with the input's aspect ratio, computed as
    keras.utils.load_img(keep_aspect_ratio=True) does; a smaller fraction keeps that share of
    it on each side, with the margins of tf.image.central_crop (so a frame that already has the
    input's aspect ratio is cropped exactly as central_crop crops it).
    """
    fw, fh = frame_size
    width, height = size
    region_w, region_h = min(fw, fh * width // height), min(fh, fw * height // width)
    region_w, region_h = max(1, region_w), max(1, region_h)
    margin_x = int((region_w - region_w * fraction) / 2)
    margin_y = int((region_h - region_h * fraction) / 2)
    crop_w, crop_h = max(1, region_w - 2 * margin_x), max(1, region_h - 2 * margin_y)
    return (fw - region_w) // 2 + margin_x, (fh - region_h) // 2 + margin_y, crop_w, crop_h


def shorter_side_size(frame_size: tuple[int, int], side: int) -> tuple[int, int]:
    """The (w, h) a frame is resized to so that its shorter side is ``side`` pixels, the longer
    one in proportion, rounded down (as torchvision's Resize(side) does)."""
    fw, fh = frame_size
    if fw <= fh:
        return side, int(side * fh / fw)
    return int(side * fw / fh), side


def _resize(image: np.ndarray, width: int, height: int, interpolation: str,
            antialias: bool = False) -> np.ndarray:
    check_interpolation(interpolation, "interpolation")
    if antialias:
        image_module = pillow().Image
        flag = getattr(image_module.Resampling, PIL_FILTERS[interpolation])
        planes = np.ascontiguousarray(image.reshape(*image.shape[:2], -1))
        if planes.dtype == np.uint8 and planes.shape[2] in (1, 3):  # one call: L or RGB
            whole = planes[..., 0] if planes.shape[2] == 1 else planes
            resized = np.asarray(image_module.fromarray(whole).resize((width, height), flag))
        else:  # each channel on its own, as PIL does within an image
            resized = np.stack([np.asarray(image_module.fromarray(
                np.ascontiguousarray(planes[..., c])).resize((width, height), flag))
                for c in range(planes.shape[2])], axis=2)
        return resized.reshape(height, width, *image.shape[2:])
    import cv2

    flag = getattr(cv2, INTERPOLATIONS[interpolation])
    resized = cv2.resize(image, (width, height), interpolation=flag)
    return resized.reshape(height, width, *image.shape[2:])


def pillow():
    """The PIL package, for --antialias; EdgekitError with the fix when it is not installed."""
    try:
        import PIL.Image
    except ImportError:
        from edgekit.errors import EdgekitError

        raise EdgekitError("--preprocess antialias=on resamples with Pillow's filters, and Pillow "
                           "is not installed here: pip install pillow (or 'edgekit[pillow]')"
                           ) from None
    return PIL


def fit(image: np.ndarray, width: int, height: int, mode: str | Resize = "stretch",
        interpolation: str = "bilinear", fill: int = 114,
        antialias: bool = False) -> tuple[np.ndarray, Transform]:
    """Bring an image to width x height the way ``mode`` says, with the ``interpolation``
    filter; return it with the Transform that maps its pixels back to the image's.

    stretch: resized to the size. letterbox: aspect kept, centred, padded with ``fill``.
    center-crop[:F]: the centred region with the input's aspect ratio (F of it on each side),
    resized. shorter-side[:N]: resized so the shorter side is N (default the input's larger
    side), then the centre cropped, as torchvision's Resize(N) + CenterCrop does.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise InvalidData(f"expected an image array HxW or HxWxC, got "
                          f"{getattr(image, 'shape', type(image).__name__)}")
    resize = mode if isinstance(mode, Resize) else parse_resize(mode, "resize")
    h, w = image.shape[:2]
    if resize.mode == "stretch":
        return _resize(image, width, height, interpolation, antialias), \
            Transform(width / w, height / h, 0.0, 0.0, (w, h))
    if resize.mode == "letterbox":
        t = letterbox_transform((w, h), (width, height))
        new_w, new_h = max(1, round(w * t.scale_x)), max(1, round(h * t.scale_y))
        canvas = np.full((height, width, *image.shape[2:]), fill, dtype=image.dtype)
        x, y = int(t.pad_x), int(t.pad_y)
        canvas[y:y + new_h, x:x + new_w] = _resize(image, new_w, new_h, interpolation, antialias)
        return canvas, t
    if resize.mode == "center-crop":
        x, y, cw, ch = crop_box((w, h), (width, height), resize.value or 1.0)
        sx, sy = width / cw, height / ch
        return _resize(image[y:y + ch, x:x + cw], width, height, interpolation,
                    antialias), \
            Transform(sx, sy, -x * sx, -y * sy, (w, h))
    side = int(resize.value) if resize.value else max(width, height)
    if side < max(width, height):
        raise UsageError(f"resize {resize}: the shorter side must become at least "
                         f"{max(width, height)} pixels to crop a {width}x{height} input")
    new_w, new_h = shorter_side_size((w, h), side)
    left, top = int(round((new_w - width) / 2.0)), int(round((new_h - height) / 2.0))
    resized = _resize(image, new_w, new_h, interpolation, antialias)
    return resized[top:top + height, left:left + width], \
        Transform(new_w / w, new_h / h, -float(left), -float(top), (w, h))


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
    if spec.color == "gray":  # to grey first, then resized: as PIL pipelines do, and cheaper
        image_bgr = convert_color(image_bgr, "gray")
    pixels, transform = fit(image_bgr, spec.width, spec.height, spec.resize, spec.interpolation,
                            antialias=spec.antialias)
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
