"""The input spec's resize modes and filters against the libraries people match: pycoral's own
test (PIL NEAREST), PIL and OpenCV on a synthetic checkerboard, Keras' load_img, TF's
central_crop, torchvision's Resize + CenterCrop arithmetic; and the spec's bad values."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_error, run_cli

from edgekit.errors import UsageError
from edgekit.preprocess import (
    INTERPOLATIONS,
    PIL_FILTERS,
    REFERENCES,
    InputSpec,
    SpecOptions,
    apply_options,
    crop_box,
    fit,
    parse_resize,
    prepare,
)

Image = pytest.importorskip("PIL.Image", reason="the references are Pillow's (dev extra)")

MOBILENET = "mobilenet_v1_0.5_160_quant.tflite"
EGYPTIAN_CAT = 286


def board(width: int, height: int, cell: int = 4) -> np.ndarray:
    """A colour checkerboard with a ramp: every filter and rounding shows on it."""
    y, x = np.mgrid[0:height, 0:width]
    check = ((x // cell + y // cell) % 2).astype(np.uint8)
    return np.stack([check * 255, (1 - check) * 200 + 20,
                     (x * 255 // (width - 1)).astype(np.uint8)], axis=2)


def pil(image: np.ndarray, size: tuple[int, int], name: str,
        box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """PIL's resize of ``image`` (optionally a crop x, y, w, h of it) with the filter ``name``
    stands for."""
    picture = Image.fromarray(image)
    if box is not None:
        x, y, w, h = box
        picture = picture.crop((x, y, x + w, y + h))
    return np.asarray(picture.resize(size, getattr(Image.Resampling, PIL_FILTERS[name])))


def opencv(image: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    return cv2.resize(image, size, interpolation=getattr(cv2, INTERPOLATIONS[name]))


# ------------------------------------------------------------------ pycoral's own test


def test_pycoral_classify_test_passes(coral: Path) -> None:
    """tests/classify_test.py::test_mobilenet_v1_050_160, on the CPU model: Egyptian cat with a
    score above 0.67 once the photo is resized as pycoral resizes it (PIL NEAREST)."""
    for flags in (["--preprocess", "interpolation=nearest,resize=stretch"],
                  ["--preprocess", "reference=pycoral"]):
        result = run_cli("classify", coral / MOBILENET, coral / "cat.bmp", "--labels",
                         coral / "imagenet_labels.txt", "--json", *flags)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        best = report["results"][0]["classes"][0]
        assert best["id"] == EGYPTIAN_CAT and best["label"] == "Egyptian cat"
        assert best["score"] > 0.67, best
        assert report["input"]["interpolation"] == "nearest"
        assert report["input"]["resize"] == "stretch"


def test_pycoral_tensor_is_pil_nearest_byte_for_byte(coral: Path) -> None:
    """edgekit's tensor for cat.bmp, quantised as the uint8 input takes it, is exactly what
    pycoral's test feeds: Image.open(path).resize(size, Image.NEAREST)."""
    from edgekit.bundle.quant import quantize
    from edgekit.model import load_model
    from edgekit.preprocess import read_image

    with load_model(coral / MOBILENET, spec=SpecOptions(reference="pycoral")) as model:
        tensor = model.tensor(read_image(coral / "cat.bmp"))
        fed = quantize(tensor, model.backend.inputs[0])
    expected = np.asarray(Image.open(coral / "cat.bmp").resize((160, 160), Image.NEAREST))
    assert fed.dtype == np.uint8 and fed.shape == (1, 160, 160, 3)
    assert np.array_equal(fed[0], expected)


def test_pycoral_example_is_pil_lanczos_byte_for_byte(coral: Path) -> None:
    """examples/classify_image.py: convert('RGB').resize(size, Image.LANCZOS), mean/std 128."""
    from edgekit.bundle.quant import quantize
    from edgekit.model import load_model
    from edgekit.preprocess import read_image

    with load_model(coral / MOBILENET, spec=SpecOptions(reference="pycoral-example")) as model:
        fed = quantize(model.tensor(read_image(coral / "cat.bmp")), model.backend.inputs[0])
        assert model.spec.antialias and model.spec.interpolation == "lanczos"
    expected = np.asarray(Image.open(coral / "cat.bmp").convert("RGB").resize(
        (160, 160), Image.LANCZOS))
    assert np.array_equal(fed[0], expected)


# ------------------------------------------------------------------ every filter, every mode

# Where OpenCV and PIL disagree, the most they differ on the checkerboard (max |diff| of 0..255
# pixels): OpenCV's filters do not widen when shrinking, and its bicubic (a=-0.75) and
# Lanczos (4 lobes) are not PIL's (a=-0.5, 3 lobes). The README's table has these figures.
UPSCALE_TOLERANCE = {"nearest": 0, "bilinear": 1, "area": 128, "bicubic": 18, "lanczos": 26}
SHRINK_TOLERANCE = {"nearest": 0, "bilinear": 110, "area": 68, "bicubic": 107, "lanczos": 102}


