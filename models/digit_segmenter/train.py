"""Train the bundled digit segmenter: a class per 4 x 4 cell, in a few minutes.

Run from the repository root (needs the ``convert`` and ``train`` extras):

    PYTHONPATH=. python models/digit_segmenter/train.py

Writes, beside this file:
  digit_segmenter.keras         the trained model (Keras 3), input [N, 64, 64, 3] (pixel / 255),
                                output [N, 16, 16, 11] softmax (a class per 4 x 4 cell):
                                background, then digits 0..9
  digit_segmenter.edgekit.json  what ``edgekit convert`` needs to know about it
  calib.npz                     training scenes for int8 calibration (``x``, float16)
  val.npz                       held-out scenes (``x``, float16) and their ``masks`` (uint8,
                                64 x 64: a class per input pixel)
  labels.txt                    background, 0, ..., 9
  REPORT.md                     pixel accuracy and mean IoU of the Keras model, and settings

The scenes are the digit detector's (``models/digit_detector/scenes.py``: real handwritten
digits blended onto real photos, train and held-out splits with disjoint scans and photos),
at 64 x 64, each digit's visible stroke labelled with its class. The model is a small fully
convolutional net down to a 16 x 16 grid of class scores (stride 4, a cell takes the digit that
inks it), which the loop scales back onto the frame: CONV_2D and SOFTMAX only, which every
runtime here and the Edge TPU run. Digit cells weigh more in the loss (most are background).
Everything is seeded.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "digit_detector"))
import scenes as scene_lib  # noqa: E402

SEED = 2015  # Long, Shelhamer and Darrell, "Fully convolutional networks for semantic segmentation"
SIZE = 64
CLASSES = 11  # background, digits 0..9
STRIDE = 4  # the output grid is SIZE / STRIDE on a side
TRAIN_SCENES = 2400
VAL_SCENES = 48
CALIB_SCENES = 128
EPOCHS = 48
DIGIT_WEIGHT = 3.0  # a digit pixel's weight in the loss against a background pixel's
INK = 0.35  # a pixel belongs to a digit where its stroke covers more than this


def compose(rng: np.random.Generator, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One scene (RGB uint8, 64 x 64) and its mask: 0 background, value + 1 under a digit."""
    photos = scene_lib.photos(split)
    image = scene_lib.background(rng, photos[int(rng.integers(len(photos)))], (SIZE, SIZE))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        digit = scene_lib.random_digit(rng, split)
        h = int(rng.integers(10, 40))  # the demo clip's digits are 8-15 px once letterboxed
        w = max(8, round(h * rng.uniform(0.75, 1.2)))
        x, y = int(rng.integers(0, SIZE - w + 1)), int(rng.integers(0, SIZE - h + 1))
        if mask[y:y + h, x:x + w].any():
            continue  # no overlaps: one class per pixel
        alpha = scene_lib.render_ink(digit, w, h) * rng.uniform(0.8, 1.0)
        colour = scene_lib.ink_colour(rng, image[y:y + h, x:x + w])
        scene_lib.paint(image, alpha, colour, x, y)
        mask[y:y + h, x:x + w][alpha > INK] = digit.value + 1
    return image, mask


