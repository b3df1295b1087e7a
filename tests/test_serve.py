"""The live view's server: its paths, the token, frames encoded once, slow and stalled viewers,
what /stats.json and /metrics say, and the bind's failures.

The loop here is the real Pipeline and ServeSink fed by a paced synthetic camera
(tests/live_view.py); the real detector and a real browser are in test_serve_cli.py and
test_serve_browser.py.
"""
from __future__ import annotations

import hashlib
import json
import socket
import statistics
import threading
import time

import cv2
import numpy as np
import pytest
from live_view import PacedCamera, StreamReader, get, running_view, wait_for

from edgekit.errors import EdgekitError, UsageError
from edgekit.live.server import LiveView, parse_address, serve_options

TOKEN = "t0ken-for-the-tests_0123456789"


@pytest.mark.parametrize(("text", "expected"), [
    ("8080", ("127.0.0.1", 8080)), ("0", ("127.0.0.1", 0)), ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:8080", ("::1", 8080)), ("localhost:65535", ("localhost", 65535)),
])
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "x", ":8080", "65536", "1.2.3.4:", "host:port",
                                  "a b:1", "[::1]8080", "1.2.3.4:80:90"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(UsageError, match="give PORT or HOST:PORT"):
        parse_address(text)


def test_beyond_loopback_needs_a_good_token() -> None:
    with pytest.raises(UsageError, match="needs a token: set EDGEKIT_SERVE_TOKEN"):
        serve_options("0.0.0.0:8080")
    with pytest.raises(UsageError, match="needs a token"):
        serve_options("[::]:8080")
    assert serve_options("0.0.0.0:8080", TOKEN).loopback is False
    assert serve_options("localhost:8080").loopback is True
    for weak in ("short", "x" * 15, "has spaces in it, long enough", "sixteen+chars/abc"):
        with pytest.raises(UsageError, match="at least 16"):
            serve_options("8080", weak)
    with pytest.raises(UsageError, match="neither an address nor a name"):
        serve_options("no-such-host.invalid:8080")


