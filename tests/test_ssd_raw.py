"""The raw-SSD decoder: anchors as the TF Object Detection API makes them, its box coding, NMS
on the host, and the same model's twin that ran TFLite_Detection_PostProcess itself
(models/ssd_twin/make_twin.py: one set of weights, two .tflite files)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli

from edgekit.errors import InvalidModel, UsageError
from edgekit.tasks.detection import (
    RawSsdParams,
    decode,
    decode_ssd_raw,
    read_anchors,
    ssd_anchors,
)

SPEC = ["--preprocess", "mean=127.5,std=127.5"]  # the twin takes -1..1
# the op's attributes in the twin, as flags for the host decoder
AS_THE_OP = ["--postprocess", "score_threshold=0.3,iou=0.6,max_detections=20"]


def test_anchor_layout_of_mobilenet_ssd_300() -> None:
    anchors = ssd_anchors(RawSsdParams(), (300, 300))
    assert anchors.shape == (19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 4) == (1917, 4)
    # the first cell of the lowest layer: its 3 boxes (0.1, 1:1), (0.2, 2:1), (0.2, 1:2)
    c = 0.5 / 19
    assert np.allclose(anchors[:3], [[c, c, 0.1, 0.1],
                                     [c, c, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)],
                                     [c, c, 0.2 * math.sqrt(2), 0.2 / math.sqrt(2)]])
    assert np.allclose(anchors[3, :2], [c, 1.5 / 19])  # then the next column
    # the last layer: one cell, scale 0.95, and the interpolated sqrt(0.95 * 1.0) box last
    assert np.allclose(anchors[-1], [0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)])


def test_anchors_of_a_wide_input_stay_square_in_pixels() -> None:
    anchors = ssd_anchors(RawSsdParams(num_layers=2), (600, 300))
    assert anchors[0, 2] * 300 == pytest.approx(anchors[0, 3] * 600)  # a 1:1 box in pixels


def test_box_decoding_by_hand(tmp_path: Path) -> None:
    """faster_rcnn_box_coder: centre + t / 10 * anchor size, size * exp(t / 5)."""
    anchors = np.array([[0.5, 0.25, 0.2, 0.4]], np.float32)
    encodings = np.array([[[1.0, -2.0, 5 * math.log(2), 0.0]]], np.float32)
    scores = np.array([[[0.1, 0.9, 0.2]]], np.float32)  # background, then two classes
    np.save(tmp_path / "one.npy", anchors)
    decoder = {"name": "ssd-raw", "anchors": str(tmp_path / "one.npy")}
    (found,) = decode([encodings, scores], decoder, (100, 200), ["cat", "dog"])
    yc, xc, h, w = 0.5 + 0.1 * 0.2, 0.25 - 0.2 * 0.4, 0.2 * 2, 0.4
    assert found.label == "cat" and found.class_id == 0 and found.score == pytest.approx(0.9)
    assert np.allclose(found.box, [(xc - w / 2) * 100, (yc - h / 2) * 200,
                                   (xc + w / 2) * 100, (yc + h / 2) * 200], atol=1e-4)
    with pytest.raises(UsageError, match="3 anchors, but the model outputs 1 boxes"):
        decode_ssd_raw([encodings, scores], (100, 200), (),  # one cell makes 3 anchors
                       {"num_layers": 1, "feature_map_sizes": [1]})


def _outputs(count: int, columns: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (1, count, 4)).astype(np.float32),
            rng.random((1, count, columns)).astype(np.float32)]


def test_classes_sigmoid_and_background_columns() -> None:
    outputs = _outputs(1917, 4 + 1)
    decoder = {"name": "ssd-raw", "score_threshold": 0.5, "max_detections": 50}
    everything = decode(outputs, decoder, (300, 300), ["a", "b", "c", "d"])
    assert {d.class_id for d in everything} <= {0, 1, 2, 3} and len(everything) == 50
    only = decode(outputs, {**decoder, "classes": ["b", "3"]}, (300, 300), ["a", "b", "c", "d"])
    assert only and {d.label for d in only} <= {"b", "d"}
    no_background = decode(outputs, {**decoder, "num_classes": 5}, (300, 300), ())
    assert any(d.class_id == 4 for d in no_background)  # column 0 is a class now
    logits = [outputs[0], np.log(outputs[1] / (1 - outputs[1]))]
    same = decode(logits, {**decoder, "apply_sigmoid": True}, (300, 300), ())
    assert [(d.class_id, round(d.score, 5)) for d in same] == \
        [(d.class_id, round(d.score, 5)) for d in everything]


def test_role_and_size_mistakes() -> None:
    with pytest.raises(InvalidModel, match="output_order"):
        decode(_outputs(10, 4), {"name": "ssd-raw"}, (300, 300), ())  # both end in 4
    with pytest.raises(UsageError, match="1917 anchors, but the model outputs 10 boxes"):
        decode(_outputs(10, 5), {"name": "ssd-raw"}, (300, 300), ())
    with pytest.raises(UsageError, match="feature_map_sizes lists 2"):
        decode(_outputs(10, 5), {"name": "ssd-raw", "feature_map_sizes": [3, 2]}, (300, 300))


def test_anchor_files(tmp_path: Path) -> None:
    anchors = ssd_anchors(RawSsdParams(), (300, 300))
    np.savetxt(tmp_path / "a.txt", anchors)
    np.savetxt(tmp_path / "a.csv", anchors, delimiter=",")
    for name in ("a.txt", "a.csv"):
        assert np.allclose(read_anchors(tmp_path / name), anchors)
    np.save(tmp_path / "flat.npy", anchors.reshape(-1))
    (tmp_path / "bad.txt").write_text("1 2 three 4\n")
    for name, words in [("flat.npy", "(N, 4)"), ("bad.txt", "cannot read"),
                        ("missing.npy", "no such file")]:
        with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
            read_anchors(tmp_path / name)


# ------------------------------------------------------------------ against the twin


def _detections(path: Path) -> list[list[dict]]:
    return [json.loads(line)["detections"] for line in path.read_text().splitlines()]


def _same(a: list[list[dict]], b: list[list[dict]]) -> None:
    assert len(a) == len(b)
    for frame_a, frame_b in zip(a, b):
        assert [d["class_id"] for d in frame_a] == [d["class_id"] for d in frame_b]
        assert [d["label"] for d in frame_a] == [d["label"] for d in frame_b]
        for da, db in zip(frame_a, frame_b):
            assert da["score"] == pytest.approx(db["score"], abs=1.1e-4)
            assert np.allclose(da["box"], db["box"], atol=0.11)  # rounded to 0.1 px


def _run(model: Path, source: Path, out: Path, *flags: str) -> list[list[dict]]:
    result = run_cli("run", model, "--source", source, "--save", out, *SPEC, *flags)
    assert result.returncode == 0, result.stderr
    return _detections(out)


@pytest.mark.slow
def test_generated_anchors_are_the_tf_od_apis(ssd_twin) -> None:
    assert np.allclose(ssd_anchors(RawSsdParams(), (300, 300)), np.load(ssd_twin.anchors),
                       atol=1e-6)


@pytest.mark.slow
def test_host_decoding_matches_the_post_processed_twin(ssd_twin, photos: Path, coral: Path,
                                                       tmp_path: Path) -> None:
    labels = ["--postprocess", f"labels={coral / 'coco_labels.txt'}"]
    op = _run(ssd_twin.postprocess, photos, tmp_path / "op.jsonl", "--postprocess", "decoder=ssd",
              *labels)
    assert sum(map(len, op)) > 50  # the twin finds things on these photos
    host = _run(ssd_twin.raw, photos, tmp_path / "host.jsonl", "--postprocess", "decoder=ssd-raw",
                *AS_THE_OP, *labels)
    _same(host, op)
    for anchors in (ssd_twin.anchors, ssd_twin.anchors_text):  # the op's own anchors, as files
        _same(_run(ssd_twin.raw, photos, tmp_path / "file.jsonl", "--postprocess",
                   "decoder=ssd-raw",
                   "--postprocess", f"anchors={anchors}", *AS_THE_OP, *labels), op)
    few = _run(ssd_twin.raw, photos, tmp_path / "few.jsonl", "--postprocess", "decoder=ssd-raw",
               *AS_THE_OP, *labels, "--postprocess", "classes=cat,45")  # by name and by id
    kept = [d for frame in few for d in frame]
    assert kept and {(d["class_id"], d["label"]) for d in kept} <= {(16, "cat"),
                                                                    (45, "wine glass")}


@pytest.mark.slow
def test_regular_nms_matches_the_ops(ssd_twin, photos: Path, tmp_path: Path) -> None:
    import importlib

    make_twin = importlib.import_module("edgekit_ssd_twin")  # loaded by the fixture
    twin = make_twin.make_twin(tmp_path / "regular",
                               params=make_twin.PostProcess(use_regular_nms=True))
    op = _run(twin.postprocess, photos, tmp_path / "op.jsonl", "--postprocess", "decoder=ssd")
    host = _run(twin.raw, photos, tmp_path / "host.jsonl", "--postprocess", "decoder=ssd-raw",
                *AS_THE_OP,
                "--postprocess", "class_agnostic_nms=false")
    _same(host, op)


@pytest.mark.slow
def test_anchors_that_do_not_fit_are_one_line_exit_2(ssd_twin, photos: Path,
                                                     tmp_path: Path) -> None:
    np.save(short := tmp_path / "short.npy", np.load(ssd_twin.anchors)[:100])
    for flags, words in [(["--postprocess", f"anchors={short}"], ["100 anchors", "1917 boxes"]),
                         (["--postprocess", "num_layers=5"], ["anchor parameters", "1917"]),
                         (["--postprocess", f"anchors={tmp_path / 'none.npy'}"],
                          ["--postprocess anchors", "no such file"])]:
        result = run_cli("run", ssd_twin.raw, "--source", photos, "--postprocess",
                         "decoder=ssd-raw",
                         *SPEC, *flags)
        assert result.returncode == 2, result.stderr
        assert_clean_error(result, *words)


@pytest.mark.slow
def test_convert_records_the_decoder_and_ships_the_anchors(ssd_twin, photos: Path, coral: Path,
                                                           tmp_path: Path) -> None:
    """A Keras raw-SSD model converted with its decoder given as flags: the manifest keeps
    them (and where they came from), the anchors file travels in the bundle, and the bundle
    then finds what the twin's op finds."""
    bundle = tmp_path / "bundle"
    result = run_cli("convert", ssd_twin.keras, "-o", bundle, "--formats", "tflite-fp32",
                     "--postprocess", "task=detection,decoder=ssd-raw",
                         "--postprocess", f"anchors={ssd_twin.anchors}",
                     *AS_THE_OP, "--labels", coral / "coco_labels.txt", *SPEC)
    assert result.returncode == 0, result.stderr
    assert "decoder ssd-raw: score_threshold 0.3 (flag), iou_threshold 0.6 (flag)" in \
        result.stderr
    manifest = json.loads((bundle / "edgekit.json").read_text())
    decoder = manifest["decoder"]
    assert decoder["name"] == "ssd-raw" and decoder["anchors"] == "anchors.npy"
    assert decoder["iou_threshold"] == 0.6 and decoder["origin"]["iou_threshold"] == "flag"
    assert manifest["input"]["mean"] == [127.5] and manifest["input"]["origin"]["mean"] == "flag"
    assert np.array_equal(np.load(bundle / "anchors.npy"), np.load(ssd_twin.anchors))
    from edgekit.deploy.plan import ShippedFile, plan_release
    from edgekit.deploy.targets import find_target
    from edgekit.deploy.wheels import WheelInfo

    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    (staging := tmp_path / "staging").mkdir()
    plan = plan_release(bundle, find_target("rpi4-cpu"), wheel,
                        WheelInfo("edgekit", "0.1.0", "", ()), staging)
    assert "bundle/anchors.npy" in [f.path for f in plan.files]  # a deploy ships them too
    moved = tmp_path / "moved"
    bundle.rename(moved)  # the anchors are found beside the manifest, wherever it is
    op = _run(ssd_twin.postprocess, photos, tmp_path / "op.jsonl", "--postprocess", "decoder=ssd",
              "--postprocess", f"labels={coral / 'coco_labels.txt'}")
    result = run_cli("run", moved, "--source", photos, "--save", tmp_path / "b.jsonl")
    assert result.returncode == 0, result.stderr
    assert "iou_threshold 0.6 (bundle)" in result.stdout
    _same(_detections(tmp_path / "b.jsonl"), op)
