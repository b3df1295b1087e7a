"""A small CNN on real handwritten digits that plain int8 quantisation gets wrong.

    .venv/bin/python scripts/outlier_cnn.py FOLDER   # writes FOLDER/outlier_cnn.keras, calib/val

scikit-learn's digits (1797 real 8x8 scans, upscaled to 16x16) train a small
CNN (conv 8 -> conv 16 -> max pool -> dense 10, softmax) in a few seconds.
Then one channel of the first convolution is scaled up by ``LOUD`` and the
second convolution's weights for that channel down by the same factor. ReLU
commutes with a positive scale, so the model computes exactly the same
function (Keras accuracy unchanged), but that channel's activations are now
hundreds of times larger than the others': the situation of a network trained
without batch normalisation that grew one loud channel. A per-tensor int8
scale for that activation, which TFLite and ONNX Runtime both use, leaves the
seven quiet channels a handful of levels, and top-1 agreement with Keras drops
(93% here). Keeping the two convolutions around that tensor in float restores it.

Used by tests/test_int8_remedy.py and scripts/bench_int8_fidelity.py.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

SEED = 7
LOUD = 300.0  # the loud channel's gain (1 gives a model int8 handles at 100% agreement)
EPOCHS = 8


def digits_16() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 (N, 16, 16, 1) in [0, 1], and their labels."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [cv2.resize((im / 16.0).astype(np.float32), (16, 16),
                         interpolation=cv2.INTER_LINEAR) for im in digits.images]
    return np.clip(np.stack(images), 0, 1)[..., None], digits.target.astype(np.int64)


def build(folder: str | Path, loud: float = LOUD) -> dict[str, Path]:
    """Train, make one channel loud, and write the model, its card, calib.npz and val.npz."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    from keras import layers
    from sklearn.model_selection import train_test_split

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x, y = digits_16()
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=SEED,
                                                      stratify=y)
    model = keras.Sequential([
        keras.Input((16, 16, 1), name="image"),
        layers.Conv2D(8, 3, activation="relu", name="conv1"),
        layers.Conv2D(16, 3, activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool"),
        layers.Flatten(name="flatten"),
        layers.Dense(10, activation="softmax", name="classes"),
    ], name="outlier_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0)
    w1, b1 = model.get_layer("conv1").get_weights()
    w2, b2 = model.get_layer("conv2").get_weights()
    w1[..., 0] *= loud
    b1[0] *= loud
    w2[:, :, 0, :] /= loud
    model.get_layer("conv1").set_weights([w1, b1])
    model.get_layer("conv2").set_weights([w2, b2])
    paths = {"model": folder / "outlier_cnn.keras", "calib": folder / "calib.npz",
             "val": folder / "val.npz"}
    model.save(paths["model"])
    np.savez(paths["calib"], x=x_train[:200])
    np.savez(paths["val"], x=x_val, y=y_val)
    card = {"task": "classification", "calibration": "calib.npz", "validation": "val.npz",
            "input": {"color": "gray", "mean": [0.0], "std": [255.0]}}
    (folder / "outlier_cnn.edgekit.json").write_text(json.dumps(card, indent=2) + "\n")
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.splitlines()[2].strip())
    print(build(sys.argv[1])["model"])
