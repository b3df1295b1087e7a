"""Detection task code: boxes, NMS, the three decoders, letterbox geometry, the scene maker."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import InvalidData, InvalidModel, UsageError
from edgekit.preprocess import fit, letterbox_transform
from edgekit.tasks.detection import (
    DECODERS,
    Detection,
    box_iou,
    class_nms,
    decode,
    decode_edgekit_grid,
    decode_ssd_postprocess,
    decode_yolo,
    nms,
    to_frame,
)

RECIPE = Path(__file__).resolve().parents[1] / "models" / "digit_detector"
LABELS = [str(d) for d in range(10)]


def load_recipe_module(name: str):
    """A module from models/digit_detector (not a package), loaded by path."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    key = f"digit_detector_{name}_under_test"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, RECIPE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def boxes_of(found: list[Detection]) -> np.ndarray:
    return np.array([d.box for d in found])


# ---------------------------------------------------------------------------- boxes and NMS


def test_box_iou_hand_worked():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 4 / 100]])


def test_nms_keeps_best_of_each_overlapping_group():
    boxes = np.array([
        [0, 0, 10, 10],  # 0.80
        [1, 1, 11, 11],  # 0.90: IoU 81/119 = 0.68 with the first
        [20, 20, 30, 30],  # 0.70: alone
        [21, 20, 31, 30],  # 0.95: IoU 90/110 = 0.82 with the third
        [0, 5, 10, 15],  # 0.60: IoU 1/3 with the first, 36/164 with the second
    ], float)
    scores = np.array([0.8, 0.9, 0.7, 0.95, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 4]
    assert nms(boxes, scores, 0.3).tolist() == [3, 1]
    assert nms(boxes, scores, 0.5, max_detections=2).tolist() == [3, 1]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_class_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    assert class_nms(boxes, scores, np.array([1, 2, 1]), 0.5).tolist() == [0, 1]
    assert class_nms(boxes, scores, np.array([1, 1, 1]), 0.5).tolist() == [0]


# ---------------------------------------------------------------------------- edgekit-grid


def grid_heads(classes: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objectness, box and class tensors with one object at row 2, column 3 of an 8x8 grid."""
    objectness = np.zeros((1, 8, 8, 1), np.float32)
    box = np.full((1, 8, 8, 4), 0.5, np.float32)
    cls = np.zeros((1, 8, 8, classes), np.float32)
    objectness[0, 2, 3, 0] = 0.9
    box[0, 2, 3] = [0.5, 0.25, 0.25, 0.5]  # offsets 0.5 and 0 cells; 16 x 32 px at 128 x 128
    cls[0, 2, 3, classes - 3] = 0.8
    return objectness, box, cls


def test_grid_decode_three_outputs_in_any_order():
    objectness, box, cls = grid_heads()
    for outputs in ([objectness, box, cls], [box, objectness, cls], [cls, box, objectness]):
        (found,) = decode_edgekit_grid(outputs, (128, 128), LABELS)
        assert (found.label, found.class_id) == ("7", 7)
        assert found.score == pytest.approx(0.72)
        np.testing.assert_allclose(found.box, (48, 16, 64, 48), atol=1e-4)


def test_grid_decode_concatenated_output_and_threshold():
    grid = np.concatenate(grid_heads(), axis=-1)
    (found,) = decode_edgekit_grid([grid], (128, 128), LABELS)
    np.testing.assert_allclose(found.box, (48, 16, 64, 48), atol=1e-4)
    assert decode_edgekit_grid([grid], (128, 128), LABELS, {"score_threshold": 0.8}) == []


def test_grid_decode_scales_to_non_square_input():
    (found,) = decode_edgekit_grid(list(grid_heads()), (256, 64), LABELS)
    np.testing.assert_allclose(found.box, (96, 8, 128, 24), atol=1e-4)


def test_grid_decode_needs_output_order_when_channels_are_ambiguous():
    objectness, box, cls = grid_heads(classes=4)
    with pytest.raises(InvalidModel, match="output_order"):
        decode_edgekit_grid([objectness, box, cls], (128, 128))
    (found,) = decode_edgekit_grid(
        [cls, objectness, box], (128, 128),
        params={"output_order": ["classes", "objectness", "box"]},
    )
    assert found.class_id == 1 and found.label == "1"


def test_grid_decode_rejects_unknown_parameters():
    with pytest.raises(InvalidModel, match="score_treshold"):
        decode_edgekit_grid(list(grid_heads()), (128, 128), params={"score_treshold": 0.5})


# ---------------------------------------------------------------------------- SSD


def ssd_tensors() -> dict[str, np.ndarray]:
    return {
        "boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.75, 1.0],
                            [0.0, 0.0, 0.0, 0.0]]], np.float32),
        "classes": np.array([[2.0, 0.0, 17.0, 0.0]], np.float32),
        "scores": np.array([[0.9, 0.2, 0.6, 0.95]], np.float32),  # the 4th is past count
        "count": np.array([3.0], np.float32),
    }


@pytest.mark.parametrize("order", [
    ("boxes", "classes", "scores", "count"),  # TF Object Detection API
    ("scores", "boxes", "count", "classes"),  # an order some exported models use
    ("count", "scores", "classes", "boxes"),
])
def test_ssd_decode_tells_outputs_apart(order):
    t = ssd_tensors()
    found = decode_ssd_postprocess([t[name] for name in order], (200, 100), ["a", "b", "c"])
    assert [(d.label, d.class_id) for d in found] == [("c", 2), ("17", 17)]
    assert [d.score for d in found] == pytest.approx([0.9, 0.6])
    np.testing.assert_allclose(boxes_of(found), [[40, 10, 120, 50], [100, 50, 200, 75]],
                               atol=1e-4)


def test_ssd_decode_with_explicit_order_and_class_offset():
    t = ssd_tensors()
    t["classes"] = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)  # whole numbers within [0, 1]
    t["scores"] = np.array([[1.0, 0.0, 1.0, 0.0]], np.float32)  # so are these: ambiguous
    order = ["scores", "classes", "boxes", "count"]
    params = {"output_order": order, "class_offset": 1, "score_threshold": 0.5}
    found = decode_ssd_postprocess([t[name] for name in order], (100, 100), params=params)
    assert [d.class_id for d in found] == [2, 1]
    with pytest.raises(InvalidModel, match="output_order"):
        decode_ssd_postprocess(list(t.values()), (1, 1), params={"output_order": ["boxes"]})


def test_ssd_decode_rejects_wrong_outputs():
    with pytest.raises(InvalidModel, match="4 output"):
        decode_ssd_postprocess([np.zeros((1, 10, 4))], (100, 100))


# ---------------------------------------------------------------------------- YOLO


def yolo_rows() -> np.ndarray:
    """Four candidates (N, 4 + 3): two overlapping of class 1, one of class 0, one weak."""
    return np.array([
        [50, 40, 20, 20, 0.1, 0.9, 0.0],
        [52, 40, 20, 20, 0.1, 0.7, 0.0],
        [100, 100, 40, 20, 0.8, 0.1, 0.0],
        [10, 10, 4, 4, 0.0, 0.0, 0.1],
    ], np.float32)


@pytest.mark.parametrize("layout", ["rows", "channels_first"])
def test_yolo_decode_either_layout_with_nms(layout):
    rows = yolo_rows()
    raw = rows[None] if layout == "rows" else rows.T[None]
    found = decode_yolo([raw], (160, 160), ["cat", "dog", "eel"])
    assert [(d.label, d.score) for d in found] == [("dog", pytest.approx(0.9)),
                                                   ("cat", pytest.approx(0.8))]
    np.testing.assert_allclose(boxes_of(found), [[40, 30, 60, 50], [80, 90, 120, 110]])


def test_yolo_decode_normalised_coordinates_and_objectness():
    rows = yolo_rows()
    normalised = rows.copy()
    normalised[:, :4] /= 160.0
    objectness = np.insert(normalised, 4, 0.5, axis=1)  # v5 style: cx, cy, w, h, obj, classes
    found = decode_yolo([objectness[None]], (160, 160),
                        params={"objectness": True, "num_classes": 3, "score_threshold": 0.3})
    assert [d.class_id for d in found] == [1, 0]
    assert [d.score for d in found] == pytest.approx([0.45, 0.4])
    np.testing.assert_allclose(boxes_of(found), [[40, 30, 60, 50], [80, 90, 120, 110]],
                               atol=1e-4)


def test_yolo_decode_checks_channel_count():
    with pytest.raises(InvalidModel, match="num_classes"):
        decode_yolo([yolo_rows()[None]], (160, 160), params={"num_classes": 80})


# ---------------------------------------------------------------------------- registry


def test_registry_runs_the_named_decoder():
    assert set(DECODERS) == {"edgekit-grid", "ssd", "ssd-raw", "yolo"}
    card = {"name": "edgekit-grid", "score_threshold": 0.3, "iou_threshold": 0.45}
    (found,) = decode(list(grid_heads()), card, (128, 128), LABELS)
    assert found.class_id == 7
    with pytest.raises(UsageError, match="edgekit-grid, ssd, ssd-raw, yolo"):
        decode([], {"name": "retinanet"}, (128, 128))


# ---------------------------------------------------------------------------- geometry


def test_letterbox_pads_and_maps_back():
    frame = np.full((480, 640, 3), 200, np.uint8)
    image, transform = fit(frame, 128, 128, "letterbox")
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert (transform.scale_x, transform.pad_x, transform.pad_y) == (0.2, 0, 16)
    assert (image[:16] == 114).all() and (image[-16:] == 114).all()
    assert (image[16:112] == 200).all()
    boxes = np.array([[0, 0, 640, 480], [100, 50, 300, 250]], float)
    inside = transform.boxes_to_input(boxes)
    np.testing.assert_allclose(inside, [[0, 16, 128, 112], [20, 26, 60, 66]])
    np.testing.assert_allclose(transform.boxes_to_frame(inside), boxes)


def test_to_frame_clips_and_drops_boxes_in_the_padding():
    transform = letterbox_transform((640, 480), (128, 128))
    found = [Detection("3", 3, 0.9, (-4.0, 10.0, 20.0, 26.0)),
             Detection("4", 4, 0.8, (0.0, 0.0, 128.0, 10.0))]  # inside the top padding
    (moved,) = to_frame(found, transform)
    assert (moved.label, moved.score) == ("3", 0.9)
    np.testing.assert_allclose(moved.box, (0, 0, 100, 50))


def test_resize_stretches_and_maps_back():
    frame = np.zeros((100, 400), np.uint8)
    image, transform = fit(frame, 200, 200, "stretch")
    assert image.shape == (200, 200)
    np.testing.assert_allclose(transform.boxes_to_frame([[50, 100, 100, 200]]),
                               [[100, 50, 200, 100]])
    with pytest.raises(InvalidData):
        fit(np.zeros(5), 10, 10, "letterbox")


# ---------------------------------------------------------------------------- the recipe's data


def test_composed_scenes_are_inside_the_image_and_do_not_overlap():
    scenes = load_recipe_module("scenes")
    rng = np.random.default_rng(7)
    for scene in scenes.compose_scenes(rng, 20, "test", size=(160, 120)):
        assert scene.image.shape == (120, 160, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.classes) <= 5 and len(scene.boxes) == len(scene.classes)
        assert set(scene.classes.tolist()) <= set(range(10))
        x1, y1, x2, y2 = scene.boxes.T
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 160).all() and (y2 <= 120).all()
        assert (x2 - x1 >= 4).all() and (y2 - y1 >= 8).all()
        iou = box_iou(scene.boxes, scene.boxes)
        assert (iou[~np.eye(len(iou), dtype=bool)] == 0).all()


def test_digit_splits_are_disjoint():
    scenes = load_recipe_module("scenes")
    train = {d.ink.tobytes() for d in scenes.digits("train")}
    test = {d.ink.tobytes() for d in scenes.digits("test")}
    assert len(train) > 1000 and len(test) > 300
    assert len(train & test) <= 2  # load_digits holds a few exact duplicate scans
    assert not set(scenes.TRAIN_PHOTOS) & set(scenes.TEST_PHOTOS)


def test_make_clip_writes_video_and_matching_ground_truth(tmp_path):
    cv2 = pytest.importorskip("cv2")
    make_clip = load_recipe_module("make_clip")
    path = make_clip.make_clip(tmp_path / "clip.avi", seconds=1.0, fps=6, seed=3)
    truth = json.loads(path.with_suffix(".json").read_text())
    assert (truth["frames"], truth["width"], truth["height"]) == (6, 640, 480)
    assert len(truth["objects"]) == 6
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 6
    for objects in truth["objects"]:
        assert len(objects) == 3
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
            assert obj["label"] == str(obj["class_id"])


def test_the_docs_list_every_decoder_parameter_as_declared() -> None:
    """docs/preprocessing.md's lists are each decoder's fields, described by the schema."""
    from edgekit.tasks.detection import PARAMS, describe_params

    page = (Path(__file__).resolve().parents[1] / "docs" / "preprocessing.md").read_text()
    for name in PARAMS:
        block = page.split(f"`{name}`:\n\n```text\n", 1)[1].split("```", 1)[0]
        assert block.splitlines() == describe_params(name), name


@pytest.mark.parametrize(("param", "says"), [
    ("size_scale=big", "edgekit-grid size_scale must be a finite number, not 'big'"),
    ("size_scale=-1", "edgekit-grid size_scale -1 must be 0 or more"),
    ("class_agnostic_nms=maybe", "class_agnostic_nms must be true or false, not 'maybe'"),
])
def test_a_decoder_parameter_is_checked_by_its_declaration(param: str, says: str) -> None:
    from edgekit.tasks.detection import DetectionOptions, configure

    with pytest.raises(UsageError) as caught:
        configure({"name": "edgekit-grid"}, DetectionOptions(params=(param,)))
    assert says in str(caught.value)
    with pytest.raises(UsageError, match="yolo layout must be one of auto, NC, CN, not 'NHWC'"):
        configure({"name": "yolo"}, DetectionOptions(params=("layout=NHWC",)))
    with pytest.raises(InvalidModel, match="edgekit-grid max_detections 0 must be 1 or more"):
        decode([np.zeros((1, 2, 2, 6), np.float32)], {"name": "edgekit-grid",
                                                       "max_detections": 0}, (32, 32))
