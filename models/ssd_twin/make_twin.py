"""Make an SSD detector twice: raw outputs, and the same graph with TFLite's post-process op.

    python models/ssd_twin/make_twin.py OUT_DIR [--seed N]

or from Python: ``make_twin(out_dir, seed=0) -> Twin``.

What it writes into OUT_DIR:

- ``ssd_twin.keras``: an SSD-style Keras model, 300x300x3 RGB in -1..1, the layout
  of MobileNet SSD: feature maps of 19, 10, 5, 3, 2 and 1 cells (strides 16 to
  512), 3 anchors per cell on the first and 6 on the others (1917 anchors), a box
  head and a class head per map. It emits, as the TF Object Detection API's
  ``raw_outputs`` do, box encodings [1, 1917, 4] (ty, tx, th, tw) and class scores
  [1, 1917, 91] after the sigmoid (column 0 is the background, then COCO's 90).
  Its weights are random (seeded), scaled so that a photo lights up a few dozen
  anchors: the point is the decoding, not what it finds.
- ``ssd_twin_raw.tflite``: that model converted as it is: the "no NMS" form of
  Coral's ``*_no_nms`` detectors.
- ``ssd_twin_postprocess.tflite``: the same model with TFLite's
  ``TFLite_Detection_PostProcess`` custom op appended, attached the way the TF
  Object Detection API's ``export_tflite_graph_lib_tf2.py`` attaches it: a
  ``tf.function`` whose ``experimental_implements`` signature names the op and
  its attributes (max_detections, nms_score_threshold, nms_iou_threshold,
  y/x/h/w_scale, num_classes, use_regular_nms), called on the box encodings, the
  scores and the anchors as a constant; the TFLite converter replaces the
  function by the op. Outputs: boxes, classes, scores, count.
- ``anchors.npy`` and ``anchors.txt``: the anchors (y_center, x_center, height,
  width) the op was given, generated here in TensorFlow by a transcription of
  the TF OD API's ``create_ssd_anchors`` and ``tile_anchors`` (written apart from
  edgekit's own generator, which the tests hold against it).
- ``ssd_twin.json``: the post-process parameters used.

Both .tflite files hold the same weights, so the raw one decoded on the host
(``edgekit run ssd_twin_raw.tflite --decoder ssd-raw``) must give what the op
gives. Needs TensorFlow (the ``convert`` extra); about 20 s here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SIZE = 300
NUM_CLASSES = 90
FEATURE_MAPS = (19, 10, 5, 3, 2, 1)
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)  # as ssd_mobilenet_v*_coco.config lists them
MIN_SCALE, MAX_SCALE = 0.2, 0.95


@dataclass(frozen=True)
class PostProcess:
    """The op's attributes (TF OD API defaults for MobileNet SSD, threshold raised to 0.3)."""

    max_detections: int = 20
    max_classes_per_detection: int = 1
    nms_score_threshold: float = 0.3
    nms_iou_threshold: float = 0.6
    num_classes: int = NUM_CLASSES
    y_scale: float = 10.0
    x_scale: float = 10.0
    h_scale: float = 5.0
    w_scale: float = 5.0
    use_regular_nms: bool = False


@dataclass
class Twin:
    folder: Path
    keras: Path
    raw: Path
    postprocess: Path
    anchors: Path
    anchors_text: Path
    params: PostProcess


def box_specs() -> list[list[tuple[float, float]]]:
    """(scale, aspect ratio) of each layer's anchors: create_ssd_anchors with its defaults
    (reduce_boxes_in_lowest_layer, interpolated_scale_aspect_ratio 1.0)."""
    layers = len(FEATURE_MAPS)
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (layers - 1) for i in range(layers)]
    scales.append(1.0)
    specs = []
    for layer, (scale, scale_next) in enumerate(zip(scales[:-1], scales[1:])):
        if layer == 0:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
        else:
            specs.append([(scale, r) for r in ASPECT_RATIOS]
                         + [(float(np.sqrt(scale * scale_next)), 1.0)])
    return specs


def tf_anchors():
    """The anchors as tile_anchors makes them, in TensorFlow: corners, then centre-size."""
    import tensorflow as tf

    out = []
    for size, specs in zip(FEATURE_MAPS, box_specs()):
        scales = tf.constant([s for s, _ in specs], tf.float32)
        ratios = tf.constant([r for _, r in specs], tf.float32)
        stride = 1.0 / size
        offset = 0.5 * stride
        ratio_sqrts = tf.sqrt(ratios)
        heights = scales / ratio_sqrts
        widths = scales * ratio_sqrts
        y_centers = tf.cast(tf.range(size), tf.float32) * stride + offset
        x_centers = tf.cast(tf.range(size), tf.float32) * stride + offset
        x_centers, y_centers = tf.meshgrid(x_centers, y_centers)
        widths_grid, x_centers_grid = tf.meshgrid(widths, x_centers)
        heights_grid, y_centers_grid = tf.meshgrid(heights, y_centers)
        centers = tf.reshape(tf.stack([y_centers_grid, x_centers_grid], axis=-1), [-1, 2])
        sizes = tf.reshape(tf.stack([heights_grid, widths_grid], axis=-1), [-1, 2])
        corners = tf.concat([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=1)
        # box_list.get_center_coordinates_and_sizes, as the exporter feeds the op
        ymin, xmin, ymax, xmax = tf.unstack(corners, axis=1)
        out.append(tf.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin],
                            axis=1))
    return tf.concat(out, axis=0).numpy()


