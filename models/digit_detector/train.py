"""Train the bundled digit detector: a small, Edge-TPU-friendly grid detector.

Run from the repository root (needs the ``convert`` and ``train`` extras):

    PYTHONPATH=. python models/digit_detector/train.py

Writes, beside this file:
  digit_detector.keras         the trained model (Keras 3 format), input [N, 128, 128, 3]
  digit_detector.edgekit.json  what ``edgekit convert`` needs to know about it
  calib.npz                    training-split scenes for int8 calibration (x)
  val.npz                      held-out scenes and their ground truth (layout below)
  labels.txt                   one label per class
  REPORT.md                    mAP@0.5 of the Keras model and of its full-int8 TFLite
                               model (run through ai-edge-litert), and the settings

The scenes (see ``scenes.py``) are real handwritten digits blended onto real
photos. Training scenes and held-out scenes use disjoint digit scans and
disjoint photos. Everything is seeded.

The model: 3x3 convolutions with batch norm (folded away on conversion) and
ReLU6, two max pools, down to an 8x8 grid (stride 16) of 128 features, then
one depthwise-separable block; three 1x1 convolution heads, each through a
sigmoid: objectness [N, 8, 8, 1], box [N, 8, 8, 4] (tx, ty, tw, th) and
classes [N, 8, 8, 10]. Every output lies in [0, 1], so its int8 form has the
sigmoid's fixed scale 1/256, and each head's logits keep their own int8
scale. No concatenation: the int8 model holds only CONV_2D,
DEPTHWISE_CONV_2D, MAX_POOL_2D and LOGISTIC. Boxes are decoded on the host by
``edgekit.tasks.detection.decode_edgekit_grid``.

val.npz layout: ``x`` float32 [K, 128, 128, 3], pre-processed (pixel / 255);
``boxes`` float32 [K, M, 4] as x1, y1, x2, y2 in input pixels, rows past
``counts[i]`` are zero; ``classes`` int64 [K, M], -1 past ``counts[i]``;
``counts`` int64 [K]. calib.npz: ``x`` only, the same pre-processing. Both
hold 48 scenes: float32 photos barely compress, and 48 keep each file under
2 MB. REPORT.md's int8 numbers come from a model calibrated on exactly this
calib.npz; its main mAP is over 500 held-out scenes, of which val.npz holds
the first 48.

Takes about 7 minutes on 2 quiet CPU cores (scene composition ~40 s, 5
epochs of ~75 s, evaluation ~1 min), longer when the cores are shared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scenes as scene_lib

from edgekit.tasks.detection import Detection, decode_edgekit_grid, detections
from edgekit.tasks.metrics import class_average_precisions

SEED = 1989  # LeCun et al., "Backpropagation applied to handwritten zip code recognition"
HERE = Path(__file__).resolve().parent
NAME = "digit_detector"
INPUT = 128
GRID = 8
CLASSES = 10
TRAIN_SCENES = 16000
EPOCHS = 5
BATCH = 32
LEARNING_RATE = 2e-3
HELD_OUT_SCENES = 500  # REPORT's main number; val.npz holds the first VAL_SCENES of them
VAL_SCENES = 48  # keeps val.npz under 2 MB
CALIB_SCENES = 48  # keeps calib.npz under 2 MB
BOX_WEIGHT = 5.0
DECODER = {
    "name": "edgekit-grid",
    "score_threshold": 0.3,
    "iou_threshold": 0.45,
    "max_detections": 100,
    "size_scale": 0.5,
    "offset_low": -0.5,
    "offset_high": 1.5,
}
MAP_SCORE_THRESHOLD = 0.01  # mAP ranks every detection down to here (the card's 0.3 is for display)


# ---------------------------------------------------------------------------- targets


def encode(scene: scene_lib.Scene) -> np.ndarray:
    """The training target [GRID, GRID, 5 + CLASSES] of one scene (sigmoid-space values).

    The cell holding a box's centre is responsible for it; if two centres share
    a cell, the larger box wins.
    """
    target = np.zeros((GRID, GRID, 5 + CLASSES), np.float32)
    stride = INPUT / GRID
    span = DECODER["offset_high"] - DECODER["offset_low"]
    order = np.argsort(-np.prod(scene.boxes[:, 2:] - scene.boxes[:, :2], axis=1))
    for box, cls in zip(scene.boxes[order][::-1], scene.classes[order][::-1]):
        cx, cy = (box[0] + box[2]) / 2 / stride, (box[1] + box[3]) / 2 / stride
        col, row = min(int(cx), GRID - 1), min(int(cy), GRID - 1)
        target[row, col] = 0
        target[row, col, 0] = 1
        target[row, col, 1] = (cx - col - DECODER["offset_low"]) / span
        target[row, col, 2] = (cy - row - DECODER["offset_low"]) / span
        target[row, col, 3] = (box[2] - box[0]) / (DECODER["size_scale"] * INPUT)
        target[row, col, 4] = (box[3] - box[1]) / (DECODER["size_scale"] * INPUT)
        target[row, col, 5 + int(cls)] = 1
    return target


def make_scenes(seed: int, count: int, split: str) -> list[scene_lib.Scene]:
    """``count`` seeded scenes of the model's input size from one split."""
    rng = np.random.default_rng(seed)
    return scene_lib.compose_scenes(rng, count, split, size=(INPUT, INPUT))


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 RGB images to the model's input: float32 in [0, 1] (mean 0, std 255)."""
    return images.astype(np.float32) / 255.0


