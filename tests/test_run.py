"""`edgekit run` and `edgekit compare` end to end: the real detector, the generated clip, a live
stream that vanishes, Ctrl-C in the middle of a run."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from conftest import DETECTOR, assert_clean_error, cli_json, run_cli
from mjpeg import MjpegStream

pytestmark = pytest.mark.slow


def _frames_in(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    count = 0
    while cap.read()[0]:
        count += 1
    return count


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_on_the_clip(detector_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    video, lines = tmp_path / "annotated.avi", tmp_path / "frames.jsonl"
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--save", video,
                     "--save", lines, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == 90 and report["decode_failures"] == 0
    assert report["map50"] >= 0.7 and report["map_frames"] == 90
    assert set(report["stages_ms"]) == {"capture", "preprocess", "infer", "postprocess", "sink"}
    assert report["end_to_end_ms"]["p50"] > 0 and report["fps"] > 0
    assert _frames_in(video) == 90
    records = _jsonl(lines)
    assert [r["frame"] for r in records] == list(range(90))
    assert any(r["detections"] for r in records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.avi", "frames.jsonl"]
    # The sequential loop (--capture pipeline=off) finds the same.
    plain = cli_json("run", detector_bundle, "--source", demo_clip, "--json", "--capture",
                     "pipeline=off")
    assert plain["pipelined"] is False and plain["map50"] == report["map50"]


@pytest.fixture(scope="module")
def one_request(detector_bundle: Path, demo_clip: Path) -> Callable[[str], dict]:
    """``run --backend B --json`` on the clip, run once per backend for the tests below."""
    reports: dict[str, dict] = {}

    def report(backend: str) -> dict:
        if backend not in reports:
            reports[backend] = cli_json("run", detector_bundle, "--source", demo_clip,
                                        "--backend", backend, "--json")
        return reports[backend]

    return report


@pytest.mark.parametrize("backend", ["tflite", "onnxruntime", "openvino"])
def test_requests_in_flight_keep_frame_order(detector_bundle: Path, demo_clip: Path,
                                             tmp_path: Path, backend: str,
                                             one_request: Callable[[str], dict]) -> None:
    lines = tmp_path / "frames.jsonl"
    one = one_request(backend)
    two = cli_json("run", detector_bundle, "--source", demo_clip, "--backend", backend,
                   "--infer", "requests=2", "--save", lines, "--json")
    assert two["requests"] == 2 and "2 requests" in two["backend"]
    assert two["frames"] == 90 and two["map50"] == pytest.approx(one["map50"], abs=1e-4)
    assert [r["frame"] for r in _jsonl(lines)] == list(range(90))
    assert two["stages_ms"]["infer"]["count"] == 90


def test_throughput_mode_tunes_the_runtime_and_keeps_its_requests_in_flight(
        detector_bundle: Path, demo_clip: Path, one_request: Callable[[str], dict]) -> None:
    one = one_request("openvino")
    many = cli_json("run", detector_bundle, "--source", demo_clip, "--backend", "openvino",
                    "--infer", "mode=throughput", "--json")
    assert "throughput mode" in many["backend"] and "latency mode" not in one["backend"]
    # without --requests: OpenVINO's optimal number of requests under the THROUGHPUT hint
    assert f"{many['requests']} request" in many["backend"]
    assert many["frames"] == 90 and many["map50"] == pytest.approx(one["map50"], abs=1e-4)
    rows = cli_json("compare", detector_bundle, "--source", demo_clip, "--backends", "openvino",
                    "--infer", "mode=throughput,requests=3", "--capture", "max_frames=20",
                        "--json",
                    "-q")
    assert rows[0]["status"] == "ok" and "throughput mode, 3 requests" in rows[0]["runs_on"]


def test_realtime_paces_a_file_and_splits_out_the_queue_wait(detector_bundle: Path,
                                                             demo_clip: Path) -> None:
    fast = run_cli("run", detector_bundle, "--source", demo_clip, "--capture", "max_frames=30")
    assert fast.returncode == 0, fast.stderr
    assert "queue wait" in fast.stdout and "end-to-end latency includes the queue wait" in \
        fast.stdout
    for text in ("capture", "preprocess", "infer", "postprocess", "end to end", "frames 30",
                 "FPS", "mAP@0.5"):  # the human summary
        assert text in fast.stdout
    paced = cli_json("run", detector_bundle, "--source", demo_clip, "--capture", "realtime=source",
                     "--capture", "max_frames=30", "--json")
    assert paced["paced_fps"] == 15 and paced["frames"] == 30
    assert paced["fps"] <= 15 * 30 / 29  # frame k is read no earlier than k / 15 s
    assert paced["queue_wait_ms"]["count"] == 30
    text = run_cli("run", detector_bundle, "--source", demo_clip, "--capture", "realtime=60",
                   "--capture", "max_frames=10")
    assert text.returncode == 0, text.stderr
    assert "read in real time at 60 FPS" in text.stdout


def test_realtime_on_a_camera_is_a_note(detector_bundle: Path, tmp_path: Path) -> None:
    stream = MjpegStream(fps=20, size=(160, 120))
    try:
        result = run_cli("run", detector_bundle, "--source", stream.url, "--capture",
                         "realtime=source",
                         "--capture", "max_frames=5")
    finally:
        stream.stop()
    assert result.returncode == 0, result.stderr
    assert "note: --capture realtime:" in result.stdout
    assert "at its own rate already" in result.stdout
    assert "frames arrive at the camera's rate" in result.stdout


def test_compare_with_requests(detector_bundle: Path, demo_clip: Path) -> None:
    rows = cli_json("compare", detector_bundle, "--source", demo_clip, "--backends",
                    "openvino,tflite", "--infer", "requests=2", "--capture", "max_frames=20",
                    "--json",
                        "-q")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["requests"] == 2 and r["frames"] == 20 for r in rows)


def test_repeat_loops_the_clip(detector_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    lines = tmp_path / "frames.jsonl"
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--capture", "repeat=on",
                     "--capture",
                     "max_frames=200", "--save", lines, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == 200 and report["map50"] is None  # 90 frames, played 3 times
    assert report["source"].endswith("90 frames, repeated")
    assert [r["frame"] for r in _jsonl(lines)] == list(range(200))
    assert_clean_error(run_cli("run", detector_bundle, "--source", demo_clip, "--capture",
                               "repeat=on",
                               "--capture", f'truth={demo_clip.with_suffix(".json")}'),
                               "choose one")


def test_a_damaged_clip_completes(detector_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    data = bytearray(demo_clip.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    for frame in (30, 31, 60):  # wipe these frames' JPEG tables
        data[starts[frame] + 2:starts[frame] + 600] = bytes(598)
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    result = run_cli("run", detector_bundle, "--source", damaged, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0 < report["decode_failures"] and report["frames"] + report["decode_failures"] == 90
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(demo_clip.read_bytes()[: len(data) * 2 // 3])
    report = cli_json("run", detector_bundle, "--source", truncated, "--json")
    assert 30 < report["frames"] < 90 and report["frames"] + report["decode_failures"] == 90


def test_bad_input(detector_bundle: Path, lenet_bundle: Path, demo_clip: Path,
                   tmp_path: Path) -> None:
    assert_clean_error(run_cli("run", lenet_bundle, "--source", demo_clip, "--postprocess",
                               "task=detection"), "holds a classification model")
    assert_clean_error(run_cli("run", detector_bundle, "--source", tmp_path / "no.avi"),
                       "no such file or folder")
    codec = tmp_path / "codec.avi"
    codec.write_bytes(demo_clip.read_bytes().replace(b"MJPG", b"XV00", 2))
    assert_clean_error(run_cli("run", detector_bundle, "--source", codec), "codec 'XV00'")
    assert_clean_error(run_cli("run", detector_bundle, "--source", demo_clip, "--serve",
                               "window"),
                       "headless")
    assert_clean_error(run_cli("run", detector_bundle, "--source", demo_clip, "--save",
                               tmp_path / "out.gif"), ".avi")
    if not Path("/dev/video9").exists():
        assert_clean_error(run_cli("run", detector_bundle, "--source", "9"),
                           "no camera at index 9")
    assert not list(tmp_path.glob(".*partial*"))


def _start_run(bundle: Path, url: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgekit", "run", str(bundle), "--source", url, "--save",
         str(folder / "live.avi"), "--save", str(folder / "live.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_frames(folder: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(len(p.read_text().splitlines()) >= count  # the JSONL being written
               for p in folder.glob(".live.partial-*.jsonl")):
            return
        time.sleep(0.1)
    raise AssertionError("the loop never produced frames")


def test_a_camera_that_vanishes(detector_bundle: Path, tmp_path: Path) -> None:
    stream = MjpegStream(fps=20, size=(320, 240))
    process = _start_run(detector_bundle, stream.url, tmp_path)
    try:
        _wait_for_frames(tmp_path, 10)
    finally:
        stream.stop()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert_clean_error(type("R", (), {"returncode": 1, "stderr": err, "stdout": out})(),
                       "stopped delivering frames", "reconnect", "live.avi")
    written = _frames_in(tmp_path / "live.avi")
    assert written >= 10 and written == len(_jsonl(tmp_path / "live.jsonl"))
    assert "frames" in out  # the summary of what was done is still printed


def test_ctrl_c_closes_the_outputs(detector_bundle: Path, tmp_path: Path) -> None:
    stream = MjpegStream(fps=20, size=(320, 240))
    process = _start_run(detector_bundle, stream.url, tmp_path)
    try:
        _wait_for_frames(tmp_path, 10)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        stream.stop()
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    records = _jsonl(tmp_path / "live.jsonl")
    assert len(records) >= 10 and _frames_in(tmp_path / "live.avi") == len(records)
    assert not list(tmp_path.glob(".*partial*"))


def test_compare_every_cpu_backend(detector_bundle: Path, demo_clip: Path) -> None:
    result = run_cli("compare", detector_bundle, "--source", demo_clip, "--json", "-q")
    assert result.returncode == 0, result.stderr
    rows = {r["backend"]: r for r in json.loads(result.stdout)}
    ok = {name: r for name, r in rows.items() if r["status"] == "ok"}
    assert set(ok) == {"tflite", "openvino", "onnxruntime"}
    assert rows["myriad"]["status"] == "skipped" and rows["edgetpu"]["status"] == "skipped"
    maps = [r["map50"] for r in ok.values()]
    assert min(maps) >= 0.7 and max(maps) - min(maps) < 0.05
    for r in ok.values():
        assert r["frames"] == 90 and r["fps"] > 0 and r["stages_ms"]["infer"]["p90"] > 0
    markdown = run_cli("compare", detector_bundle, "--source", demo_clip, "--table", "markdown",
                       "-q", "--backends", "tflite,openvino:tflite-int8")
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.startswith("| backend | artifact |")
    assert "digit_detector_int8.tflite" in markdown.stdout


def test_compare_csv_and_plot(detector_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    import csv
    import io

    plot = tmp_path / "compare.png"
    result = run_cli("compare", detector_bundle, "--source", demo_clip, "--capture",
                     "max_frames=20",
                     "--backends", "tflite,onnxruntime,edgetpu", "--table", "csv", "--plot", plot)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["backend"] for r in rows] == ["tflite", "onnxruntime", "edgetpu"]
    assert rows[2]["status"] == "skipped" and float(rows[0]["FPS"]) > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {plot}" in result.stderr
def _as_flags(manifest: dict) -> list[str]:
    """A bundle's input spec and decoder written as the flags a bare model takes."""
    spec, decoder = manifest["input"], dict(manifest["decoder"])
    flags = ["--postprocess", f"decoder={decoder.pop('name')}", "--preprocess",
             f"resize={spec['resize']}",
             "--preprocess", f"color={spec['color']}",
             "--preprocess", "mean=" + ",".join(map(str, spec["mean"])),
             "--preprocess", "std=" + ",".join(map(str, spec["std"]))]
    if "interpolation" in spec:
        flags += ["--preprocess", f"interpolation={spec['interpolation']}"]
    named = {"score_threshold": "score_threshold", "iou_threshold": "iou",
             "max_detections": "max_detections"}
    for key, value in decoder.items():
        if key in named:
            flags += ["--postprocess", f"{named[key]}={value}"]
        elif key != "origin":
            flags += ["--postprocess", f"{key}={value}"]
    return flags