def test_the_page_and_every_path() -> None:
    with running_view() as run:
        port = run.view.port
        assert wait_for(lambda: run.pipeline.stats.frames > 10)
        page = get(port, "/")
        assert page.status == 200 and page.headers["content-type"].startswith("text/html")
        assert b'src="/stream.mjpg"' in page.body and b"/app.js" in page.body
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
        script = get(port, "/app.js")
        assert script.status == 200 and b"/stats.json" in script.body
        assert b"innerHTML" not in script.body  # labels are written as text, never markup
        assert get(port, "/app.css").status == 200
        snapshot = get(port, "/snapshot.jpg")
        assert snapshot.status == 200 and snapshot.headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(snapshot.body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
        # No path reads a file: only the fixed routes answer.
        for path in ("/nope", "/../../etc/passwd", "/app.js/../../README.md", "//etc/passwd",
                     "/%2e%2e/%2e%2e/etc/passwd", "/index.html", "/favicon.ico"):
            missing = get(port, path)
            assert missing.status == 404 and b"root:" not in missing.body, path
        assert get(port, "/stats.json", method="POST").status == 501


def test_stats_are_the_run_json_figures_live() -> None:
    with running_view() as run:
        port = run.view.port
        assert wait_for(lambda: run.pipeline.stats.frames > 20)
        first = json.loads(get(port, "/stats.json").body)
        for key in ("frames", "wall_s", "fps", "pipelined", "dropped", "decode_failures",
                    "reconnects", "stages_ms", "end_to_end_ms"):
            assert key in first, key  # the keys of edgekit run --json
        assert set(first["stages_ms"]) == {"capture", "preprocess", "infer", "postprocess",
                                           "sink"}
        assert first["stages_ms"]["capture"]["p50"] > 0 and first["running"] is True
        assert first["backend"] == "fake (test stages, device CPU)"
        assert first["artifact_name"] == "model_int8.tflite" and first["device"] == "CPU"
        assert first["latest"]["detections"][0] == {"label": "seven", "class_id": 7,
                                                    "score": 0.91, "box": [10.0, 20.0, 60.0, 80.0]}
        assert 0 < first["fps"] < 90 and first["wall_s"] > 0  # the camera makes 60 a second
        assert set(first["recent_ms"]) >= {"infer", "end_to_end"}
        time.sleep(1.2)  # the figures are taken at most once a second
        second = json.loads(get(port, "/stats.json").body)
        assert second["frames"] > first["frames"]  # live
        assert second["stages_ms"]["infer"]["count"] == second["frames"]


def test_metrics_in_prometheus_format() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    with running_view() as run:
        assert wait_for(lambda: run.pipeline.stats.frames > 20)
        response = get(run.view.port, "/metrics")
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in parser.text_string_to_metric_families(
            response.body.decode())}
        assert {"edgekit_frames", "edgekit_dropped_frames", "edgekit_decode_failures",
                "edgekit_fps", "edgekit_stage_seconds", "edgekit_latency_seconds",
                "edgekit_viewers", "edgekit_info"} <= set(families)
        frames = families["edgekit_frames"].samples[0]
        assert frames.labels == {"backend": "fake"} and frames.value > 20
        assert families["edgekit_fps"].samples[0].value > 0
        infer = [s for s in families["edgekit_stage_seconds"].samples
                 if s.labels.get("stage") == "infer"]
        count = next(s.value for s in infer if s.name.endswith("_count"))
        buckets = [s for s in infer if s.name.endswith("_bucket")]
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count
        assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
        assert count == frames.value and all(s.labels["backend"] == "fake" for s in infer)
        work = {s.labels["work"]: s.value for s in families["edgekit_view_cpu_seconds"].samples}
        assert set(work) == {"sink", "encode", "send"} and work["sink"] > 0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_each_frame_is_encoded_once_for_ten_viewers() -> None:
    with running_view(camera=PacedCamera(fps=40)) as run:
        readers = [StreamReader(run.view.port) for _ in range(10)]
        assert all(r.status_line.startswith("HTTP/1.0 200") for r in readers)
        assert readers[0].headers["content-type"] == \
            "multipart/x-mixed-replace; boundary=edgekit-frame"
        seen: list[list[str]] = [[] for _ in readers]

        def read(i: int) -> None:
            for _ in range(25):
                seen[i].append(_digest(readers[i].part()))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(readers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert wait_for(lambda: run.view.viewers == 10)
        encoded, frames = run.view.frames.encoded, run.pipeline.stats.frames
        distinct = set().union(*map(set, seen))
        assert all(len(s) == 25 for s in seen)
        assert len(distinct) <= encoded <= frames  # one encode per frame, shared by all ten
        assert len(distinct) < sum(len(s) for s in seen) / 5  # the same bytes went to many
        for r in readers:
            r.close()
        assert wait_for(lambda: run.view.viewers == 0), "viewers that left are dropped"


def test_a_slow_viewer_gets_the_newest_frame_never_a_queue() -> None:
    """A viewer on a slow link (a small receive buffer) that takes a frame every 0.4 s, while
    the loop makes 60 a second: it skips frames, and how far it lags stays bounded (a queue
    would make it lag ~24 frames more each time)."""
    camera = PacedCamera(fps=60, size=(640, 480), noise=True)  # ~0.4 MB JPEGs
    with running_view(camera=camera) as run:
        reader = StreamReader(run.view.port, receive_buffer=8192)
        reader.part()
        received, looped, lags = [reader.frame], [run.pipeline.stats.frames], []
        for _ in range(8):
            time.sleep(0.4)
            reader.part()
            received.append(reader.frame)
            looped.append(run.pipeline.stats.frames)
            lags.append(looped[-1] - reader.frame)
        reader.close()
    jumps = [b - a for a, b in zip(received, received[1:])]
    made = [b - a for a, b in zip(looped, looped[1:])]  # ~24 at 60 FPS; fewer on a busy machine
    # frames skipped, not queued: the viewer keeps up with what the loop makes
    assert statistics.median(jumps) >= max(3, 0.5 * statistics.median(made)), (received, made)
    assert max(lags[2:]) < 60, lags  # at most a frame or two in the kernel's buffers


def test_a_stalled_viewer_asks_for_nothing_and_blocks_no_one() -> None:
    camera = PacedCamera(fps=30, size=(640, 480), noise=True)  # ~0.4 MB JPEGs
    with running_view(camera=camera) as run:
        port = run.view.port
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n")  # never read
        assert wait_for(lambda: run.view.viewers == 1)

        def settled() -> bool:  # the kernel's buffers are full and the viewer waits in send
            before = run.view.frames.encoded
            time.sleep(0.5)
            return run.view.frames.encoded == before

        assert wait_for(settled, timeout=30), "a stalled viewer kept frames being encoded"
        frames = run.pipeline.stats.frames
        assert wait_for(lambda: run.pipeline.stats.frames > frames + 10), "the loop stalled"
        reader = StreamReader(port)  # another viewer is served at once
        parts = [reader.part() for _ in range(5)]
        assert len({_digest(p) for p in parts}) == 5
        reader.close()
        started = time.monotonic()
        run.view.close()  # a viewer blocked in a send does not hold up the end
        assert time.monotonic() - started < 3
        stalled.close()


def test_with_a_token_every_path_needs_it(capfd: pytest.CaptureFixture[str]) -> None:
    options = serve_options("127.0.0.1:0", TOKEN)
    with running_view(options) as run:
        port = run.view.port
        assert wait_for(lambda: run.pipeline.stats.frames > 5)
        paths = ["/", "/app.js", "/app.css", "/stream.mjpg", "/snapshot.jpg", "/stats.json",
                 "/metrics", "/nope"]
        for path in paths:
            for headers in ({}, {"Cookie": "edgekit_token=wrong-token-0123456789"},
                            {"Authorization": "Bearer " + TOKEN[:-1]},
                            {"Authorization": f"Basic {TOKEN}"}):
                denied = get(port, path, headers)
                assert denied.status == 401, (path, headers)
                assert denied.headers["www-authenticate"] == 'Bearer realm="edgekit"'
                assert TOKEN.encode() not in denied.body
            assert get(port, f"{path}?token={TOKEN[:-1]}x").status == 401
        # Once with ?token=: a cookie the page's script cannot read, and the URL loses it.
        first = get(port, f"/?token={TOKEN}")
        assert first.status == 303 and first.headers["location"] == "/"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"edgekit_token={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        with_cookie = {"Cookie": f"other=1; edgekit_token={TOKEN}"}
        for path in paths[:-2] + ["/metrics"]:
            if path != "/stream.mjpg":
                assert get(port, path, with_cookie).status == 200, path
        assert get(port, "/stats.json", {"Authorization": f"Bearer {TOKEN}"}).status == 200
        assert get(port, f"/snapshot.jpg?token={TOKEN}").status == 200  # as ffmpeg, VLC do
        reader = StreamReader(port, f"/stream.mjpg?token={TOKEN}")
        assert reader.status_line.startswith("HTTP/1.0 200") and reader.part()[:2] == b"\xff\xd8"
        reader.close()
        # With a token the Host header may name the device (it is reached over the network).
        assert get(port, "/stats.json", {**with_cookie, "Host": "raspberrypi.local:8080"}
                   ).status == 200
    out, err = capfd.readouterr()
    assert TOKEN not in out + err and err == ""  # nothing is logged, least of all the token


def test_without_a_token_only_loopback_names_are_answered() -> None:
    with running_view() as run:
        port = run.view.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.2",
                     "localhost"):
            assert get(port, "/stats.json", {"Host": host}).status == 200, host
        for host in ("evil.example", f"evil.example:{port}", "192.168.1.20:8080",
                     "127.0.0.1.evil.example"):
            denied = get(port, "/stats.json", {"Host": host})  # a rebound DNS name
            assert denied.status == 403 and b"loopback" in denied.body, host


def test_bind_failures() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(EdgekitError, match=f"--serve 127.0.0.1:{port}: the port is in use"):
            LiveView(serve_options(f"127.0.0.1:{port}"))
    finally:
        taken.close()
    with pytest.raises(UsageError, match="192.0.2.1 is not an address of this machine"):
        LiveView(serve_options("192.0.2.1:8080", TOKEN))  # TEST-NET-1: nobody's address


def test_the_state_the_loop_writes_stands_without_a_server() -> None:
    """The live view's state (frames, figures, counters) and /metrics need no HTTP server: the
    server is one more reader of the state, and no socket is opened here."""
    from edgekit.live.prometheus import prometheus_text
    from edgekit.live.state import LiveState

    state = LiveState()
    state.info.update(backend_name="tflite", source="clip.avi")
    state.joined(2)
    assert not isinstance(state, LiveView)
    assert state.stats()["viewers"] == 2 and state.stats()["frames"] == 0
    text = prometheus_text(state)
    assert 'edgekit_frames_total{backend="tflite"} 0' in text
    assert 'edgekit_viewers{backend="tflite"} 2' in text