# ---------------------------------------------------------------------------- model


def build_detector(batch_size: int | None = None, logits: bool = False):
    """The detector: outputs objectness, box and classes, each a sigmoid.

    ``logits=True`` gives the training form: the same layers and weights, no
    sigmoids, the three heads concatenated into one [N, 8, 8, 15] tensor.
    """
    import keras
    from keras import layers

    def conv(x, filters: int, name: str, strides: int = 1):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                          name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x)

    image = keras.Input((INPUT, INPUT, 3), batch_size=batch_size, name="image")
    x = conv(image, 16, "conv1", strides=2)  # 64x64
    x = conv(x, 32, "conv2", strides=2)  # 32x32
    x = conv(x, 48, "conv3")
    x = layers.MaxPooling2D(2, name="pool3")(x)  # 16x16
    x = conv(x, 64, "conv4")
    x = layers.MaxPooling2D(2, name="pool4")(x)  # 8x8
    x = conv(x, 96, "conv5")
    x = conv(x, 128, "conv6")
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="conv7_dw")(x)
    x = layers.BatchNormalization(name="conv7_dw_bn")(x)
    x = layers.ReLU(6.0, name="conv7_dw_relu")(x)
    x = layers.Conv2D(128, 1, use_bias=False, name="conv7")(x)
    x = layers.BatchNormalization(name="conv7_bn")(x)
    x = layers.ReLU(6.0, name="conv7_relu")(x)
    heads = []
    for name, width in (("objectness", 1), ("box", 4), ("classes", CLASSES)):
        head = layers.Conv2D(width, 1, name=f"{name}_head")(x)
        heads.append(head if logits else layers.Activation("sigmoid", name=name)(head))
    if logits:
        return keras.Model(image, layers.Concatenate(name="grid")(heads), name=NAME)
    return keras.Model(image, heads, name=NAME)


def detection_loss(y_true, y_pred):
    """Sum over cells of objectness BCE, plus box and class BCE at cells holding an object."""
    from keras import ops

    def bce(target, logit):
        return ops.maximum(logit, 0) - logit * target + ops.log1p(ops.exp(-ops.abs(logit)))

    mask = y_true[..., :1]
    objectness = ops.sum(bce(y_true[..., 0], y_pred[..., 0]), axis=(1, 2))
    box = ops.sum(mask * bce(y_true[..., 1:5], y_pred[..., 1:5]), axis=(1, 2, 3))
    classes = ops.sum(mask * bce(y_true[..., 5:], y_pred[..., 5:]), axis=(1, 2, 3))
    return objectness + BOX_WEIGHT * box + classes


