"""Detection scenes made of real material that ships inside Python packages.

Real handwritten digits (scikit-learn's ``load_digits``: 1797 8x8 scans) are
scaled up and blended as ink strokes onto real photos (``skimage.data`` and
scikit-learn's sample images), giving RGB scenes with known boxes and classes.

Two disjoint splits keep the held-out numbers honest: ``"train"`` and
``"test"`` use different digit scans (a stratified 80/20 split) and different
photos. Everything is drawn from a ``numpy.random.Generator`` passed in, so a
seed fixes every scene. Imports only numpy, OpenCV, scikit-learn and
scikit-image: never TensorFlow.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SPLIT_SEED = 1797  # the number of scans in load_digits: fixes the digit split forever
TEST_FRACTION = 0.2
# Photos for training scenes and, disjoint, for held-out scenes. Left out: "cat" (it is
# "chelsea" again) and "text" (handwritten characters, digits among them, no labels).
TRAIN_PHOTOS = (
    "astronaut", "chelsea", "rocket", "china.jpg", "camera", "immunohistochemistry",
    "hubble_deep_field", "retina", "stereo_motorcycle", "grass", "gravel", "coins", "moon",
    "colorwheel", "page",
)
TEST_PHOTOS = ("coffee", "flower.jpg", "brick", "cell")
LABELS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class Scene:
    """One composed scene: an RGB image and its ground truth.

    ``boxes`` is float32 (K, 4) as x1, y1, x2, y2 in pixels (x2, y2 exclusive: the
    tight box of the visible stroke); ``classes`` is int64 (K,) with the digit value.
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class Digit:
    """One digit scan: ink coverage in [0, 1] (8x8 float32) and its value."""

    ink: np.ndarray
    value: int


def _photo(name: str) -> np.ndarray:
    """Load one bundled photo as RGB uint8."""
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name)
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


@functools.cache
def photos(split: str) -> tuple[np.ndarray, ...]:
    """The background photos of one split ("train", "test" or "all")."""
    names = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS, "all": TRAIN_PHOTOS + TEST_PHOTOS}
    return tuple(_photo(name) for name in names[split])


