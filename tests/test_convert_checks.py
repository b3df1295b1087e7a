"""`edgekit convert` checks its inputs before converting, and says where the input spec came
from (issue 8). Each bad input: one line, exit 2 for a bad flag and 1 otherwise, nothing
written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import LENET, assert_clean_error, run_cli

MODEL = LENET / "lenet5_digits.keras"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _nothing_written(folder: Path) -> None:
    assert not (folder / "out").exists()
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    calib = np.load(LENET / "calib.npz")["x"]
    val = np.load(LENET / "val.npz")
    nan = calib.copy()
    nan[::10, 5, 5, 0] = np.nan  # every tenth sample
    files = {"calib255": calib * 255, "nan": nan, "empty": calib[:0]}
    paths = {}
    for name, array in files.items():
        paths[name] = folder / f"{name}.npy"
        np.save(paths[name], array)
    for name, labels in (("minus", val["y"] - 1), ("fifty", val["y"] + 50)):
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], x=val["x"], y=labels)
    paths["val255"] = folder / "val255.npz"
    np.savez(paths["val255"], x=val["x"] * 255, y=val["y"])
    paths["three_labels"] = folder / "three.txt"
    paths["three_labels"].write_text("a\nb\nc\n")
    return paths


@pytest.mark.parametrize("args, needles, code", [
    (["--preprocess", "std=0"], ["--preprocess std: 0:", "must be positive"], 2),
    (["--preprocess", "std=-255"], ["--preprocess std: -255:", "must be positive"], 2),
    (["--quantize", "min_agreement=1.5"], ["--quantize min_agreement", "from 0 to 1"], 2),
])
def test_bad_flags_fail_before_the_model_loads(tmp_path: Path, args: list[str],
                                               needles: list[str], code: int) -> None:
    result = run_cli("convert", MODEL, "-o", tmp_path / "out", *args)
    assert_clean_error(result, *needles)
    assert result.returncode == code
    _nothing_written(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case, needles, code", [
    ("calib255", ["span 0..255", "makes 0..255 pixels 0..1", "--preprocess mean=0,std=1"], 1),
    ("val255", ["validation data", "span 0..255", "--preprocess mean=0,std=1"], 1),
    ("nan", ["20 of 200 samples hold NaN or inf"], 1),
    ("empty", ["no samples"], 1),
    ("minus", ["labels -1 are outside the model's 10 classes"], 1),
    ("fifty", ["labels 50, 51", "(0..9)"], 1),
    ("three_labels", ["names 3 classes; the model has 10"], 1),
    ("mean", ["--preprocess mean 1,2,3 has 3 values", "1 channel"], 2),
])
def test_bad_data_is_refused_before_converting(tmp_path: Path, bad_data: dict[str, Path],
                                               case: str, needles: list[str], code: int) -> None:
    args = {"calib255": ["--calib", bad_data["calib255"]], "nan": ["--calib", bad_data["nan"]],
            "empty": ["--calib", bad_data["empty"]], "val255": ["--val", bad_data["val255"]],
            "minus": ["--val", bad_data["minus"]], "fifty": ["--val", bad_data["fifty"]],
            "three_labels": ["--labels", bad_data["three_labels"]],
            "mean": ["--preprocess", "mean=1,2,3"]}[case]
    result = run_cli("convert", MODEL, "-o", tmp_path / "out", "--formats", "tflite-int8", *args)
    assert_clean_error(result, *needles)
    assert result.returncode == code
    _nothing_written(tmp_path)


def _image_folder(root: Path, names: list[str]) -> Path:
    """LeNet's validation digits as PNG files in one sub-folder per class, named ``names``."""
    val = np.load(LENET / "val.npz")
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in np.flatnonzero(val["y"] == label)[:6]:
            pixels = np.rint(val["x"][i, ..., 0] * 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{i}.png"), pixels)
    return root


@pytest.mark.slow
def test_validation_folders_are_matched_to_labels_by_name(tmp_path: Path) -> None:
    numbered = _image_folder(tmp_path / "numbered", [str(d) for d in range(10)])
    spelled = _image_folder(tmp_path / "spelled", WORDS)
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    common = ["--formats", "tflite-fp32", "--json", "-q"]
    by_number = run_cli("convert", MODEL, "-o", tmp_path / "a", "--val", numbered, *common)
    assert by_number.returncode == 0, by_number.stderr
    truth = json.loads(by_number.stdout)["validation"]["keras_accuracy"]
    assert truth > 0.9
    # The card's labels are 0..9: folders named zero..nine match none of them.
    refused = run_cli("convert", MODEL, "-o", tmp_path / "b", "--val", spelled, *common)
    assert_clean_error(refused, "match no label", "eight", "0, 1, 2")
    by_name = run_cli("convert", MODEL, "-o", tmp_path / "b", "--val", spelled,
                      "--labels", words, *common)
    assert by_name.returncode == 0, by_name.stderr
    data = json.loads(by_name.stdout)
    assert data["validation"]["keras_accuracy"] == truth and data["labels"] == WORDS


@pytest.mark.slow
def test_without_labels_folder_names_become_the_labels_and_are_recorded(tmp_path: Path) -> None:
    bare = tmp_path / "bare.keras"  # no model card beside it
    shutil.copy(MODEL, bare)
    # Names whose sorted order is the model's class order (zero..nine sort otherwise, and the
    # model's answers then refuse them: tests/test_threads_liveness.py).
    names = [f"c{i}_{word}" for i, word in enumerate(WORDS)]
    spelled = _image_folder(tmp_path / "spelled", names)
    result = run_cli("convert", bare, "-o", tmp_path / "out", "--val", spelled,
                     "--formats", "tflite-fp32", "--json", "-q")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["labels"] == sorted(names)  # Keras's image_dataset_from_directory order
    warnings = " ".join(data["source"]["warnings"])
    assert "labels taken from the validation sub-folders" in warnings and "c0_zero=0" in warnings
    assert "no --preprocess mean=,std= and no model card" in warnings
    origin = data["input"]["origin"]
    assert origin == {"shape": "model", "color": "default", "mean": "default",
                      "std": "default", "resize": "default", "interpolation": "default",
                      "antialias": "default"}
    few = _image_folder(tmp_path / "few", WORDS[:3])
    refused = run_cli("convert", bare, "-o", tmp_path / "out2", "--val", few,
                      "--formats", "tflite-fp32")
    assert_clean_error(refused, "3 sub-folders", "10 classes", "--labels")


@pytest.mark.slow
def test_the_input_spec_heads_the_table_with_its_origins(tmp_path: Path) -> None:
    result = run_cli("convert", MODEL, "-o", tmp_path / "out", "--formats", "tflite-fp32",
                     "--preprocess", "std=255", "-q")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("input 32x32x1 NHWC: color gray (model card)"), first
    assert "mean 0 (model card)" in first and "std 255 (flag)" in first
    assert "resize stretch (default)" in first
    manifest = json.loads((tmp_path / "out" / "edgekit.json").read_text())
    assert manifest["input"]["origin"]["std"] == "flag"
    assert manifest["outputs"][0]["class_scores"] is True
    assert manifest["outputs"][0]["name"] == "output"
