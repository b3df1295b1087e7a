"""A live MJPEG-over-HTTP stream on loopback, what IP cameras serve: a real live source for
tests (OpenCV reads it through FFmpeg), which a test can stop to make the camera vanish. Its
frames are numbered grey levels, or a video file's frames played in a loop (``video=``): a
camera that sees the demo clip."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class MjpegStream:
    """Serves numbered frames at ``fps`` until ``frames`` are sent or ``stop()``."""

    def __init__(self, fps: float = 30.0, frames: int | None = None,
                 size: tuple[int, int] = (160, 120), video: str | None = None) -> None:
        import cv2

        self.fps, self.frames, self.size = fps, frames, size
        if video is not None:
            cap = cv2.VideoCapture(str(video))
            clip = []
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                clip.append(cv2.imencode(".jpg", image)[1].tobytes())
            cap.release()
            assert clip, f"no frames in {video}"
            self._encode = lambda i: clip[i % len(clip)]
        else:
            self._encode = lambda i: cv2.imencode(
                ".jpg", np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8))[1].tobytes()
        self._stopped = threading.Event()
        self._frozen = threading.Event()  # set: the camera hangs (its process stopped)
        stream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                stream._hang()
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not stream._stopped.is_set() and (stream.frames is None
                                                             or i < stream.frames):
                        stream._hang()
                        jpg = stream._encode(i)
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                        i += 1
                        time.sleep(1 / stream.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        """The camera hangs, as when its process is stopped: connections stay open, new ones
        are accepted, and nothing more is sent on any of them until ``stop()``."""
        self._frozen.set()

    def _hang(self) -> None:
        while self._frozen.is_set() and not self._stopped.wait(0.05):
            pass

    def stop(self) -> None:
        """The camera vanishes: stop streaming and refuse new connections."""
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