def batches(images: np.ndarray, targets: np.ndarray, seed: int):
    """A Keras PyDataset over uint8 images, shuffled per epoch, pre-processed per batch."""
    import keras

    class Scenes(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(images))

        def __len__(self) -> int:
            return len(images) // BATCH

        def __getitem__(self, index: int):
            pick = np.sort(self.order[index * BATCH:(index + 1) * BATCH])
            return preprocess(images[pick]), targets[pick]

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(images))

    return Scenes()


def train(train_scenes: list[scene_lib.Scene]):
    """Fit the training form and return the export form (sigmoid heads) with its weights."""
    import keras

    images = np.stack([s.image for s in train_scenes])
    targets = np.stack([encode(s) for s in train_scenes])
    model = build_detector(logits=True)
    steps = EPOCHS * (len(images) // BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=detection_loss)
    model.fit(batches(images, targets, SEED), epochs=EPOCHS, verbose=2)
    export = build_detector()
    export.set_weights(model.get_weights())
    return export


# ---------------------------------------------------------------------------- evaluation


def truth(scene_boxes: np.ndarray, scene_classes: np.ndarray) -> list[Detection]:
    """Ground truth of one scene as records (score 1)."""
    return detections(scene_boxes, scene_classes, np.ones(len(scene_classes)),
                      scene_lib.LABELS)


Outputs = list  # one model's outputs for one scene: float arrays, batch 1


def decode_all(outputs: list[Outputs]) -> list[list[Detection]]:
    """Decode every scene's outputs for mAP (low score threshold: the whole PR curve)."""
    params = dict(DECODER, score_threshold=MAP_SCORE_THRESHOLD)
    return [decode_edgekit_grid(o, (INPUT, INPUT), scene_lib.LABELS, params) for o in outputs]


def average_precisions(outputs: list[Outputs], held_out: list[scene_lib.Scene],
                       count: int | None = None) -> dict[int, float]:
    """AP@0.5 per class over the first ``count`` held-out scenes."""
    chosen = held_out[:count]
    return class_average_precisions(
        decode_all(outputs[:len(chosen)]), [truth(s.boxes, s.classes) for s in chosen], 0.5
    )


def per_scene(heads: list[np.ndarray]) -> list[Outputs]:
    """Outputs batched over scenes ([N, ...] per head) as one list of batch-1 arrays per scene."""
    return [[h[i:i + 1] for h in heads] for i in range(len(heads[0]))]


def keras_outputs(model, x: np.ndarray) -> list[Outputs]:
    """The Keras model's outputs, split per scene."""
    return per_scene(model.predict(x, batch_size=50, verbose=0))


def convert_int8(model, calib: np.ndarray) -> bytes:
    """Full-integer TFLite (int8 in and out) from a batch-1 Keras model."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def run_litert(tflite_path: Path, x_path: Path, out_path: Path) -> None:
    """Run a TFLite model on every image in ``x_path`` with ai-edge-litert (no TensorFlow).

    Writes to ``out_path`` (JSON-friendly npz): the dequantised outputs as
    ``out0``, ``out1``, ... [N, ...] in the model's output order, and a text
    description of the model (ops without delegates, input and outputs).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    (inp,), outs = interpreter.get_input_details(), interpreter.get_output_details()
    in_scale, in_zero = inp["quantization"]
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for image in np.load(x_path)["x"]:
        q = np.clip(np.round(image / in_scale + in_zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        for result, out in zip(results, outs):
            scale, zero = out["quantization"]
            result.append((interpreter.get_tensor(out["index"]).astype(np.float32) - zero) * scale)
    plain = Interpreter(model_path=str(tflite_path),
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    description = {
        "ops": sorted({op["op_name"] for op in plain._get_ops_details()}),
        "input": _tensor_text(inp),
        "outputs": [_tensor_text(o) for o in outs],
    }
    arrays = {f"out{i}": np.concatenate(r) for i, r in enumerate(results)}
    np.savez(out_path, description=json.dumps(description), **arrays)


def _tensor_text(detail: dict) -> str:
    scale, zero = detail["quantization"]
    shape = "x".join(str(d) for d in detail["shape"])
    dtype = np.dtype(detail["dtype"]).name
    return f"{detail['name']} {dtype} [{shape}] scale {scale:.6g} zero {zero}"


def litert_outputs(tflite: bytes, x: np.ndarray) -> tuple[list[Outputs], dict]:
    """Run the int8 model through ai-edge-litert in a child process without TensorFlow."""
    with tempfile.TemporaryDirectory() as tmp:
        model_path, x_path, out_path = (Path(tmp) / n for n in ("m.tflite", "x.npz", "o.npz"))
        model_path.write_bytes(tflite)
        np.savez(x_path, x=x)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        subprocess.run([sys.executable, __file__, "--litert", str(model_path), str(x_path),
                        str(out_path)], check=True, env=env)
        result = np.load(out_path)
        heads = [result[f"out{i}"] for i in range(len(result.files) - 1)]
        description = json.loads(str(result["description"]))
    return per_scene(heads), description


# ---------------------------------------------------------------------------- files


def write_bundle(model, calib: np.ndarray, held_out: list[scene_lib.Scene]) -> None:
    """The .keras model, the card, calib.npz, val.npz and labels.txt."""
    model.save(HERE / f"{NAME}.keras")
    np.savez_compressed(HERE / "calib.npz", x=calib)
    val = held_out[:VAL_SCENES]
    boxes, classes, counts = scene_lib.pad_truth(val)
    np.savez_compressed(HERE / "val.npz", x=preprocess(np.stack([s.image for s in val])),
                        boxes=boxes, classes=classes, counts=counts)
    (HERE / "labels.txt").write_text("".join(f"{label}\n" for label in scene_lib.LABELS))
    card = {
        "task": "detection",
        "labels": "labels.txt",
        "calibration": "calib.npz",
        "validation": "val.npz",
        "input": {"color": "rgb", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0],
                  "resize": "letterbox"},
        "decoder": DECODER,
    }
    (HERE / f"{NAME}.edgekit.json").write_text(json.dumps(card, indent=2) + "\n")


def ap_table(rows: dict[str, dict[int, float]]) -> str:
    """A markdown table: one row per class, one column per model/set."""
    names = list(rows)
    lines = ["| class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for cls in sorted(next(iter(rows.values()))):
        lines.append(f"| {cls} | " + " | ".join(f"{rows[n][cls]:.4f}" for n in names) + " |")
    lines.append("| **mAP@0.5** | " + " | ".join(
        f"**{np.mean(list(rows[n].values())):.4f}**" for n in names) + " |")
    return "\n".join(lines)


def write_report(facts: dict) -> None:
    """REPORT.md from the measured facts."""
    held, val = facts["held_out"], facts["val"]
    tensor_lines = "\n".join(f"  - output: `{t}`" for t in facts["tflite"]["outputs"])
    text = f"""# Digit detector: handwritten digits on photos

- Data: scenes from `scenes.py`: real handwritten digits (`sklearn.datasets.load_digits`,
  8x8 scans, scaled to 16..48 px cells, tight boxes around the stroke) blended as ink onto
  real photos (`skimage.data`, `sklearn.datasets.load_sample_image`), 1..5 digits a scene,
  no overlaps, {INPUT}x{INPUT} RGB.
- Split: training scenes use {facts['train_digits']} digit scans and
  {len(scene_lib.TRAIN_PHOTOS)} photos; held-out scenes use the other
  {facts['test_digits']} scans (stratified 20%) and {len(scene_lib.TEST_PHOTOS)} other photos
  ({', '.join(scene_lib.TEST_PHOTOS)}).
- Training: {TRAIN_SCENES} scenes ({facts['train_objects']} digits), Adam {LEARNING_RATE}
  with cosine decay, batch {BATCH}, {EPOCHS} epochs, seed {SEED}, {facts['train_seconds']:.0f} s
  on this machine's CPU; TensorFlow {facts['tf']}, Keras {facts['keras']}.
- Model: {facts['params']:,} parameters, `.keras` file {facts['keras_bytes'] / 1e6:.2f} MB;
  input [N, {INPUT}, {INPUT}, 3] float in [0, 1]; three outputs, each a sigmoid:
  objectness [N, {GRID}, {GRID}, 1], box [N, {GRID}, {GRID}, 4] (tx, ty, tw, th) and
  classes [N, {GRID}, {GRID}, {CLASSES}].
- Full-int8 TFLite (`from_keras_model` on a batch-1 copy, calibrated on `calib.npz`,
  int8 input and outputs, {facts['tflite_bytes'] / 1e3:.0f} kB), run through ai-edge-litert
  {facts['litert']}:
  - ops: {', '.join(facts['tflite']['ops'])}
  - input: `{facts['tflite']['input']}`
{tensor_lines}
- mAP: `edgekit.tasks.metrics` (all-point interpolated AP at IoU 0.5, mean over classes),
  detections from `edgekit.tasks.detection.decode_edgekit_grid` with the card's decoder
  parameters but score threshold {MAP_SCORE_THRESHOLD}.

## Held-out scenes ({HELD_OUT_SCENES} scenes, {facts['held_objects']} digits; seed {SEED + 2})

{ap_table(held)}

## val.npz (the first {VAL_SCENES} of them, {facts['val_objects']} digits)

{ap_table(val)}

Regenerate with `PYTHONPATH=. python models/digit_detector/train.py`.
"""
    (HERE / "REPORT.md").write_text(text)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import ai_edge_litert
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    start = time.perf_counter()
    train_scenes = make_scenes(SEED, TRAIN_SCENES, "train")
    calib = preprocess(np.stack([s.image for s in make_scenes(SEED + 1, CALIB_SCENES, "train")]))
    held_out = make_scenes(SEED + 2, HELD_OUT_SCENES, "test")
    print(f"composed scenes in {time.perf_counter() - start:.0f} s", flush=True)

    start = time.perf_counter()
    model = train(train_scenes)
    train_seconds = time.perf_counter() - start
    write_bundle(model, calib, held_out)

    x_held = preprocess(np.stack([s.image for s in held_out]))
    keras_out = keras_outputs(model, x_held)
    single = build_detector(batch_size=1)
    single.set_weights(model.get_weights())
    tflite = convert_int8(single, calib)
    int8_out, tflite_description = litert_outputs(tflite, x_held)
    held = {"Keras": average_precisions(keras_out, held_out),
            "int8 TFLite": average_precisions(int8_out, held_out)}
    val = {"Keras": average_precisions(keras_out, held_out, VAL_SCENES),
           "int8 TFLite": average_precisions(int8_out, held_out, VAL_SCENES)}
    write_report({
        "held_out": held, "val": val, "tflite": tflite_description,
        "train_seconds": train_seconds, "tf": tf.__version__, "keras": keras.__version__,
        "litert": getattr(ai_edge_litert, "__version__", "?"),
        "params": model.count_params(), "keras_bytes": (HERE / f"{NAME}.keras").stat().st_size,
        "tflite_bytes": len(tflite),
        "train_digits": len(scene_lib.digits("train")),
        "test_digits": len(scene_lib.digits("test")),
        "train_objects": sum(len(s.classes) for s in train_scenes),
        "held_objects": sum(len(s.classes) for s in held_out),
        "val_objects": sum(len(s.classes) for s in held_out[:VAL_SCENES]),
    })
    for name, per_class in held.items():
        print(f"{name}: mAP@0.5 {np.mean(list(per_class.values())):.4f} on held-out scenes")
    print(f"trained in {train_seconds:.0f} s; wrote {HERE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--litert", nargs=3, metavar=("MODEL", "X_NPZ", "OUT_NPZ"),
                        help="internal: run a TFLite model with ai-edge-litert and exit")
    args = parser.parse_args()
    if args.litert:
        run_litert(*(Path(p) for p in args.litert))
    else:
        main()
