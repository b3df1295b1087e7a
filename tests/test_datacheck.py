"""Calibration and validation data are checked before anything is converted (issue 8).

Each case here once produced a wrong number without a word: folders of spelled-out
class names numbered alphabetically, 0..255 data for a 0..1 model, NaN, no samples,
labels the model does not have, a std of 0.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekit.data.datacheck import check_label_names, check_samples
from edgekit.data.datasets import Samples, folder_labels, load_samples
from edgekit.errors import InvalidData, UsageError
from edgekit.preprocess import InputSpec, check_normalisation

GRAY = InputSpec((1, 8, 8, 1), color="gray", origin={"mean": "model card", "std": "model card"})
DIGITS = [str(d) for d in range(10)]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _samples(x: np.ndarray, y: np.ndarray | None = None) -> Samples:
    return Samples(np.asarray(x, np.float32), y, "data.npz")


def test_spelled_folder_names_match_labels_by_name_never_alphabetically() -> None:
    mapping, learnt = folder_labels(Path("val"), sorted(WORDS), WORDS, 10)
    assert mapping == {w: i for i, w in enumerate(WORDS)} and learnt is None
    with pytest.raises(InvalidData) as info:  # digit labels, word folders: both lists named
        folder_labels(Path("val"), sorted(WORDS), DIGITS, 10)
    message = str(info.value)
    assert "eight" in message and "match no label" in message and "0, 1, 2" in message


def test_numeric_folder_names_are_class_numbers() -> None:
    names = [str(i) for i in range(12)]
    mapping, learnt = folder_labels(Path("val"), sorted(names), (), 12)
    assert mapping["10"] == 10 and mapping["2"] == 2  # not "10" < "2" alphabetically
    assert learnt == names
    mapping, learnt = folder_labels(Path("val"), ["3", "7"], (), 10)  # a subset: numbers only
    assert mapping == {"3": 3, "7": 7} and learnt is None
    mapping, _ = folder_labels(Path("val"), ["3", "seven"], WORDS, 10)  # a number, or a label
    assert mapping == {"3": 3, "seven": 7}
    with pytest.raises(InvalidData, match="12.*classes the model does not have"):
        folder_labels(Path("val"), ["3", "12"], (), 10)


def test_names_become_labels_only_with_one_folder_per_class() -> None:
    mapping, learnt = folder_labels(Path("val"), ["dog", "cat", "bird"], (), 3)
    assert learnt == ["bird", "cat", "dog"] and mapping == {"bird": 0, "cat": 1, "dog": 2}
    with pytest.raises(InvalidData, match="2 sub-folders.*3 classes.*--labels"):
        folder_labels(Path("val"), ["dog", "cat"], (), 3)


def test_calibration_folders_ignore_names(tmp_path: Path) -> None:
    for name in ("anything", "else"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.png"), np.full((8, 8), 128, np.uint8))
    samples = load_samples(tmp_path, GRAY, (), "calibration data", 10, labelled=False)
    assert len(samples) == 2 and samples.y is None and samples.from_images
    with pytest.raises(InvalidData, match="without labels"):
        load_samples(tmp_path, GRAY, (), "validation data", 10)


def test_nan_inf_and_empty_data_are_refused() -> None:
    x = np.random.default_rng(0).random((20, 8, 8, 1))
    x[3, 0, 0, 0] = np.nan
    x[5, 1, 1, 0] = np.inf
    with pytest.raises(InvalidData, match="2 of 20 samples hold NaN or inf.*sample 3"):
        check_samples(_samples(x), GRAY, "calibration data")
    with pytest.raises(InvalidData, match="no samples"):
        check_samples(_samples(np.zeros((0, 8, 8, 1))), GRAY, "calibration data")


def test_data_on_another_scale_than_the_spec_is_refused_with_the_fix() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (30, 8, 8, 1)).astype(np.float32)
    check_samples(_samples(pixels / 255), GRAY, "calibration data")  # 0..1 for a 0..1 spec
    with pytest.raises(InvalidData) as info:
        check_samples(_samples(pixels), GRAY, "calibration data")
    message = str(info.value)
    assert "span 0..255" in message and "makes 0..255 pixels 0..1" in message
    assert "[model card]" in message and "--preprocess mean=0,std=1" in message
    assert "images" in message
    raw = InputSpec((1, 8, 8, 1), color="gray", mean=(0.0,), std=(1.0,))
    with pytest.raises(InvalidData, match="--preprocess mean=0,std=255"):  # the reverse
        check_samples(_samples(pixels / 255), raw, "validation data")
    with pytest.raises(InvalidData, match="--preprocess mean=127.5,std=127.5"):
        check_samples(_samples(pixels / 127.5 - 1), GRAY, "validation data")


def test_labels_outside_the_classes_are_refused() -> None:
    x = np.random.default_rng(2).random((20, 8, 8, 1))
    check_samples(_samples(x, np.arange(20) % 10), GRAY, "validation data", classes=10)
    with pytest.raises(InvalidData, match=r"labels -1 are outside the model's 10 classes"):
        check_samples(_samples(x, np.arange(20) % 10 - 1), GRAY, "validation data", 10)
    with pytest.raises(InvalidData, match=r"labels 50, 51.*\(0..9\)"):
        check_samples(_samples(x, np.arange(20) + 50), GRAY, "validation data", 10)


def test_non_integer_labels_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "v.npz", x=np.zeros((3, 8, 8, 1)), y=np.array([0.0, 1.5, 2.0]))
    with pytest.raises(InvalidData, match="not whole class numbers"):
        load_samples(tmp_path / "v.npz", GRAY)


def test_a_labels_file_must_name_every_class() -> None:
    check_label_names(DIGITS, 10, "labels.txt")
    with pytest.raises(InvalidData, match="names 3 classes; the model has 10"):
        check_label_names(["a", "b", "c"], 10, "labels.txt")


def test_mean_and_std_that_cannot_be_right_are_refused() -> None:
    with pytest.raises(UsageError, match=r"--preprocess std 0: a std must be positive"):
        check_normalisation("std", (0.0,), 1, "flag")
    with pytest.raises(UsageError, match="std in the model card -1"):
        check_normalisation("std", (-1.0,), 1, "model card")
    with pytest.raises(UsageError, match="--preprocess mean 1,2,3 has 3 values.*1 channel"):
        InputSpec((1, 8, 8, 1), mean=(1.0, 2.0, 3.0), origin={"mean": "flag"})
    with pytest.raises(UsageError, match="not a finite number"):
        InputSpec((1, 8, 8, 3), std=(float("nan"),))
    assert InputSpec((1, 8, 8, 3), mean=(127.5,), std=(127.5, 127.5, 127.5)).channels == 3


def test_the_spec_says_where_each_value_came_from() -> None:
    spec = InputSpec((1, 8, 8, 1), color="gray", mean=(0.0,), std=(255.0,),
                     origin={"color": "model card", "mean": "flag", "std": "default",
                             "resize": "default"})
    line = spec.describe()
    assert "color gray (model card)" in line and "mean 0 (flag)" in line
    assert "std 255 (default)" in line and "resize stretch (default)" in line
    assert "0..255 become 0..1" in line
    again = InputSpec.from_dict(spec.to_dict())
    assert again.origin == spec.origin and again == spec
