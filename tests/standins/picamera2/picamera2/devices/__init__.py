"""Stand-in for ``picamera2.devices`` (only what edgekit uses: the IMX500)."""
from picamera2.devices.imx500 import IMX500

__all__ = ["IMX500"]
