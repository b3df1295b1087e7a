"""What a model takes, and how a picture becomes it: the input spec.

An ``InputSpec`` says what the model takes: shape (NHWC or NCHW), colour order,
normalisation ``tensor = (pixel - mean) / std`` with pixels in 0..255, and how a
picture of another size becomes the input's size: the resize mode (stretch,
letterbox, center-crop[:FRACTION], shorter-side[:N]) and the interpolation
(nearest, bilinear, area, bicubic, lanczos). It lives in the bundle manifest, so
a device needs no training code to feed the model. Quantisation to the
artifact's integer type is not done here but at the backend boundary
(``edgekit.bundle.quant``), so one spec serves every format.

``SpecOptions`` is what a person asks for on top of a model's own spec (flags,
or a named reference pipeline such as pycoral's tests); ``REFERENCES`` lists
those presets. The pixels' way to the tensor is ``edgekit.preprocess.image``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edgekit.errors import UsageError
from edgekit.helpers.limits import MAX_SIDE, check_image_shape
from edgekit.helpers.records import keyword_only
from edgekit.helpers.schema import record

COLORS = ("rgb", "bgr", "gray")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
RESIZE_MODES = ("stretch", "letterbox", "center-crop", "shorter-side")
# Each name is one OpenCV filter. nearest is INTER_NEAREST_EXACT, which picks the source pixel
# under each output pixel's centre, as PIL's NEAREST does (byte for byte); OpenCV's plain
# INTER_NEAREST picks the one up and left of it instead.
INTERPOLATIONS = {"nearest": "INTER_NEAREST_EXACT", "bilinear": "INTER_LINEAR",
                  "area": "INTER_AREA", "bicubic": "INTER_CUBIC", "lanczos": "INTER_LANCZOS4"}
# With antialias, Pillow resamples: the filter widens with the scale when shrinking, the cubic is
# Keys' a=-0.5 and Lanczos has 3 lobes (OpenCV's: a=-0.75, 4 lobes, and no widening). This is
# what PIL pipelines (pycoral's examples, keras.utils.load_img, torchvision) and
# tf.image.resize(antialias=True) do.
PIL_FILTERS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "area": "BOX", "bicubic": "BICUBIC",
               "lanczos": "LANCZOS"}
RESIZE_HELP = ("stretch (to the input size), letterbox (aspect kept, padded), "
               "center-crop[:FRACTION] (the centred region with the input's aspect ratio, that "
               "share of it, default 1, then resized), shorter-side[:N] (the shorter side "
               "resized to N pixels, default the input's larger side, then the centre cropped)")


@dataclass(frozen=True)
class Resize:
    """A resize mode and its value: ``center-crop:0.875`` is ("center-crop", 0.875)."""

    mode: str = "stretch"
    value: float | None = None  # the crop fraction, or the shorter side in pixels

    def __str__(self) -> str:
        if self.value is None:
            return self.mode
        return f"{self.mode}:{self.value:g}"


def parse_resize(text: str, where: str = "--preprocess resize") -> Resize:
    """``stretch``, ``letterbox``, ``center-crop[:FRACTION]`` or ``shorter-side[:N]``;
    a UsageError naming ``where`` (the flag or the setting) for anything else."""
    mode, _, value = str(text).strip().partition(":")
    choices = "stretch, letterbox, center-crop[:FRACTION] or shorter-side[:N]"
    if mode not in RESIZE_MODES:
        raise UsageError(f"{where} {text!r}: unknown resize mode; use {choices}")
    if not value:
        return Resize(mode)
    if mode in ("stretch", "letterbox"):
        raise UsageError(f"{where} {text!r}: {mode} takes no value; use {choices}")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if mode == "center-crop" and not 0 < number <= 1:
        raise UsageError(f"{where} {text!r}: the crop fraction must be in (0, 1], e.g. "
                         "center-crop:0.875 (the central 87.5%)")
    if mode == "shorter-side" and not (1 <= number <= MAX_SIDE and number == int(number)):
        raise UsageError(f"{where} {text!r}: the shorter side takes a whole number of pixels "
                         f"from 1 to {MAX_SIDE} (the largest image side edgekit makes), e.g. "
                         "shorter-side:256")
    return Resize(mode, number if mode == "center-crop" else float(int(number)))


def check_interpolation(name: str, where: str = "--preprocess interpolation") -> str:
    if name not in INTERPOLATIONS:
        raise UsageError(f"{where} {name!r}: unknown interpolation; use "
                         f"{', '.join(INTERPOLATIONS)}")
    return name


SPEC_KEYS = ("color", "mean", "std", "resize", "interpolation", "antialias")


@dataclass(frozen=True)
class InputSpec:
    """The model input and how to make it from a picture."""

    shape: tuple[int, ...]  # with batch 1, e.g. (1, 32, 32, 1)
    layout: str = "NHWC"
    color: str = "rgb"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (255.0,)
    resize: str = "stretch"  # see RESIZE_HELP; parsed by parse_resize
    dtype: str = "float32"
    name: str = ""
    interpolation: str = "bilinear"  # see INTERPOLATIONS
    antialias: bool = False  # resample with Pillow's filters (see PIL_FILTERS)
    extra: dict = field(default_factory=dict, compare=False)
    # Where each value came from, by field name: "model card", "flag", "default", "model",
    # "bundle", "reference NAME".
    origin: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise UsageError(f"{self.setting_name('color')} {self.color!r}: unknown colour order; "
                             f"choose from {', '.join(COLORS)}")
        if self.layout not in ("NHWC", "NCHW"):
            raise UsageError(f"unknown layout {self.layout!r}; use NHWC or NCHW")
        if len(self.shape) != 4:
            raise UsageError(f"an image model takes a 4-D input (N, H, W, C); got {self.shape}")
        check_image_shape(self.shape, "the model's input shape")  # before anything allocates
        for key in ("mean", "std"):
            check_normalisation(key, getattr(self, key), self.channels, self.origin.get(key))
        check_interpolation(self.interpolation, self.setting_name("interpolation"))
        resize = parse_resize(self.resize, self.setting_name("resize"))
        if resize.mode == "shorter-side" and resize.value is not None and \
                resize.value < max(self.height, self.width):
            raise UsageError(f"{self.setting_name('resize')} {self.resize!r}: the model input is "
                             f"{self.width}x{self.height}, so the shorter side must become at "
                             f"least {max(self.height, self.width)} pixels before the centre "
                             "is cropped")

    def setting_name(self, key: str) -> str:
        """How a person names this setting: the flag, the model card's key, or the key."""
        return setting_name(key, self.origin.get(key))

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

    @property
    def resize_mode(self) -> Resize:
        return parse_resize(self.resize)

    def pixel_range(self) -> tuple[float, float]:
        """What 0..255 pixels become under this spec: the lowest and highest tensor value."""
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        ends = np.concatenate([(0.0 - mean) / std, (255.0 - mean) / std])
        return float(ends.min()), float(ends.max())

    def describe(self) -> str:
        """One line: colour, mean, std, resize, interpolation, each with where it came from."""
        def show(key: str, value: object) -> str:
            if isinstance(value, tuple):
                value = ",".join(f"{v:g}" for v in (value[:1] if len(set(value)) == 1 else value))
            if isinstance(value, bool):
                value = "on" if value else "off"
            where = self.origin.get(key, "").removeprefix("reference ")
            return f"{key} {value}" + (f" ({where})" if where else "")

        size = "x".join(str(d) for d in self.sample_shape)
        lo, hi = self.pixel_range()
        keys = [k for k in SPEC_KEYS if k != "antialias" or self.antialias]
        return (f"input {size} {self.layout}: " + ", ".join(
            show(k, getattr(self, k)) for k in keys)
            + f"; pixels 0..255 become {lo:g}..{hi:g}")

    def to_dict(self) -> dict:
        data = {"shape": list(self.shape), "layout": self.layout, "color": self.color,
                "mean": list(self.mean), "std": list(self.std), "resize": self.resize,
                "interpolation": self.interpolation, "antialias": self.antialias,
                "dtype": self.dtype, "name": self.name}
        if self.origin:
            data["origin"] = dict(self.origin)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        """The spec a manifest holds, each value checked against its field (a SchemaError
        names the one that is wrong); keys a newer edgekit may add are left alone. Bundles
        written before interpolation was recorded get the default, bilinear, as they were."""
        return record(cls, data, unknown="ignore", skip=("extra",))