@pytest.mark.parametrize("name", list(INTERPOLATIONS))
@pytest.mark.parametrize("size", [(32, 24), (200, 150)], ids=["shrink", "enlarge"])
def test_each_filter_against_opencv_and_pil(name: str, size: tuple[int, int]) -> None:
    image = board(97, 61)
    plain, _ = fit(image, *size, "stretch", name)
    antialiased, _ = fit(image, *size, "stretch", name, antialias=True)
    assert np.array_equal(plain, opencv(image, size, name))  # OpenCV's filter, exactly
    assert np.array_equal(antialiased, pil(image, size, name))  # PIL's filter, exactly
    gap = int(np.abs(plain.astype(int) - pil(image, size, name).astype(int)).max())
    tolerance = (SHRINK_TOLERANCE if size[0] < image.shape[1] else UPSCALE_TOLERANCE)[name]
    assert gap <= tolerance
    if name == "nearest":  # the libraries agree: PIL's NEAREST is OpenCV's NEAREST_EXACT
        assert np.array_equal(plain, antialiased)


def test_area_is_pil_box_when_shrinking_by_a_whole_factor() -> None:
    image = board(96, 64)
    plain, _ = fit(image, 48, 32, "stretch", "area")
    assert np.array_equal(plain, pil(image, (48, 32), "area"))


