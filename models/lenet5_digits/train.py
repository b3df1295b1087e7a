"""Train LeNet-5 on scikit-learn's handwritten digits and write the bundled example.

Run from the repository root (needs the ``convert`` and ``train`` extras):

    python models/lenet5_digits/train.py

Writes, beside this file:
  lenet5_digits.keras       the trained model (Keras 3 format)
  lenet5_digits.edgekit.json  what ``edgekit convert`` needs to know about it
  calib.npz                 200 training images for int8 calibration (x)
  val.npz                   the held-out test split (x, y) for fidelity checks
  labels.txt                one label per class
  REPORT.md                 test accuracy and the training settings

The digits are real handwriting (1797 8x8 scans from UCI, shipped inside
scikit-learn), upscaled to 32x32 grey images in [0, 1] as LeNet-5 expects.
Everything is seeded, so a re-run gives the same split and, on the same
TensorFlow build, the same weights.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SEED = 1998  # the year of LeCun et al., "Gradient-based learning applied to document recognition"
HERE = Path(__file__).resolve().parent
EPOCHS = 30
CALIB_SAMPLES = 200


def load_digits_32() -> tuple[np.ndarray, np.ndarray]:
    """Return the digits as float32 (N, 32, 32, 1) images in [0, 1] and int labels."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    big = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR) for im in images])
    return np.clip(big, 0.0, 1.0)[..., None], digits.target.astype(np.int64)


def build_lenet5():
    """The classic LeNet-5 layout, with ReLU and max pooling."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((32, 32, 1), name="image"),
            layers.Conv2D(6, 5, activation="relu", name="c1"),
            layers.MaxPooling2D(2, name="s2"),
            layers.Conv2D(16, 5, activation="relu", name="c3"),
            layers.MaxPooling2D(2, name="s4"),
            layers.Flatten(name="flatten"),
            layers.Dense(120, activation="relu", name="c5"),
            layers.Dense(84, activation="relu", name="f6"),
            layers.Dense(10, activation="softmax", name="output"),
        ],
        name="lenet5_digits",
    )


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    x, y = load_digits_32()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    model = build_lenet5()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, shuffle=True, verbose=2)
    _, test_acc = model.evaluate(x_test, y_test, verbose=0)
    _, train_acc = model.evaluate(x_train, y_train, verbose=0)

    model.save(HERE / "lenet5_digits.keras")
    rng = np.random.default_rng(SEED)
    calib = x_train[rng.choice(len(x_train), CALIB_SAMPLES, replace=False)]
    np.savez_compressed(HERE / "calib.npz", x=calib)
    np.savez_compressed(HERE / "val.npz", x=x_test, y=y_test)
    (HERE / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)))
    card = {
        "task": "classification",
        "labels": "labels.txt",
        "calibration": "calib.npz",
        "validation": "val.npz",
        "input": {"color": "gray", "mean": [0.0], "std": [255.0]},
    }
    (HERE / "lenet5_digits.edgekit.json").write_text(json.dumps(card, indent=2) + "\n")
    (HERE / "REPORT.md").write_text(
        "# LeNet-5 on scikit-learn's handwritten digits\n\n"
        "- Data: `sklearn.datasets.load_digits` (1797 real 8x8 scans), upscaled to 32x32x1 "
        "in [0, 1].\n"
        f"- Split: {len(x_train)} train / {len(x_test)} test, stratified, seed {SEED}.\n"
        f"- Training: Adam 1e-3, batch 32, {EPOCHS} epochs, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}.\n"
        f"- Parameters: {model.count_params():,}.\n\n"
        "| split | samples | accuracy |\n|---|---|---|\n"
        f"| train | {len(x_train)} | {train_acc:.4f} |\n"
        f"| test (val.npz) | {len(x_test)} | {test_acc:.4f} |\n\n"
        "Regenerate with `python models/lenet5_digits/train.py`.\n"
    )
    print(f"test accuracy {test_acc:.4f} ({len(x_test)} images); wrote {HERE}")


if __name__ == "__main__":
    main()