def test_a_bare_detector_with_the_bundles_parameters_scores_as_the_bundle(
        detector_bundle: Path, demo_clip: Path) -> None:
    """The bundle's own .tflite taken out of it: with defaults it scores below the bundle (the
    frame is stretched, not letterboxed; the grid's box scale is the default); with the
    manifest's spec and decoder given as flags it scores the same on the same frames."""
    manifest = json.loads((detector_bundle / "edgekit.json").read_text())
    bare = detector_bundle / "digit_detector_int8.tflite"
    labels = ["--postprocess", f"labels={DETECTOR / 'labels.txt'}"]

    def score(*args: str | Path) -> dict:
        result = run_cli("run", *args, "--source", demo_clip, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    bundle = score(detector_bundle, "--backend", "tflite")
    plain = score(bare, "--postprocess", "decoder=edgekit-grid", *labels)
    flagged = score(bare, *_as_flags(manifest), *labels)
    assert bundle["artifact"].endswith("digit_detector_int8.tflite")
    assert plain["map50"] < bundle["map50"] - 0.02
    assert flagged["map50"] == bundle["map50"] and flagged["map_frames"] == 90
    assert "resize letterbox (flag)" in flagged["input"]
    assert "size_scale 0.5 (flag)" in flagged["decoder"]