@pytest.mark.parametrize("name", list(INTERPOLATIONS))
@pytest.mark.parametrize("antialias", [False, True])
def test_center_crop_is_keras_keep_aspect_ratio(name: str, antialias: bool) -> None:
    """center-crop: the centred region with the input's aspect ratio (keras.utils.load_img
    with keep_aspect_ratio=True computes it so), then the filter."""
    image = board(97, 61)
    size = (40, 40)
    got, t = fit(image, *size, "center-crop", name, antialias=antialias)
    width, height = 97, 61
    crop_h = min(height, width * size[1] // size[0])  # keras' arithmetic, transcribed
    crop_w = min(width, height * size[0] // size[1])
    box = ((width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h)
    assert crop_box((width, height), size) == box
    x, y, w, h = box
    expected = pil(image, size, name, box) if antialias else \
        opencv(image[y:y + h, x:x + w], size, name)
    assert np.array_equal(got, expected)
    # the transform maps the crop's corners onto the input's
    corners = t.boxes_to_input(np.array([[x, y, x + w, y + h]]))[0]
    assert np.allclose(corners, [0, 0, 40, 40])


def test_center_crop_matches_keras_load_img(coral: Path) -> None:
    keras_image = pytest.importorskip("keras.utils")
    expected = np.asarray(keras_image.load_img(coral / "cat.bmp", target_size=(128, 96),
                                               keep_aspect_ratio=True))
    spec = InputSpec((1, 128, 96, 3), resize="center-crop", interpolation="nearest")
    pixels = prepare(cv2.imread(str(coral / "cat.bmp")), spec)[0][0] * 255
    assert np.array_equal(np.rint(pixels).astype(np.uint8), expected)


def test_center_crop_fraction_is_tf_central_crop() -> None:
    """On a frame with the input's aspect ratio, center-crop:F keeps what
    tf.image.central_crop(image, F) keeps: margins int((side - side * F) / 2)."""
    for side, fraction in [(341, 0.875), (512, 0.875), (97, 0.5), (61, 0.33)]:
        start = int((side - side * fraction) / 2)  # central_crop's arithmetic
        assert crop_box((side, side), (10, 10), fraction) == \
            (start, start, side - 2 * start, side - 2 * start)


@pytest.mark.parametrize("name", list(INTERPOLATIONS))
def test_shorter_side_is_torchvision_resize_then_center_crop(name: str) -> None:
    """shorter-side:N: Resize(N) (the longer side int(N * long / short)) then CenterCrop
    (offsets int(round((size - crop) / 2)))."""
    image = board(97, 61)
    got, t = fit(image, 48, 48, "shorter-side:50", name, antialias=True)
    new_w, new_h = int(50 * 97 / 61), 50
    left, top = int(round((new_w - 48) / 2.0)), int(round((new_h - 48) / 2.0))
    expected = pil(image, (new_w, new_h), name)[top:top + 48, left:left + 48]
    assert np.array_equal(got, expected)
    plain, _ = fit(image, 48, 48, "shorter-side:50", name)
    assert np.array_equal(plain, opencv(image, (new_w, new_h), name)[top:top + 48,
                                                                    left:left + 48])
    assert np.allclose(t.boxes_to_frame(np.array([[0, 0, 48, 48]]))[0],
                       [left * 97 / new_w, top * 61 / new_h, (left + 48) * 97 / new_w,
                        (top + 48) * 61 / new_h])


@pytest.mark.parametrize("name", list(INTERPOLATIONS))
def test_letterbox_keeps_the_aspect_ratio_with_each_filter(name: str) -> None:
    image = board(97, 61)
    got, t = fit(image, 64, 64, "letterbox", name)
    inner_h = round(61 * 64 / 97)
    top = (64 - inner_h) // 2
    assert np.array_equal(got[top:top + inner_h], opencv(image, (64, inner_h), name))
    assert (got[:top] == 114).all() and (got[top + inner_h:] == 114).all()
    assert t.pad_y == top and t.scale_x == t.scale_y


def test_gray_is_converted_before_the_resize() -> None:
    """As PIL pipelines do (load_img(color_mode='grayscale') converts, then resizes)."""
    image = board(97, 61)
    spec = InputSpec((1, 20, 30, 1), color="gray", mean=(0.0,), std=(1.0,),
                     interpolation="bilinear", antialias=True)
    tensor = prepare(image, spec)[0][0, ..., 0]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(tensor.astype(np.uint8), pil(gray, (30, 20), "bilinear"))


# ------------------------------------------------------------------ the spec and its origins


def test_references_set_what_they_name_and_flags_win() -> None:
    spec = InputSpec((1, 224, 224, 3), mean=(0.0,) * 3, std=(255.0,) * 3,
                     origin={"mean": "bundle", "std": "bundle", "color": "bundle"})
    caffe = apply_options(spec, SpecOptions(reference="keras-applications:caffe"))
    assert caffe.color == "bgr" and caffe.mean == (103.939, 116.779, 123.68)
    assert caffe.std == (1.0, 1.0, 1.0) and caffe.interpolation == "nearest"
    assert caffe.origin["mean"] == "reference keras-applications:caffe"
    assert "mean 103.939,116.779,123.68 (keras-applications:caffe)" in caffe.describe()
    torch = apply_options(spec, SpecOptions(reference="keras-applications:torch",
                                            interpolation="bicubic"))
    assert torch.interpolation == "bicubic" and torch.origin["interpolation"] == "flag"
    assert np.allclose(np.array(torch.mean) / 255, [0.485, 0.456, 0.406])
    pycoral = apply_options(spec, SpecOptions(reference="pycoral"))
    assert pycoral.mean == spec.mean and pycoral.origin["mean"] == "bundle"  # the model's own
    assert set(REFERENCES) >= {"pycoral", "keras-applications:tf"}


def test_manifest_spec_round_trips_and_old_ones_read_as_bilinear() -> None:
    spec = InputSpec((1, 8, 8, 3), resize="center-crop:0.875", interpolation="area",
                     antialias=True)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    old = spec.to_dict()
    del old["interpolation"], old["antialias"]
    assert InputSpec.from_dict(old).interpolation == "bilinear"
    assert not InputSpec.from_dict(old).antialias


@pytest.mark.parametrize("text, words", [
    ("crop", "unknown resize mode"), ("center-crop:0", "(0, 1]"),
    ("center-crop:1.5", "(0, 1]"), ("center-crop:-0.2", "(0, 1]"),
    ("center-crop:x", "(0, 1]"), ("shorter-side:0", "whole number"),
    ("shorter-side:12.5", "whole number"), ("letterbox:2", "takes no value"),
])
def test_bad_resize_modes(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace("]", r"\]")):
        parse_resize(text)


def test_the_shorter_side_must_cover_the_input() -> None:
    with pytest.raises(UsageError, match="at least 224"):
        InputSpec((1, 224, 224, 3), resize="shorter-side:200", origin={"resize": "flag"})


@pytest.mark.parametrize("flags, words", [
    (["--preprocess", "interpolation=cubic"], ["--preprocess interpolation", "cubic"]),
    (["--preprocess", "resize=zoom"], ["--preprocess resize", "unknown resize mode"]),
    (["--preprocess", "resize=center-crop:0"], ["--preprocess resize", "(0, 1]"]),
    (["--preprocess", "resize=center-crop:1.01"], ["--preprocess resize", "(0, 1]"]),
    (["--preprocess", "reference=keras"], ["--preprocess reference", "keras-applications:caffe"]),
    (["--preprocess", "resize=shorter-side:100"], ["--preprocess resize", "at least 160"]),
    (["--preprocess", "reference=keras-applications:caffe,color=gray"],
     ["--preprocess color", "3 channel"]),
])
def test_bad_spec_flags_are_one_line_exit_2(coral: Path, flags: list[str],
                                            words: list[str]) -> None:
    result = run_cli("classify", coral / MOBILENET, coral / "cat.bmp", *flags)
    assert result.returncode == 2, result.stderr
    assert_clean_error(result, *words)