ORIGIN_FLAGS = {key: f"--preprocess {key}" for key in
                ("mean", "std", "color", "resize", "interpolation", "antialias")}


def setting_name(key: str, origin: str | None) -> str:
    """How a person names a setting: its flag, the model card's key, the reference's value."""
    if origin and origin.startswith("reference "):
        return f"{key} of --preprocess reference={origin.split(' ', 1)[1]}"
    return {"flag": ORIGIN_FLAGS.get(key, key), "model card": f"{key} in the model card",
            "bundle": f"{key} in the bundle's manifest"}.get(origin or "", key)


# ---------------------------------------------------------------------------- references


@dataclass(frozen=True)
class Reference:
    """A named reference pipeline: the spec values it fixes (None: the model's own)."""

    name: str
    source: str  # where the pipeline is written down
    resize: str | None = None
    interpolation: str | None = None
    color: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    antialias: bool | None = None

    def values(self) -> dict:
        return {k: getattr(self, k) for k in SPEC_KEYS if getattr(self, k) is not None}


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
REFERENCES = {r.name: r for r in (
    Reference("pycoral", "pycoral's tests (tests/classify_test.py): PIL resize with NEAREST to "
              "the input size, RGB, pixels into the uint8 input as they are (mean/std: the "
              "model's own input quantisation)", "stretch", "nearest", "rgb"),
    Reference("pycoral-example", "pycoral's examples/classify_image.py: PIL resize with LANCZOS, "
              "RGB, mean 128, std 128", "stretch", "lanczos", "rgb", (128.0,), (128.0,), True),
    Reference("keras-applications:caffe", "keras.applications preprocess_input(mode='caffe') "
              "after keras.utils.load_img(target_size=...) (NEAREST): BGR, minus the ImageNet "
              "mean 103.939,116.779,123.68 (VGG, ResNet50)", "stretch", "nearest", "bgr",
              (103.939, 116.779, 123.68), (1.0,)),
    Reference("keras-applications:tf", "keras.applications preprocess_input(mode='tf') after "
              "load_img (NEAREST): RGB scaled to -1..1 (MobileNet, Inception, Xception)",
              "stretch", "nearest", "rgb", (127.5,), (127.5,)),
    Reference("keras-applications:torch", "keras.applications preprocess_input(mode='torch') "
              "after load_img (NEAREST): RGB / 255, then the ImageNet mean and std (DenseNet)",
              "stretch", "nearest", "rgb", tuple(round(255 * m, 4) for m in _IMAGENET_MEAN),
              tuple(round(255 * s, 4) for s in _IMAGENET_STD)),
)}