def build_model(seed: int):
    """The SSD-style Keras model (random weights, seeded)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    image = keras.Input((SIZE, SIZE, 3), batch_size=1)
    x = image
    for filters in (16, 24, 32, 48):  # 300 -> 150 -> 75 -> 38 -> 19: stride 16
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu6")(x)
    maps = [x]
    for filters in (64, 64, 48, 48, 32):  # 19 -> 10 -> 5 -> 3 -> 2 -> 1
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu6")(x)
        maps.append(x)
    boxes, scores = [], []
    spread = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
    for fmap, specs in zip(maps, box_specs()):
        count = len(specs)
        b = layers.Conv2D(count * 4, 3, padding="same", kernel_initializer=spread)(fmap)
        c = layers.Conv2D(count * (NUM_CLASSES + 1), 3, padding="same",
                          kernel_initializer=spread,
                          bias_initializer=keras.initializers.Constant(-2.5))(fmap)
        boxes.append(layers.Reshape((-1, 4))(b))
        scores.append(layers.Reshape((-1, NUM_CLASSES + 1))(c))
    box_encodings = layers.Concatenate(axis=1, name="box_encodings")(boxes)
    class_scores = layers.Activation("sigmoid", name="class_predictions")(
        layers.Concatenate(axis=1)(scores))
    return keras.Model(image, [box_encodings, class_scores], name="ssd_twin")


def _implements(p: PostProcess) -> str:
    """The experimental_implements signature the TFLite converter turns into the op."""
    return " ".join([
        'name: "TFLite_Detection_PostProcess"',
        f'attr {{ key: "max_detections" value {{ i: {p.max_detections} }} }}',
        f'attr {{ key: "max_classes_per_detection" value {{ i: {p.max_classes_per_detection} }} }}',
        f'attr {{ key: "use_regular_nms" value {{ b: {str(p.use_regular_nms).lower()} }} }}',
        f'attr {{ key: "nms_score_threshold" value {{ f: {p.nms_score_threshold:f} }} }}',
        f'attr {{ key: "nms_iou_threshold" value {{ f: {p.nms_iou_threshold:f} }} }}',
        f'attr {{ key: "y_scale" value {{ f: {p.y_scale:f} }} }}',
        f'attr {{ key: "x_scale" value {{ f: {p.x_scale:f} }} }}',
        f'attr {{ key: "h_scale" value {{ f: {p.h_scale:f} }} }}',
        f'attr {{ key: "w_scale" value {{ f: {p.w_scale:f} }} }}',
        f'attr {{ key: "num_classes" value {{ i: {p.num_classes} }} }}',
    ])


def _to_tflite(saved_model: Path, out: Path, custom_ops: bool = False) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.allow_custom_ops = custom_ops
    out.write_bytes(converter.convert())
    return out


def make_twin(out_dir: str | Path, seed: int = 0, params: PostProcess | None = None) -> Twin:
    """Write the model, its two TFLite forms and the anchors into ``out_dir``."""
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    params = params or PostProcess()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(seed)
    model.save(out / "ssd_twin.keras")
    anchors = tf_anchors()
    np.save(out / "anchors.npy", anchors)
    np.savetxt(out / "anchors.txt", anchors, fmt="%.9g")
    spec = tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)

    with tempfile.TemporaryDirectory(prefix="ssd-twin-") as tmp:
        # Keras 3 inside a tf.Module exports variables the converter cannot freeze (the
        # model then outputs NaN): export the Keras model first, and wrap what TF restores.
        model.export(f"{tmp}/keras", format="tf_saved_model", verbose=False)
        raw = _to_tflite(Path(tmp) / "keras", out / "ssd_twin_raw.tflite")
        restored = tf.saved_model.load(f"{tmp}/keras")

        class WithPostProcess(tf.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = restored

            @tf.function(experimental_implements=_implements(params))
            def postprocess(self, box_encodings, class_predictions, anchor_boxes):
                # A placeholder body: the converter puts the op in its place.
                boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
                scores = tf.constant(0.0, dtype=tf.float32, name="scores")
                classes = tf.constant(0.0, dtype=tf.float32, name="classes")
                count = tf.constant(0.0, dtype=tf.float32, name="num_detections")
                return boxes, scores, classes, count

            @tf.function(input_signature=[spec])
            def detect(self, image):
                box_encodings, class_predictions = self.inner.serve(image)
                constant = tf.constant(anchors, dtype=tf.float32, name="anchors")
                # the exporter's order: tf.function reverses the op's outputs
                return self.postprocess(tf.identity(box_encodings),
                                        tf.identity(class_predictions),
                                        tf.identity(constant))[::-1]

        module = WithPostProcess()
        tf.saved_model.save(module, f"{tmp}/post",
                            signatures=module.detect.get_concrete_function())
        post = _to_tflite(Path(tmp) / "post", out / "ssd_twin_postprocess.tflite", True)
    (out / "ssd_twin.json").write_text(json.dumps(
        {"postprocess": asdict(params), "input": {"size": SIZE, "color": "rgb",
                                                  "mean": 127.5, "std": 127.5},
         "seed": seed}, indent=2) + "\n")
    return Twin(out, out / "ssd_twin.keras", raw, post, out / "anchors.npy",
                out / "anchors.txt", params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    twin = make_twin(args.out_dir, args.seed)
    print(f"wrote {twin.raw}, {twin.postprocess} and {twin.anchors}", file=sys.stderr)


if __name__ == "__main__":
    main()
