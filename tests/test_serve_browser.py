"""The live view in a real browser: Debian's Chromium, driven by Playwright for Python (with
its executable_path: Playwright's own browser download is not used).

`edgekit run --serve` runs the real detector on a camera that films the demo clip. The page
loads, its video shows changing frames, its figures update, it logs no error (a blocked
script or style would show as one, under the page's Content-Security-Policy), and a
screenshot is kept in the test's folder. With a token: no token gets 401 on every path; the
page takes it once and keeps it in an HttpOnly cookie.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg import MjpegStream
from system_packages import install_hint
from test_serve_cli import TOKEN, serving

pytestmark = [pytest.mark.slow, pytest.mark.system_tools("chromium", "playwright")]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM}: {install_hint('chromium')}")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs Playwright for Python: pip install playwright "
                                      "(in edgekit's dev extra; no browser download needed)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def camera(demo_clip: Path) -> Iterator[MjpegStream]:
    stream = MjpegStream(fps=15, video=str(demo_clip))
    yield stream
    stream.stop()


def _pixels(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)


def _number(page, selector: str) -> float:
    text = page.inner_text(selector)
    return float(text) if text not in ("", "-") else -1.0


def _until(what: str, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``condition`` from Python until it holds. Not ``page.wait_for_function``: that
    evaluates its string with ``eval`` inside the page, which the live view's
    Content-Security-Policy (no 'unsafe-eval', rightly) refuses since Chromium 150 (issue 26).
    Locators and screenshots evaluate nothing, so the page runs under its own policy here, as
    in a user's browser (no ``bypass_csp``)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.1)


def _painted(png: bytes) -> int:
    """Pixels that differ from the picture's most common colour (its background)."""
    pixels = _pixels(png).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return int(np.any(pixels != colours[counts.argmax()], axis=1).sum())


def _check_live_page(page, folder: Path, name: str) -> None:
    """The video changes, the figures update, the page logs no error; a screenshot is kept."""
    video = page.locator("#video")
    _until("the video shows a picture", lambda: _pixels(video.screenshot()).std() > 10)
    _until("the figures count frames", lambda: _number(page, "#frames") > 0)
    frames = _number(page, "#frames")
    first = _pixels(video.screenshot())
    time.sleep(1.5)
    second = _pixels(video.screenshot())
    assert first.shape == second.shape and first.std() > 10  # a picture, not a blank
    assert np.abs(first - second).mean() > 1.0, "the video did not change"
    # the page polls once a second and the figures it gets may be up to a second old
    # (live.STATS_MAX_AGE_S), so they may show the same count for up to two seconds
    _until("the figures update", lambda: _number(page, "#frames") > frames, timeout_s=10)
    assert _number(page, "#fps") > 0
    stages = [row.get_attribute("data-stage") for row in page.locator("#stages tbody tr").all()]
    assert stages == ["capture", "preprocess", "infer", "postprocess", "sink", "end to end"]
    infer_p50 = page.inner_text("#stages tbody tr[data-stage=infer] td:nth-child(2)")
    assert float(infer_p50) > 0
    found = page.locator("#detections li:not(.none)")
    _until("the clip's digits are listed", lambda: found.count() > 0)  # as the detector found
    chart = page.locator("#chart")
    _until("the latency chart is drawn", lambda: _painted(chart.screenshot()) > 200)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    print(f"screenshot: {path}")


def test_the_page_in_a_browser(browser, camera: MjpegStream, detector_bundle: Path,
                               tmp_path: Path) -> None:
    with serving(detector_bundle, "--source", camera.url, "--serve", "0") as served:
        page = browser.new_page(viewport={"width": 1100, "height": 720})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        response = page.goto(served.url)
        assert response.status == 200
        policy = response.headers["content-security-policy"]  # enforced: no bypass_csp here
        assert "script-src 'self'" in policy and "unsafe-eval" not in policy, policy
        _check_live_page(page, tmp_path, "live-view")
        assert "digit_detector" in page.inner_text("#what")
        assert "tflite" in page.inner_text("#backend")
        assert errors == []
        page.close()


def test_with_a_token(browser, camera: MjpegStream, detector_bundle: Path,
                      tmp_path: Path) -> None:
    with serving(detector_bundle, "--source", camera.url, "--serve", "127.0.0.1:0",
                 env={"EDGEKIT_SERVE_TOKEN": TOKEN}) as served:
        stranger = browser.new_context()
        for path in ("", "stream.mjpg", "snapshot.jpg", "stats.json", "metrics", "app.js"):
            assert stranger.request.get(served.url + path).status == 401, path
        page = stranger.new_page()
        refused = page.goto(served.url)
        assert refused.status == 401 and "needs its token" in page.inner_text("body")
        stranger.close()

        context = browser.new_context(viewport={"width": 1100, "height": 720})
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        response = page.goto(f"{served.url}?token={TOKEN}")
        assert response.status == 200 and page.url == served.url  # the token left the URL
        cookie = next(c for c in context.cookies() if c["name"] == "edgekit_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # the page's script cannot read it
        _check_live_page(page, tmp_path, "live-view-with-token")
        assert errors == []
        page.reload()  # the cookie carries on
        _until("the video shows a picture again",
               lambda: _pixels(page.locator("#video").screenshot()).std() > 10)
        context.close()
