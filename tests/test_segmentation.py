"""The bundled digit segmenter (models/digit_segmenter) through convert and the loop: per-pixel
agreement and mean-IoU agreement with Keras for every CPU artifact (int8 included), accuracy
against the validation masks, and validation masks given as a folder (issue 21)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SEGMENTER, assert_clean_error, cli_json, run_cli

pytestmark = pytest.mark.slow


def test_every_cpu_artifact_agrees_with_keras_per_pixel(segmenter_bundle: Path) -> None:
    from edgekit.bundle.manifest import read_manifest
    from edgekit.bundle.tables import conversion_table

    manifest = read_manifest(segmenter_bundle)
    assert manifest.task == "segmentation" and manifest.validation["metric"] == "pixel"
    assert manifest.validation["masks"] and manifest.labels[0] == "background"
    keras = manifest.validation["keras_accuracy"]
    assert 0.5 < keras <= 1
    built = [a for a in manifest.artifacts if a.ok]
    assert {a.format for a in built} >= {"tflite-fp32", "tflite-int8", "onnx", "openvino-fp32"}
    for a in built:
        f = a.fidelity
        assert f.top1_agreement >= 0.99, (a.format, f.top1_agreement)  # the goal
        assert 0.9 <= f.miou_agreement <= 1 and 0.5 < f.accuracy <= 1 and 0 < f.miou <= 1
        assert abs(f.accuracy - keras) <= 1 - f.top1_agreement + 1e-9
    table = conversion_table(manifest)
    assert "(mIoU " in table and "agreement and accuracy are per pixel" in table


def test_verify_and_the_smoke_report_give_the_masks_agreement(segmenter_bundle: Path) -> None:
    """What deploy's smoke test runs on the device (edgekit verify --json) and what it reports:
    the segmenter's pixel and mIoU agreement with Keras, as convert gives them."""
    from edgekit.bundle.manifest import read_manifest
    from edgekit.deploy.report import _smoke_lines
    from edgekit.deploy.smoke import smoke_report

    answer = cli_json("verify", segmenter_bundle, "--backend", "tflite", "--format",
                      "tflite-int8", "--samples", "0", "--json")
    assert answer["task"] == "segmentation" and answer["agreement"] is None
    convert = next(a.fidelity for a in read_manifest(segmenter_bundle).artifacts
                   if a.format == "tflite-int8")
    assert answer["pixel_agreement"] == pytest.approx(convert.top1_agreement, abs=1e-6)
    assert answer["miou_agreement"] == pytest.approx(convert.miou_agreement, abs=1e-6)
    text = run_cli("verify", segmenter_bundle, "--backend", "tflite", "--samples", "0").stdout
    assert f"{100 * answer['pixel_agreement']:.2f}% of pixels in Keras's class" in text
    smoke = smoke_report({"verify": answer, "verify_code": 0, "backends": []},
                         segmenter_bundle, 0, workstation=lambda *_: ([], ""))
    assert smoke.pixel_agreement == answer["pixel_agreement"]
    assert ["masks", f"{100 * answer['pixel_agreement']:.2f}% of pixels in Keras's class "
            f"(mIoU agreement {answer['miou_agreement']:.3f})"] in _smoke_lines(smoke)


def test_the_loop_mask_is_the_apis(segmenter_bundle: Path, demo_clip: Path,
                                   tmp_path: Path) -> None:
    """The loop on the demo clip: each --save-masks PNG equals what the Python API gives for
    the same frame, on two backends; the bundle's labels name the classes in --jsonl."""
    from edgekit.model import load_model
    from edgekit.preprocess import prepare
    from edgekit.tasks.segmentation import class_ids, mask_to_frame

    capture = cv2.VideoCapture(str(demo_clip))
    frames = [capture.read()[1] for _ in range(10)]
    capture.release()
    for backend in ("tflite", "openvino"):
        masks, lines = tmp_path / backend, tmp_path / f"{backend}.jsonl"
        report = cli_json("run", segmenter_bundle, "--backend", backend, "--source", demo_clip,
                          "--capture", "max_frames=10", "--save", f"{masks}/", "--save", lines,
                          "--json")
        assert report["task"] == "segmentation"
        records = [json.loads(x) for x in lines.read_text().splitlines()]
        assert "background" in records[0]["shares"]
        with load_model(segmenter_bundle, backend=backend) as model:
            for i, frame in enumerate(frames):
                tensor, transform = prepare(frame, model.spec)
                api = mask_to_frame(class_ids(model.predict(tensor)[0]), transform,
                                    (model.spec.width, model.spec.height))
                saved = cv2.imread(str(masks / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
                assert saved.shape == frame.shape[:2] and np.array_equal(saved, api), i


def test_validation_masks_from_a_folder(tmp_path: Path) -> None:
    """--val DIR with images/ and masks/: each mask brought to the input as its image is; a
    mask missing or named otherwise is one line."""
    data = np.load(SEGMENTER / "val.npz")
    folder = tmp_path / "val"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(8):
        image = (data["x"][i].astype(np.float32) * 255).round().astype(np.uint8)
        big = cv2.resize(image[..., ::-1], (128, 96), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(folder / "images" / f"s{i}.png"), big)
        mask = cv2.resize(data["masks"][i], (128, 96), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(folder / "masks" / f"s{i}.png"), mask)
    out = tmp_path / "b"
    result = run_cli("convert", SEGMENTER / "digit_segmenter.keras", "-o", out, "--formats",
                     "tflite-fp32", "--val", folder, "--json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["validation"]["masks"] and manifest["validation"]["samples"] == 8
    assert manifest["validation"]["keras_accuracy"] > 0.5
    (folder / "masks" / "s3.png").rename(folder / "masks" / "other.png")
    assert_clean_error(run_cli("convert", SEGMENTER / "digit_segmenter.keras", "-o",
                               tmp_path / "c", "--formats", "tflite-fp32", "--val", folder),
                       "the masks do not match the images", "s3.png", "other")
    assert not (tmp_path / "c").exists()


def test_a_segmentation_task_for_a_vector_output(tmp_path: Path) -> None:
    from conftest import LENET

    assert_clean_error(run_cli("convert", LENET / "lenet5_digits.keras", "-o", tmp_path / "o",
                               "--postprocess", "task=segmentation", "--formats", "tflite-fp32"),
                       "H x W x C class scores or H x W class ids")
    assert not (tmp_path / "o").exists()


def test_compare_a_segmenter(segmenter_bundle: Path, demo_clip: Path) -> None:
    """No truth on the clip: each backend's masks against the first backend's, per pixel."""
    table = run_cli("compare", segmenter_bundle, "--source", demo_clip, "--backends",
                    "tflite:tflite-fp32,onnxruntime:onnx", "--capture", "max_frames=20", "-q")
    assert table.returncode == 0, table.stderr
    assert "pixels = tflite:tflite-fp32's" in table.stdout
    rows = [line for line in table.stdout.splitlines() if line.startswith(("tflite", "onnx"))]
    assert len(rows) == 2 and all(row.rstrip().endswith("%") for row in rows), table.stdout
    assert float(rows[1].rsplit(None, 1)[1].rstrip("%")) > 99.0  # two float artifacts