def reference(name: str) -> Reference:
    if name not in REFERENCES:
        hint = " (give the preprocess_input style: keras-applications:caffe, :tf or :torch)" \
            if name == "keras-applications" else ""
        raise UsageError(f"reference {name!r}: unknown reference pipeline{hint}; choose from "
                         f"{', '.join(REFERENCES)}", param="reference")
    return REFERENCES[name]


@keyword_only
@dataclass(frozen=True)
class SpecOptions:
    """What a person asks for on top of a model's own input spec: a reference pipeline, and
    single values (flags), which win over the reference's. None: keep the model's."""

    reference: str | None = None
    color: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str | None = None
    interpolation: str | None = None
    antialias: bool | None = None

    def __post_init__(self) -> None:  # bad values are refused before any model loads
        if self.reference is not None:
            reference(self.reference)
        if self.resize is not None:
            parse_resize(self.resize)
        if self.interpolation is not None:
            check_interpolation(self.interpolation)
        if self.color is not None and self.color not in COLORS:
            raise UsageError(f"color {self.color!r}: unknown colour order; choose from "
                             f"{', '.join(COLORS)}", param="color")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None:
                check_normalisation(key, values, len(values), "flag")

    def given(self) -> dict[str, tuple[object, str]]:
        """Each value asked for, with its origin: the flags over the reference's."""
        out: dict[str, tuple[object, str]] = {}
        if self.reference is not None:
            out = {k: (v, f"reference {self.reference}")
                   for k, v in reference(self.reference).values().items()}
        for key in SPEC_KEYS:
            if getattr(self, key) is not None:
                out[key] = (getattr(self, key), "flag")
        return out


def apply_options(spec: InputSpec, options: SpecOptions | None) -> InputSpec:
    """``spec`` with what ``options`` asks for; a single mean/std value is spread over every
    channel, and ``origin`` says which values the options set."""
    given = options.given() if options is not None else {}
    if not given:
        return spec
    values = {}
    for key, (value, _) in given.items():
        if key in ("mean", "std"):
            value = tuple(float(v) for v in value)
            if len(value) == 1:
                value = value * spec.channels
        if key == "resize":
            value = str(parse_resize(value, setting_name(key, given[key][1])))
        if key == "color" and (spec.channels == 1) != (value == "gray"):
            raise UsageError(f"{setting_name(key, given[key][1])} {value}: the model takes "
                             f"{spec.channels} channel(s); gray is for one, rgb and bgr for "
                             "three")
        values[key] = value
    origin = {**spec.origin, **{key: where for key, (_, where) in given.items()}}
    return replace(spec, **values, origin=origin)


def check_normalisation(key: str, values: Sequence[float], channels: int,
                        origin: str | None = None) -> None:
    """Refuse a mean/std that cannot be right: wrong length, not finite, a std <= 0.

    ``origin`` ("flag", "model card", ...) goes into the message, so the person
    knows which setting to fix.
    """
    where = setting_name(key, origin)
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