@functools.cache
def digits(split: str) -> tuple[Digit, ...]:
    """The digit scans of one split ("train", "test" or "all"), stratified by value."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(data.target), dtype=bool)
    for value in range(10):
        members = np.flatnonzero(data.target == value)
        test[rng.choice(members, round(len(members) * TEST_FRACTION), replace=False)] = True
    keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
    ink = (data.images / 16.0).astype(np.float32)
    return tuple(Digit(ink[i], int(data.target[i])) for i in np.flatnonzero(keep))


def random_digit(rng: np.random.Generator, split: str) -> Digit:
    """One digit scan drawn at random from a split."""
    pool = digits(split)
    return pool[int(rng.integers(len(pool)))]


def background(rng: np.random.Generator, photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A random crop of ``photo`` resized to ``size`` (width, height), maybe mirrored."""
    import cv2

    width, height = size
    ph, pw = photo.shape[:2]
    aspect = width / height
    crop_h = int(rng.uniform(0.35, 1.0) * min(ph, pw / aspect))
    crop_w = min(pw, max(8, int(crop_h * aspect)))
    y = int(rng.integers(0, ph - crop_h + 1))
    x = int(rng.integers(0, pw - crop_w + 1))
    crop = photo[y:y + crop_h, x:x + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_AREA)
    gain = rng.uniform(0.75, 1.25)
    return np.clip(out.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def render_ink(digit: Digit, width: int, height: int) -> np.ndarray:
    """The digit's ink coverage scaled to ``height`` x ``width``, strokes made bolder."""
    import cv2

    alpha = cv2.resize(digit.ink, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip((alpha - 0.15) / 0.55, 0.0, 1.0)


def ink_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """An RGB ink colour that stands out from the mean colour of ``under``."""
    luma = float(under.reshape(-1, 3).mean(axis=0) @ np.array([0.299, 0.587, 0.114]))
    if luma > 128:
        base = rng.uniform(0, max(10.0, luma - 110))
    else:
        base = rng.uniform(min(245.0, luma + 110), 255)
    tint = rng.uniform(-40, 40, size=3)
    return np.clip(base + tint, 0, 255).astype(np.float32)


def paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray, x: int, y: int) -> None:
    """Blend ``colour`` into ``image`` in place through ``alpha`` at (x, y)."""
    h, w = alpha.shape
    region = image[y:y + h, x:x + w].astype(np.float32)
    a = alpha[..., None]
    image[y:y + h, x:x + w] = np.clip(region * (1 - a) + colour * a, 0, 255).astype(np.uint8)


def tight_box(alpha: np.ndarray, x: int, y: int, threshold: float = 0.3) -> np.ndarray | None:
    """The box (x1, y1, x2, y2) around the visible stroke of ``alpha`` placed at (x, y)."""
    ys, xs = np.nonzero(alpha > threshold)
    if len(xs) == 0:
        return None
    return np.array([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1], np.float32)


def overlaps(box: np.ndarray, others: list[np.ndarray], margin: float) -> bool:
    """True if ``box`` grown by ``margin`` pixels intersects any of ``others``."""
    for other in others:
        if (box[0] - margin < other[2] and other[0] < box[2] + margin
                and box[1] - margin < other[3] and other[1] < box[3] + margin):
            return True
    return False


def place_digit(
    rng: np.random.Generator,
    image: np.ndarray,
    digit: Digit,
    digit_size: tuple[int, int],
    taken: list[np.ndarray],
    tries: int = 20,
) -> np.ndarray | None:
    """Paint ``digit`` somewhere free on ``image``; return its box, or None if no room."""
    height_px, width_px = image.shape[:2]
    for _ in range(tries):
        h = int(rng.integers(digit_size[0], digit_size[1] + 1))
        w = max(6, round(h * rng.uniform(0.75, 1.2)))
        if h > height_px or w > width_px:
            continue
        x = int(rng.integers(0, width_px - w + 1))
        y = int(rng.integers(0, height_px - h + 1))
        alpha = render_ink(digit, w, h)
        box = tight_box(alpha, x, y)
        if box is None or overlaps(box, taken, margin=2):
            continue
        colour = ink_colour(rng, image[int(box[1]):int(box[3]), int(box[0]):int(box[2])])
        paint(image, alpha * rng.uniform(0.8, 1.0), colour, x, y)
        return box
    return None


def compose_scene(
    rng: np.random.Generator,
    split: str = "train",
    size: tuple[int, int] = (128, 128),
    digit_size: tuple[int, int] = (16, 48),
    max_digits: int = 5,
) -> Scene:
    """Compose one scene of ``size`` (width, height) with 1..``max_digits`` digits.

    ``digit_size`` bounds the height in pixels of each digit's 8x8 cell before
    its tight box is taken (the visible stroke is a little smaller).
    """
    backgrounds = photos(split)
    image = background(rng, backgrounds[int(rng.integers(len(backgrounds)))], size)
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        digit = random_digit(rng, split)
        box = place_digit(rng, image, digit, digit_size, boxes)
        if box is not None:
            boxes.append(box)
            classes.append(digit.value)
    return Scene(image, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64))


def compose_scenes(
    rng: np.random.Generator, count: int, split: str = "train", **options: object
) -> list[Scene]:
    """``count`` scenes from :func:`compose_scene` with the same options."""
    return [compose_scene(rng, split, **options) for _ in range(count)]


def pad_truth(scenes: list[Scene]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth as padded arrays: boxes (N, M, 4), classes (N, M) with -1 pads, counts (N,)."""
    most = max([len(s.classes) for s in scenes] + [1])
    boxes = np.zeros((len(scenes), most, 4), np.float32)
    classes = np.full((len(scenes), most), -1, np.int64)
    counts = np.array([len(s.classes) for s in scenes], np.int64)
    for i, scene in enumerate(scenes):
        boxes[i, :counts[i]] = scene.boxes
        classes[i, :counts[i]] = scene.classes
    return boxes, classes, counts