def scenes(rng: np.random.Generator, count: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    made = [compose(rng, split) for _ in range(count)]
    return (np.stack([m[0] for m in made]).astype(np.float32) / 255.0,
            np.stack([m[1] for m in made]))


def build(keras):
    """Down to a 16 x 16 grid of class scores (stride 4): a class per 4 x 4 cell, which the
    loop scales back to the frame (as DeepLab-style heads do)."""
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = inputs
    for filters, stride in ((16, 2), (16, 1), (32, 2), (32, 1), (48, 1), (48, 1)):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu6")(x)
    outputs = layers.Conv2D(CLASSES, 1, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="digit_segmenter")


def cells(masks: np.ndarray) -> np.ndarray:
    """Masks (N, 64, 64) -> the model's 16 x 16 grid: a cell takes the digit that inks it."""
    n = len(masks)
    return masks.reshape(n, SIZE // STRIDE, STRIDE, SIZE // STRIDE, STRIDE).max(axis=(2, 4))


def mean_iou(truth: np.ndarray, got: np.ndarray) -> float:
    classes = np.union1d(np.unique(truth), np.unique(got))
    return float(np.mean([np.sum((truth == c) & (got == c)) / np.sum((truth == c) | (got == c))
                          for c in classes]))


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    x_train, m_train = scenes(rng, TRAIN_SCENES, "train")
    x_val, m_val = scenes(rng, VAL_SCENES, "test")
    x_calib, _ = scenes(rng, CALIB_SCENES, "train")
    composed = time.perf_counter() - started

    model = build(keras)
    target = cells(m_train)
    weights = np.where(target > 0, DIGIT_WEIGHT, 1.0).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(x_train, target, sample_weight=weights, epochs=EPOCHS, batch_size=32,
              shuffle=True, verbose=2)
    trained = time.perf_counter() - started - composed
    got = model.predict(x_val, verbose=0).argmax(-1)
    truth = cells(m_val)
    pixel = float((got == truth).mean())
    digit_pixels = truth > 0
    digit_acc = float((got[digit_pixels] == truth[digit_pixels]).mean())
    iou = mean_iou(truth, got)

    model.save(HERE / "digit_segmenter.keras")
    np.savez_compressed(HERE / "calib.npz", x=x_calib.astype(np.float16))
    np.savez_compressed(HERE / "val.npz", x=x_val.astype(np.float16), masks=m_val)
    labels = ["background", *scene_lib.LABELS]
    (HERE / "labels.txt").write_text("".join(f"{name}\n" for name in labels))
    card = {
        "task": "segmentation",
        "labels": "labels.txt",
        "calibration": "calib.npz",
        "validation": "val.npz",
        "input": {"color": "rgb", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0],
                  "resize": "letterbox"},
    }
    (HERE / "digit_segmenter.edgekit.json").write_text(json.dumps(card, indent=2) + "\n")
    (HERE / "REPORT.md").write_text(
        "# A digit segmenter on the digit detector's scenes\n\n"
        "- Data: real handwritten digits (`sklearn.datasets.load_digits`) blended onto real "
        "photos (`models/digit_detector/scenes.py`), 64 x 64, each stroke's pixels labelled "
        "with its digit (0 background, 1..10 digits 0..9).\n"
        f"- Scenes: {TRAIN_SCENES} training, {VAL_SCENES} held out (other scans, other "
        f"photos; val.npz), {CALIB_SCENES} for calibration; seed {SEED}.\n"
        f"- Training: Adam 2e-3, batch 32, {EPOCHS} epochs, digit pixels weighted "
        f"{DIGIT_WEIGHT:g}x; TensorFlow {tf.__version__}, Keras {keras.__version__}; "
        f"{composed:.0f} s composing, {trained:.0f} s training.\n"
        f"- Parameters: {model.count_params():,}.\n\n"
        "Scored on the 16 x 16 grid the model outputs (the masks reduced as in training).\n\n"
        "| held-out scenes | cell accuracy | on digit cells | mean IoU (11 classes) |\n"
        "|---|---|---|---|\n"
        f"| {VAL_SCENES} | {pixel:.4f} | {digit_acc:.4f} | {iou:.4f} |\n\n"
        "An example to carry a segmenter through edgekit, not a good digit reader: the "
        "figures that matter here are each artifact's agreement with this Keras model.\n"
        "Regenerate with `PYTHONPATH=. python models/digit_segmenter/train.py`.\n"
    )
    print(f"cell accuracy {pixel:.4f}, on digits {digit_acc:.4f}, mIoU {iou:.4f}; "
          f"{composed:.0f} s composing, {trained:.0f} s training; wrote {HERE}")


if __name__ == "__main__":
    main()
