"""A MobileNet-sized bundle for the speed figures: keras.applications.MobileNetV2(weights=None)
at 224x224, converted by edgekit. Built once into out/bench/ and reused.

    .venv/bin/python scripts/mobilenet_bundle.py   # builds (or reuses) out/bench/mobilenetv2

Weights are random (nothing is downloaded), so accuracy means nothing here; the speed and
the fidelity of each artifact to the Keras model are what the figures use. Calibration and
validation images are random crops of real photos shipped in scikit-image and scikit-learn.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
SIZE = 224


def photo_crops(count: int, seed: int, photos: list[str]) -> np.ndarray:
    """Random square crops of real photos, resized to SIZE, as float32 in [-1, 1]."""
    import cv2
    from skimage import data
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(seed)
    images = []
    for name in photos:
        image = load_sample_image(name) if name.endswith(".jpg") else getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        images.append(image[..., :3])
    crops = []
    for i in range(count):
        image = images[i % len(images)]
        h, w = image.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(image[y:y + side, x:x + side], (SIZE, SIZE))
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return ((np.stack(crops).astype(np.float32) - 127.5) / 127.5)


def ensure_mobilenet_bundle(out: Path = OUT) -> Path:
    bundle = out / "mobilenetv2"
    if (bundle / "edgekit.json").is_file():
        return bundle
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from edgekit.convert import ConvertOptions, convert
    from edgekit.preprocess import SpecOptions

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3))
    model.save(out / "mobilenetv2.keras")
    np.savez(out / "mobilenetv2_calib.npz",
             x=photo_crops(128, 1, ["astronaut", "coffee", "chelsea", "rocket", "china.jpg"]))
    np.savez(out / "mobilenetv2_val.npz",
             x=photo_crops(32, 2, ["flower.jpg", "retina",
                                   "immunohistochemistry", "hubble_deep_field"]))
    convert(out / "mobilenetv2.keras", bundle, ConvertOptions(
        calib=out / "mobilenetv2_calib.npz", val=out / "mobilenetv2_val.npz",
        spec=SpecOptions(mean=(127.5,) * 3, std=(127.5,) * 3)),
        progress=lambda m: print(f"  {m}", file=sys.stderr))
    return bundle


if __name__ == "__main__":
    print(ensure_mobilenet_bundle())
