"""Every task through the one camera loop (issue 21): a classifier's top-k and smoothing, a
segmenter's mask (a bare ONNX model made here: a pixel's class is whether it is red), any
model's raw outputs, each through --jsonl, --save, the live view and /metrics."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import cli_json, run_cli
from live_view import get, wait_for
from test_serve_cli import TOKEN, serving

SIZE = 32  # the segmenter's input: 32 x 32 RGB


def red_segmenter(path: Path) -> Path:
    """An ONNX model, NHWC 1x32x32x3 float in [0, 1] -> 1x32x32x2 class scores: class 1
    where red is over 0.5 and green and blue under it, else class 0 (background)."""
    import onnx
    from onnx import TensorProto, helper

    def const(name: str, values: list, dtype=TensorProto.INT64) -> onnx.TensorProto:
        return helper.make_tensor(name, dtype, [len(values)], values)

    nodes = [
        helper.make_node("Slice", ["x", "c0", "c1", "axis"], ["r"]),
        helper.make_node("Slice", ["x", "c1", "c3", "axis"], ["gb"]),
        helper.make_node("ReduceMax", ["gb"], ["gb_max"], axes=[3], keepdims=1),
        helper.make_node("Sub", ["r", "gb_max"], ["red"]),  # > 0 where red stands out
        helper.make_node("Neg", ["red"], ["not_red"]),
        helper.make_node("Concat", ["not_red", "red"], ["scores"], axis=3),
    ]
    graph = helper.make_graph(
        nodes, "red_segmenter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, SIZE, SIZE, 2])],
        [const("c0", [0]), const("c1", [1]), const("c3", [3]), const("axis", [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def red_squares(folder: Path, count: int = 6) -> list[tuple[Path, np.ndarray]]:
    """Images of several sizes, each with a red rectangle on grey; and each one's true mask."""
    folder.mkdir()
    made = []
    rng = np.random.default_rng(3)
    for i in range(count):
        height, width = (120, 160) if i % 2 else (90, 60)
        image = np.full((height, width, 3), 90, np.uint8)
        x, y = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        image[y:y + height // 3, x:x + width // 3] = (0, 0, 230)  # BGR red
        truth = np.zeros((height, width), np.uint8)
        truth[y:y + height // 3, x:x + width // 3] = 1
        path = folder / f"shot_{i:02d}.png"
        cv2.imwrite(str(path), image)
        made.append((path, truth))
    return made


@pytest.fixture
def segmenter(tmp_path: Path) -> Path:
    return red_segmenter(tmp_path / "red.onnx")


def test_a_segmenter_through_the_loop(segmenter: Path, tmp_path: Path) -> None:
    """The mask is at each frame's size, names follow the images, shares go to --jsonl, and
    the loop's mask is what the Python API gives for the same image."""
    from edgekit.model import load_model
    from edgekit.preprocess import prepare
    from edgekit.tasks.segmentation import class_ids, mask_to_frame

    shots = red_squares(tmp_path / "shots")
    masks, lines = tmp_path / "masks", tmp_path / "seg.jsonl"
    report = cli_json("run", segmenter, "--postprocess", "task=segmentation", "--source",
                      tmp_path / "shots",
                      "--save", f"{masks}/", "--save", lines,
                      "--preprocess", "resize=letterbox", "--postprocess",
                      f"labels={_labels(tmp_path, 'background', 'red')}",
                      "--json")
    assert report["task"] == "segmentation" and report["frames"] == len(shots)
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    with load_model(segmenter, spec=_letterbox()) as model:
        for (path, truth), record in zip(shots, records):
            saved = cv2.imread(str(masks / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
            assert saved.dtype == np.uint8 and saved.shape == truth.shape
            agreement = (saved == truth).mean()
            assert agreement > 0.97, (path.name, agreement)  # 32 x 32 scaled up: edges blur
            image = cv2.imread(str(path))
            tensor, transform = prepare(image, model.spec)
            api = mask_to_frame(class_ids(model.predict(tensor)[0]), transform,
                                (model.spec.width, model.spec.height))
            assert np.array_equal(api, saved)
            assert record["image"] == path.name
            assert record["shares"]["red"] == pytest.approx((saved == 1).mean(), abs=1e-4)
            assert sum(record["shares"].values()) == pytest.approx(1, abs=1e-3)
    # the mask drawn over the frames (a video holds frames of one size: the first three)
    same = tmp_path / "same"
    same.mkdir()
    for path, _ in shots[::2]:
        (same / path.name).write_bytes(path.read_bytes())
    cli_json("run", segmenter, "--postprocess", "task=segmentation", "--source", same, "--save",
             tmp_path / "seg.avi", "--json")
    capture = cv2.VideoCapture(str(tmp_path / "seg.avi"))
    ok, drawn = capture.read()
    capture.release()
    image = cv2.imread(str(shots[0][0]))
    assert ok and drawn.shape == image.shape
    red = shots[0][1] == 1
    assert np.abs(drawn[red].astype(int) - image[red]).mean() > 20  # the overlay is there


def test_a_segmenter_on_every_cpu_backend_agrees(segmenter: Path, tmp_path: Path) -> None:
    red_squares(tmp_path / "shots", count=3)
    found = {}
    for backend in ("onnxruntime", "openvino"):
        lines = tmp_path / f"{backend}.jsonl"
        cli_json("run", segmenter, "--postprocess", "task=segmentation", "--backend", backend,
                 "--source",
                 tmp_path / "shots", "--save", lines, "--json")
        found[backend] = [json.loads(x)["shares"] for x in lines.read_text().splitlines()]
    assert found["onnxruntime"] == found["openvino"]


def test_a_classifier_through_the_loop(lenet_bundle: Path, demo_clip: Path,
                                       tmp_path: Path) -> None:
    """Top-k and smoothing in --jsonl, bars in --save, the clip's summary; each frame's raw
    top-1 is what edgekit classify's function gives for the same frame."""
    from edgekit.model import load_model

    lines, video = tmp_path / "c.jsonl", tmp_path / "c.avi"
    report = cli_json("run", lenet_bundle, "--source", demo_clip, "--postprocess",
                      "top_k=3,smooth=5", "--save", lines, "--save", video, "--capture",
                      "max_frames=30",
                      "--json")
    assert report["task"] == "classification" and report["frames"] == 30
    assert "top-3, smoothed over the last 5 frames" in report["decoder"]
    summary = report["summary"]
    assert sum(summary["top1_frames"].values()) == 30
    assert summary["top1_changes"] >= 0 and summary["top1_seconds"]
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(records) == 30
    capture = cv2.VideoCapture(str(demo_clip))
    with load_model(lenet_bundle) as model:
        for record in records:
            ok, frame = capture.read()
            assert ok
            assert len(record["classes"]) == 3 and len(record["smoothed"]) == 3
            assert record["top1"] == record["classes"][0]
            best = model.classify(frame, k=1)[0]
            assert (record["top1"]["class_id"], record["top1"]["label"]) == (best.id,
                                                                              best.label)
            assert record["top1"]["score"] == pytest.approx(best.score, abs=1e-3)
            assert set(record["smoothed_top1"]) == {"label", "class_id", "score"}
    capture.release()
    assert video.stat().st_size > 1000
    text = run_cli("run", lenet_bundle, "--source", demo_clip, "--capture", "max_frames=10")
    assert text.returncode == 0, text.stderr
    assert "task: classification, top-5" in text.stdout and "top-1 per class:" in text.stdout


def test_raw_outputs_of_any_model(lenet_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    """--task generic: each output's shape and summary per frame; --raw-outputs: the arrays."""
    lines, raw = tmp_path / "g.jsonl", tmp_path / "raw.npz"
    report = cli_json("run", lenet_bundle, "--postprocess", "task=generic", "--source", demo_clip,
                      "--capture", "max_frames=4", "--save", lines, "--save", raw, "--json")
    assert report["task"] == "generic" and str(raw) in report["outputs"]
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert records[0]["outputs"][0]["shape"] == [1, 10]
    with np.load(raw) as arrays:
        assert sorted(arrays.files) == [f"frame{i}_out0.npy"[:-4] for i in range(4)]
        first = arrays["frame0_out0"]
    assert first.shape == (1, 10)
    assert int(first.argmax()) == records[0]["outputs"][0]["argmax"]
    assert float(first.mean()) == pytest.approx(records[0]["outputs"][0]["mean"], abs=1e-5)
    assert zipfile.is_zipfile(raw) and not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
def test_a_classifier_in_the_live_view(lenet_bundle: Path, demo_clip: Path) -> None:
    with serving(lenet_bundle, "--source", demo_clip, "--capture", "repeat=on", "--capture",
                 "realtime=30", "--postprocess", "smooth=3", "--serve", "0",
                 env={"EDGEKIT_SERVE_TOKEN": TOKEN}) as served:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert wait_for(lambda: served.stats()["frames"] >= 3, 30)
        latest = served.stats()["latest"]
        assert latest["task"] == "classification" and len(latest["classes"]) == 5
        assert latest["smoothed_top1"]["label"]
        metrics = get(served.port, "/metrics", headers).body.decode()
        series = [line for line in metrics.splitlines()
                  if line.startswith("edgekit_class_frames_total{")]
        assert series and all('class="' in line for line in series)
        assert sum(float(line.rsplit(" ", 1)[1]) for line in series) > 0
        page = get(served.port, "/app.js", headers).body.decode()
        assert "top classes" in page


def _labels(folder: Path, *names: str) -> Path:
    path = folder / "labels.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def _letterbox():
    from edgekit.preprocess import SpecOptions

    return SpecOptions(resize="letterbox")


@pytest.fixture(scope="module")
def digit_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification clip (models/lenet5_digits/make_clip.py): 60 frames, a labels
    sidecar beside it."""
    from edgekit.demo import make_classification_clip

    return make_classification_clip(tmp_path_factory.mktemp("digits") / "digits.avi",
                                    frames=60)


def test_a_classifier_scored_against_the_clips_labels(lenet_bundle: Path,
                                                      digit_clip: Path) -> None:
    """The loop's top-1 accuracy on the labelled clip is the accuracy of edgekit classify's
    function on the same frames (the one definition, fidelity.agreeing)."""
    from edgekit.loop.labels import read_sidecar
    from edgekit.model import load_model

    report = cli_json("run", lenet_bundle, "--source", digit_clip, "--json")
    assert report["accuracy_frames"] == 60 and report["accuracy_source"].endswith(".labels.txt")
    with load_model(lenet_bundle) as model:
        truth = read_sidecar(digit_clip.with_name("digits.labels.txt"), model.labels, 60)
        capture = cv2.VideoCapture(str(digit_clip))
        right = 0
        for i in range(60):
            ok, frame = capture.read()
            right += model.classify(frame, k=1)[0].id == truth.by_index[i]
        capture.release()
    assert report["accuracy"] == pytest.approx(right / 60)
    assert report["accuracy"] > 0.8


def test_compare_a_classifier(lenet_bundle: Path, digit_clip: Path, tmp_path: Path) -> None:
    """With labels: each backend's top-1 accuracy; without: its agreement with the first."""
    rows = cli_json("compare", lenet_bundle, "--source", digit_clip, "--backends",
                    "tflite,onnxruntime", "-q", "--json")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["task"] == "classification" and r["accuracy"] > 0.8 for r in rows)
    bare = tmp_path / "bare.avi"
    bare.write_bytes(digit_clip.read_bytes())  # no sidecar beside it
    table = run_cli("compare", lenet_bundle, "--source", bare, "--backends", "tflite,onnxruntime",
                    "-q")
    assert table.returncode == 0, table.stderr
    assert "top-1 = tflite's" in table.stdout and "100.0%" in table.stdout


def test_a_folder_with_class_sub_folders(lenet_bundle: Path, digit_clip: Path,
                                         tmp_path: Path) -> None:
    """An image folder with a sub-folder per class: frames named SUB/FILE, scored by folder."""
    capture = cv2.VideoCapture(str(digit_clip))
    lines = digit_clip.with_name("digits.labels.txt").read_text().splitlines()
    runs = [line.split() for line in lines if line and not line.startswith("#")]
    for span, label in runs[:2]:
        first = int(span.split("-")[0])
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        ok, frame = capture.read()
        (tmp_path / "shots" / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "shots" / label / f"f{first}.png"), frame)
    capture.release()
    lines_out = tmp_path / "f.jsonl"
    report = cli_json("run", lenet_bundle, "--source", tmp_path / "shots", "--save", lines_out,
                      "--json")
    assert report["accuracy_frames"] == 2 and "sub-folders" in report["accuracy_source"]
    names = [json.loads(x)["image"] for x in lines_out.read_text().splitlines()]
    assert names == sorted(f"{label}/f{span.split('-')[0]}.png" for span, label in runs[:2])


@pytest.mark.parametrize("text,says", [
    ("0-9 1\n5-12 2\n", "frame 5 is already labelled"),
    ("0-99 1\n", "beyond the clip's 60 frames"),
    ("9-3 1\n", "ends before it starts"),
    ("0-9 seven\n", "not one of the model's classes"),
    ("frames 0 to 9: 1\n", "is not 'FIRST-LAST LABEL'"),
])
def test_a_bad_labels_sidecar_is_one_line(lenet_bundle: Path, digit_clip: Path, tmp_path: Path,
                                          text: str, says: str) -> None:
    clip = tmp_path / "c.avi"
    clip.write_bytes(digit_clip.read_bytes())
    (tmp_path / "c.labels.txt").write_text(text)
    result = run_cli("run", lenet_bundle, "--source", clip, "--save", tmp_path / "o.jsonl")
    assert result.returncode == 1 and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists() and not list(tmp_path.glob(".*partial*"))


def test_save_masks_never_writes_into_what_is_read(segmenter: Path, tmp_path: Path) -> None:
    from conftest import assert_clean_error

    red_squares(tmp_path / "shots", count=2)
    for folder, says in ((tmp_path / "shots" / "masks", "a folder this command reads"),
                         (tmp_path / "red.onnx", "that is a file")):
        assert_clean_error(run_cli("run", segmenter, "--postprocess", "task=segmentation",
                                   "--source",
                                   tmp_path / "shots", "--save", f"{folder}/"), says)
    assert not (tmp_path / "shots" / "masks").exists()
