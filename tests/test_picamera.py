"""``--source picamera2[:N]`` up to the device boundary: Picamera2 is replaced by a stand-in
with its API, failures and pixel layout (tests/standins/picamera2); everything of edgekit's
runs for real, through the live source's grabber thread."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from edgekit.errors import InvalidData, UsageError
from edgekit.loop.picamera import Picamera2Capture, camera_number, is_picamera2
from edgekit.loop.sources import LiveSource, open_source
from edgekit.loop.truth import find_ground_truth

STANDINS = ROOT / "tests" / "standins"
PICAMERA2, LIBCAMERA = STANDINS / "picamera2", STANDINS / "libcamera"


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Picamera2 and libcamera importable (the stand-ins); the stand-in's call log."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("EDGEKIT_STANDIN_LOG", str(log))
    monkeypatch.syspath_prepend(str(LIBCAMERA))
    monkeypatch.syspath_prepend(str(PICAMERA2))
    yield log
    for name in ("picamera2", "libcamera"):
        sys.modules.pop(name, None)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_source_names() -> None:
    assert is_picamera2("picamera2") and is_picamera2("picamera2:1")
    assert not is_picamera2("picamera") and not is_picamera2("0")
    assert camera_number("picamera2") == 0 and camera_number("picamera2:3") == 3
    for bad in ("picamera2:", "picamera2:x", "picamera2:-1", "picamera2:0:1"):
        with pytest.raises(UsageError, match="picamera2:N"):
            camera_number(bad)
    with pytest.raises(UsageError):
        open_source("picamera2:one")
    assert find_ground_truth("picamera2") is None


def test_frames_in_opencv_order(picamera2: Path) -> None:
    capture = Picamera2Capture("picamera2")
    assert capture.isOpened(), capture.error
    assert capture.description == "camera module 0 (imx708) via Picamera2"
    ok, image = capture.read()
    assert ok and image.shape == (480, 640, 3) and image.dtype == np.uint8
    square = image[240, :]
    blue = square[(square[:, 0] == 255) & (square[:, 1] == 0) & (square[:, 2] == 0)]
    assert len(blue) == 60  # the stand-in's blue square, blue in OpenCV's B, G, R
    capture.release()
    log = calls(picamera2)
    assert [c["call"] for c in log] == ["open", "configure", "start", "stop", "close"]
    assert log[1]["main"] == {"format": "RGB888", "size": [640, 480]}


def test_a_live_source_with_its_grabber(picamera2: Path) -> None:
    with LiveSource("picamera2") as source:
        frames = [source.read() for _ in range(5)]
        assert [f.image.shape for f in frames] == [(480, 640, 3)] * 5
        assert frames[-1].index > frames[0].index
        assert source.description == "camera module 0 (imx708) via Picamera2"
    assert calls(picamera2)[-1]["call"] == "close"  # the camera is released at the end


@pytest.mark.parametrize(("env", "spec", "needle"), [
    ({"EDGEKIT_STANDIN_CAMERAS": ""}, "picamera2", "libcamera sees none (check the ribbon"),
    ({}, "picamera2:1", "no camera module 1; libcamera sees 1 (0: imx708)"),
    ({"EDGEKIT_STANDIN_BUSY": "1"}, "picamera2",
     "did not start: Camera __init__ sequence did not complete: Failed to initialize camera: "
     "Failed to acquire camera: Device or resource busy; is another program using it"),
])
def test_camera_failures(picamera2: Path, monkeypatch: pytest.MonkeyPatch, env: dict,
                         spec: str, needle: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InvalidData, match="^--source " + spec + ": ") as failure:
        open_source(spec)
    assert needle in str(failure.value)


def test_without_picamera2_or_libcamera(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.modules.pop("picamera2", None)
    with pytest.raises(InvalidData, match="Picamera2 is not installed in this Python") as failure:
        open_source("picamera2")
    assert "sudo apt install -y python3-picamera2" in str(failure.value)
    assert "--system-site-packages" in str(failure.value)
    monkeypatch.syspath_prepend(str(PICAMERA2))  # Picamera2 without libcamera's bindings
    try:
        with pytest.raises(InvalidData, match="libcamera's Python bindings are not visible"):
            open_source("picamera2")
    finally:
        sys.modules.pop("picamera2", None)

