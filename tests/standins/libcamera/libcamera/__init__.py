"""Stand-in for libcamera's Python bindings (python3-libcamera on Raspberry Pi OS), for the
tests of ``--source picamera2``: only what the Picamera2 stand-in beside it imports."""


class Transform:
    def __init__(self, hflip: int = 0, vflip: int = 0) -> None:
        self.hflip, self.vflip = hflip, vflip
