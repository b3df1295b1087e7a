"""Calibration and validation data: arrays and folders of images, checked against the input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekit.data.datasets import load_samples, read_labels
from edgekit.errors import InvalidData
from edgekit.preprocess import InputSpec

GRAY = InputSpec((1, 32, 32, 1), color="gray")


def test_npz_with_labels_and_channelless_npy(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((5, 32, 32, 1)), y=np.eye(10)[[1, 2, 3, 4, 5]])
    s = load_samples(tmp_path / "d.npz", GRAY)
    assert s.x.dtype == np.float32 and s.y.tolist() == [1, 2, 3, 4, 5]
    np.save(tmp_path / "d.npy", np.ones((3, 32, 32)))
    assert load_samples(tmp_path / "d.npy", GRAY).x.shape == (3, 32, 32, 1)


def test_folder_of_labelled_images(tmp_path: Path) -> None:
    for label in ("3", "7"):
        (tmp_path / label).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / label / f"{i}.png"), np.full((40, 50, 3), 255, np.uint8))
    s = load_samples(tmp_path, GRAY, labels=[str(d) for d in range(10)])
    assert s.x.shape == (4, 32, 32, 1) and s.y.tolist() == [3, 3, 7, 7]
    assert np.allclose(s.x, 1.0)


def test_wrong_shapes_and_files_are_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", np.ones((3, 28, 28, 1)))
    with pytest.raises(InvalidData, match=r"\(28, 28, 1\).*\(32, 32, 1\)"):
        load_samples(tmp_path / "small.npy", GRAY)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidData, match="not a readable .npz"):
        load_samples(tmp_path / "bad.npz", GRAY)
    with pytest.raises(InvalidData, match="does not exist"):
        load_samples(tmp_path / "nothing", GRAY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidData, match="no image files"):
        load_samples(tmp_path / "empty", GRAY)


def test_labels_plain_and_coral_style(tmp_path: Path, coral: Path) -> None:
    (tmp_path / "l.txt").write_text("cat\ndog\n\n")
    assert read_labels(tmp_path / "l.txt") == ["cat", "dog"]
    coco = read_labels(coral / "coco_labels.txt")
    assert coco[0] == "person" and len(coco) >= 80
    imagenet = read_labels(coral / "imagenet_labels.txt")
    assert len(imagenet) == 1001 and imagenet[0] == "background"
