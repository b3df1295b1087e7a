"""Stand-in for Raspberry Pi's Picamera2 (python3-picamera2), where no camera module exists.

It is the device boundary of the ``--source picamera2`` tests: the same import chain (it needs
``libcamera``, as the real one does, so a path without the libcamera stand-in gives the real
``No module named 'libcamera'``), the same calls edgekit makes (``global_camera_info``,
``Picamera2(camera_num)``, ``create_video_configuration``, ``configure``, ``start``,
``capture_array``, ``capture_request`` with its metadata, ``close``), the same failures (an
IndexError for a camera number beyond those found, a RuntimeError chain when the camera is
busy) and the same pixel layout ("RGB888" is B, G, R in memory). Set by environment variables:

- EDGEKIT_STANDIN_CAMERAS  comma-separated sensor models found (default "imx708"; "" = none)
- EDGEKIT_STANDIN_BUSY     "1": opening the camera fails as when another process holds it
- EDGEKIT_STANDIN_VIDEO    a video whose frames (BGR, from OpenCV) are the sensor's, looped;
                           default: a blue square moving over grey
- EDGEKIT_STANDIN_LOG      a file each call is appended to, one JSON line each

``picamera2.devices.IMX500`` (the AI Camera) is stood in beside it: with a network loaded, each
request's metadata carries the sensor's output tensors (devices/imx500).
"""
from __future__ import annotations

import json
import os
import time

import libcamera  # noqa: F401  (the real Picamera2 needs it first thing)
import numpy as np

FPS = 30.0


def _log(call: str, **fields) -> None:
    path = os.environ.get("EDGEKIT_STANDIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"call": call, **fields}) + "\n")


def _models() -> list[str]:
    text = os.environ.get("EDGEKIT_STANDIN_CAMERAS", "imx708")
    return [m for m in text.split(",") if m]


class Picamera2:
    @staticmethod
    def global_camera_info() -> list[dict]:
        return [{"Model": m, "Location": 2, "Rotation": 0, "Id": f"/base/soc/i2c0mux/i2c@{i}/"
                 f"{m}@1a", "Num": i} for i, m in enumerate(_models())]

    def __init__(self, camera_num: int = 0) -> None:
        camera_num = self.global_camera_info()[camera_num]["Num"]  # IndexError, as the real one
        if os.environ.get("EDGEKIT_STANDIN_BUSY") == "1":
            try:
                try:
                    raise RuntimeError("Failed to acquire camera: Device or resource busy")
                except RuntimeError as exc:
                    raise RuntimeError("Failed to initialize camera") from exc
            except RuntimeError as exc:
                raise RuntimeError("Camera __init__ sequence did not complete.") from exc
        self.camera_num = camera_num
        self.config: dict | None = None
        self.started = False
        self._frame = 0
        self._next = 0.0
        self._video = None
        _log("open", camera_num=camera_num)

    def create_video_configuration(self, main: dict | None = None, **_: object) -> dict:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        return {"use_case": "video", "main": main, "buffer_count": 6}

    def configure(self, config: dict) -> None:
        if config["main"]["format"] not in ("RGB888", "BGR888", "XBGR8888", "XRGB8888"):
            raise RuntimeError(f"Bad format {config['main']['format']} in stream main")
        self.config = config
        _log("configure", main={**config["main"], "size": list(config["main"]["size"])})

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        _log("start")

    def _sensor_frame(self, width: int, height: int) -> np.ndarray:
        import cv2

        path = os.environ.get("EDGEKIT_STANDIN_VIDEO")
        if path:
            if self._video is None:
                self._video = cv2.VideoCapture(path)
            ok, bgr = self._video.read()
            if not ok:
                self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._video.read()
            return cv2.resize(bgr, (width, height))
        bgr = np.full((height, width, 3), 128, np.uint8)
        x = (self._frame * 8) % max(1, width - 60)
        bgr[height // 2 - 30:height // 2 + 30, x:x + 60] = (255, 0, 0)  # blue, in BGR
        return bgr

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera must be started")
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = time.monotonic() + 1 / FPS
        width, height = self.config[name]["size"]
        bgr = self._sensor_frame(width, height)
        self._frame += 1
        fmt = self.config[name]["format"]
        if fmt == "RGB888":
            return bgr  # B, G, R in memory
        if fmt == "BGR888":
            return bgr[:, :, ::-1].copy()  # R, G, B in memory
        return np.dstack([bgr if fmt == "XRGB8888" else bgr[:, :, ::-1],
                          np.full(bgr.shape[:2], 255, np.uint8)])

    def capture_request(self) -> _Request:
        """The next frame and its metadata (the IMX500's tensors when a network is loaded)."""
        index = self._frame
        image = self.capture_array("main")
        metadata = {"SensorTimestamp": time.monotonic_ns(), "ScalerCrop": (0, 0, 4056, 3040)}
        if "imx500" in _models():
            from picamera2.devices.imx500 import frame_metadata

            metadata.update(frame_metadata(index))
        return _Request(image, metadata)

    def stop(self) -> None:
        self.started = False
        _log("stop")

    def close(self) -> None:
        if self.started:
            self.stop()
        if self._video is not None:
            self._video.release()
        _log("close")


class _Request:
    """A completed request: its buffers are the camera's until ``release``."""

    def __init__(self, image: np.ndarray, metadata: dict) -> None:
        self._image, self._metadata, self._released = image, metadata, False

    def get_metadata(self) -> dict:
        return dict(self._metadata)

    def make_array(self, name: str = "main") -> np.ndarray:
        if self._released:
            raise RuntimeError("request has been released")
        return self._image.copy()

    def release(self) -> None:
        self._released = True
