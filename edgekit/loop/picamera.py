"""A Raspberry Pi camera module as a source: ``--source picamera2[:N]``, through Picamera2.

On Raspberry Pi OS bookworm a CSI camera module goes through libcamera, which OpenCV's
capture does not read. Picamera2 (Raspberry Pi's Python library over libcamera, Debian package
``python3-picamera2``) does. It is not on PyPI in a usable form (its libcamera bindings come
only with the OS), so an environment sees it only when it is made with
``--system-site-packages``; the ``rpi*-camera`` targets deploy one that way.

``Picamera2Capture`` looks like the part of ``cv2.VideoCapture`` that ``LiveSource`` uses
(``isOpened``, ``read``, ``get``, ``release``), so a camera module gets the same grabber thread,
newest-frame-only dropping and reconnect as a USB camera. It never raises: what went wrong is
in ``error``, for the one line the user sees.
"""
from __future__ import annotations

import re
from typing import Any

from edgekit.deploy.agent.imx500_device import is_sensor
from edgekit.errors import UsageError

PREFIX = "picamera2"
FRAME_SIZE = (640, 480)  # the main stream's size: enough for a small detector, cheap to show
_SPEC = re.compile(r"^picamera2(?::(?P<number>.*))?$")
INSTALL = ("on Raspberry Pi OS: sudo apt install -y python3-picamera2 --no-install-recommends; "
           "edgekit's environment must see the system's packages (python3 -m venv "
           "--system-site-packages, as the rpi4-camera and rpi5-camera targets deploy it)")


def is_picamera2(spec: str) -> bool:
    """Whether ``--source`` names a camera module."""
    return bool(_SPEC.match(spec))


def is_imx500(spec: object) -> bool:
    """Whether ``--source`` names the AI Camera's sensor, which runs the network itself
    (``imx500[:N]``, loop/imx500.py). The syntax is the device agent's (``SOURCE`` in
    deploy/agent/imx500_device.py), written once for both sides."""
    return is_sensor(spec)


def camera_number(spec: str) -> int:
    """``picamera2`` -> 0, ``picamera2:N`` -> N; UsageError for anything else."""
    match = _SPEC.match(spec)
    number = match["number"] if match else None
    if number is None:
        return 0
    if not number.isdigit():
        raise bad_number(spec, PREFIX)
    return int(number)


def bad_number(spec: str, prefix: str) -> UsageError:
    """The error for ``prefix:N`` whose N is not a camera number."""
    return UsageError(f"source {spec}: give {prefix} or {prefix}:N, N the camera number (0 "
                      "for the first, as `rpicam-hello --list-cameras` counts)", param="source")


def _import_picamera2() -> Any:
    """The Picamera2 class, or an EdgekitError message saying how to get it."""
    try:
        from picamera2 import Picamera2
    except ModuleNotFoundError as exc:
        if exc.name == "libcamera":
            raise ImportError("Picamera2 is installed but libcamera's Python bindings are not "
                              "visible here (they come only with the OS, as python3-libcamera; "
                              f"a pip-installed picamera2 cannot see them): {INSTALL}") from None
        raise ImportError(f"Picamera2 is not installed in this Python ({exc}): {INSTALL}, "
                          "or use a USB camera (--source 0)") from None
    except ImportError as exc:
        raise ImportError(f"Picamera2 failed to load ({exc}): {INSTALL}") from None
    return Picamera2


def _cause(exc: BaseException) -> str:
    """An exception and what caused it, in one line (Picamera2 wraps libcamera's reason)."""
    parts = []
    while exc is not None and len(parts) < 4:
        text = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() \
            else type(exc).__name__
        if text not in parts:
            parts.append(text)
        exc = exc.__cause__ or exc.__context__
    return ": ".join(parts)


def start_camera(picamera2: Any, number: int, size: tuple[int, int]) -> Any:
    """Camera ``number`` opened, configured for ``size`` frames in OpenCV's order, started
    (closed again if that fails)."""
    camera = picamera2(number)
    try:
        # "RGB888" is 24-bit pixels laid out B, G, R in memory: OpenCV's order.
        camera.configure(camera.create_video_configuration(
            main={"size": size, "format": "RGB888"}))
        camera.start()
    except BaseException:
        camera.close()
        raise
    return camera


class Picamera2Capture:
    """Camera module ``number`` through Picamera2, read like a ``cv2.VideoCapture``."""

    def __init__(self, spec: str, size: tuple[int, int] = FRAME_SIZE) -> None:
        self.number = camera_number(spec)
        self.error = ""
        self.model = ""
        self._camera: Any = None
        try:
            picamera2 = _import_picamera2()
        except ImportError as exc:
            self.error = f"--source {spec}: {exc}"
            return
        try:
            cameras = picamera2.global_camera_info()
        except Exception as exc:  # libcamera's camera manager failed to start
            self.error = f"--source {spec}: libcamera cannot list cameras ({_cause(exc)})"
            return
        if self.number >= len(cameras):
            seen = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras))
            self.error = (f"--source {spec}: no camera module {self.number}; libcamera sees "
                          + (f"{len(cameras)} ({seen})" if cameras else
                             "none (check the ribbon cable at both ends, with the Pi off; "
                             "rpicam-hello --list-cameras shows what libcamera finds)"))
            return
        self.model = str(cameras[self.number].get("Model", ""))
        try:
            camera = start_camera(picamera2, self.number, size)
        except Exception as exc:
            self.error = (f"--source {spec}: camera module {self.number} ({self.model}) did not "
                          f"start: {_cause(exc)}; is another program using it (rpicam-*, a "
                          "second edgekit, the service)?")
            return
        self._camera = camera

    @property
    def description(self) -> str:
        return f"camera module {self.number}" + (f" ({self.model})" if self.model else "") + \
            " via Picamera2"

    def isOpened(self) -> bool:  # noqa: N802  (cv2.VideoCapture's name)
        return self._camera is not None

    def read(self) -> tuple[bool, Any]:
        if self._camera is None:
            return False, None
        try:
            return True, self._camera.capture_array("main")
        except Exception as exc:
            self.error = f"camera module {self.number} stopped delivering: {_cause(exc)}"
            return False, None

    def get(self, prop: int) -> float:
        return 0.0  # the frame rate is libcamera's choice; nothing is asked of it here

    def release(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            try:
                camera.close()  # stops it first
            except Exception:
                pass
