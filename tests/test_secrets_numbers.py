"""Issue 20, round two: a source's secrets kept out of every view, control characters shown
escaped, every float option finite and in range, sizes bounded by what the machine holds, and
the smaller cases (a decoder parameter's exit code, the Python API's argument types, a home
folder that does not exist, HEAD requests, a host name that resolves to loopback).

Most cases are in-process; a few run the real command (``run_cli``), and those that load the
detector are marked slow.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np
import pytest
from conftest import CORAL, LENET, assert_clean_error, run_cli
from live_view import get, running_view, wait_for
from mjpeg import MjpegStream

from edgekit.errors import EdgekitError, InvalidData, UsageError
from edgekit.helpers.text import printable, redact

SECRET, PASSWORD = "SECRET0123456789", "hunter2pass"


def _secret_url(camera: MjpegStream) -> str:
    """The camera's URL with a user, a password and a token in it (the server ignores them)."""
    return camera.url.replace("http://", f"http://viewer:{PASSWORD}@") + f"?token={SECRET}&fps=15"


def _no_secret(text: str) -> None:
    assert SECRET not in text and PASSWORD not in text, text


# --------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("source, shown", [
    ("http://cam.local/stream.mjpg?token=SECRET", "http://cam.local/stream.mjpg?token=***"),
    ("rtsp://admin:pa55@10.0.0.9:554/live?a=1&b", "rtsp://***@10.0.0.9:554/live?a=***&***"),
    ("rtsp://admin@cam/h264", "rtsp://***@cam/h264"),
    ("http://[::1]:8080/x?k=v#access_token=t", "http://[::1]:8080/x?k=***#access_token=***"),
    ("http://cam/path@with-at?x=1", "http://cam/path@with-at?x=***"),
    ("0", "0"), ("clip.avi", "clip.avi"), ("frames/", "frames/"), ("picamera2:1", "picamera2:1"),
])
def test_redact_hides_credentials_and_query_values(source: str, shown: str) -> None:
    assert redact(source) == shown


def test_a_stream_that_cannot_open_is_named_without_its_secrets() -> None:
    from edgekit.loop.sources import open_source

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://viewer:{PASSWORD}@127.0.0.1:{port}/stream.mjpg?token={SECRET}"
    with pytest.raises(InvalidData) as raised:
        open_source(url)
    _no_secret(str(raised.value))
    assert f"127.0.0.1:{port}/stream.mjpg?token=***" in str(raised.value)
    with pytest.raises(UsageError) as raised:
        open_source(url, repeat=True)
    _no_secret(str(raised.value))


def test_the_live_view_shows_a_stream_without_its_secrets(demo_clip: Path) -> None:
    """The real stream source feeding the real view: /stats.json, /metrics and the page."""
    from edgekit.loop.sources import LiveSource

    camera = MjpegStream(fps=30, video=str(demo_clip))
    try:
        source = LiveSource(_secret_url(camera))
        assert source.description.startswith("stream http://***@127.0.0.1:")
        assert source.description.endswith("?token=***&fps=***")
        with running_view(camera=source) as run:
            assert wait_for(lambda: run.pipeline.stats.frames > 3)
            port = run.view.port
            stats = get(port, "/stats.json").body.decode()
            metrics = get(port, "/metrics").body.decode()
            page = get(port, "/").body.decode() + get(port, "/app.js").body.decode()
        source.close()
    finally:
        camera.stop()
    for text in (stats, metrics, page):
        _no_secret(text)
    assert json.loads(stats)["source"] == source.description
    assert f'source="{source.description}"' in metrics


@pytest.mark.slow
def test_run_prints_a_stream_without_its_secrets(detector_bundle: Path, demo_clip: Path) -> None:
    """The terminal summary and --json of a real run on a stream with a token and a password."""
    camera = MjpegStream(fps=30, video=str(demo_clip))
    try:
        url = _secret_url(camera)
        text = run_cli("run", detector_bundle, "--source", url, "--capture", "max_frames=4")
        shown = run_cli("run", detector_bundle, "--source", url, "--capture", "max_frames=4",
                        "--json")
        gone = run_cli("run", detector_bundle, "--source", url, "--capture", "repeat=on")
    finally:
        camera.stop()
    assert text.returncode == 0, text.stderr
    assert shown.returncode == 0, shown.stderr
    _no_secret(text.stdout + text.stderr)
    _no_secret(shown.stdout + shown.stderr)
    assert text.stdout.startswith("stream http://***@127.0.0.1:")
    assert "?token=***&fps=***" in json.loads(shown.stdout)["source"]
    assert_clean_error(gone, "--capture repeat")
    _no_secret(gone.stderr)


# ------------------------------------------------------------------------------------ text

HOSTILE = "tiger\x1b[2J\x1b[31m cat\r\n---  forged line\u202e"


def test_printable_escapes_control_characters_only() -> None:
    assert printable(HOSTILE) == "tiger\\x1b[2J\\x1b[31m cat\\r\\n---  forged line\\u202e"
    assert printable("Ägyptische Katze, 猫 (id 7)") == "Ägyptische Katze, 猫 (id 7)"
    assert printable("C:\\models\\a.tflite") == "C:\\models\\a.tflite"
    assert printable(3) == "3"


@pytest.mark.parametrize("view", ["text", "markdown", "csv"])
def test_a_label_cannot_forge_a_table_line(view: str) -> None:
    from edgekit.helpers.render import Notes, render_table

    notes = Notes()
    rows = [["1", notes.mark(HOSTILE, "why\x1b]0;title\x07"), 0.5], ["2", "plain", 0.25]]
    out = render_table(["rank", "class", "score"], rows, view, notes)
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\x07" not in out
    lines = out.splitlines()
    expected = {"text": 4 + 1, "markdown": 4 + 1, "csv": 3}[view]  # + the note's line
    assert len([line for line in lines if line.strip()]) == expected, out
    assert "\\x1b[2J" in out


def test_metrics_stay_parseable_with_a_carriage_return_in_a_name() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    from edgekit.live.prometheus import prometheus_text
    from edgekit.live.server import LiveView, serve_options
    from edgekit.live.state import ServeSink

    model = SimpleNamespace(
        backend=SimpleNamespace(name="fake\rbackend", describe=lambda: "fake", device="CPU\n",
                                runtime='rt "1" \\ 2'),
        artifact=Path("bundle/evil\r\nedgekit_frames_total 999\rx.tflite"), format="tflite-int8",
        task="detection")
    source = SimpleNamespace(description="stream\r\nx", stats=None)
    with LiveView(serve_options("127.0.0.1:0")) as view:
        ServeSink(view, source, model)
        text = prometheus_text(view)
    assert "\r" not in text
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    info = families["edgekit_info"].samples[0].labels
    assert info["artifact"] == "evil\\r\\nedgekit_frames_total 999\\rx.tflite"
    assert info["backend"] == "fake\\rbackend" and info["runtime"] == 'rt "1" \\ 2'
    assert families["edgekit_frames"].samples[0].value == 0  # no forged sample


def test_classify_shows_a_hostile_label_escaped(tmp_path: Path) -> None:
    if not CORAL.is_dir():
        pytest.skip("needs Coral's test data")
    labels = (CORAL / "imagenet_labels.txt").read_text().splitlines()
    labels[283] = HOSTILE.replace("\r\n", " ")  # one line per label
    labels[286] = "Egyptian\x1b[8m cat\x07"
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    args = ["classify", CORAL / "mobilenet_v1_0.25_128_quant.tflite", CORAL / "cat.bmp",
            "--labels", tmp_path / "labels.txt", "-k", "2"]
    text, table = run_cli(*args), run_cli(*args, "--table", "markdown")
    assert text.returncode == 0 and table.returncode == 0, text.stderr + table.stderr
    for out in (text.stdout, table.stdout):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", out), repr(out)
        assert "tiger\\x1b[2J\\x1b[31m cat" in out and "cat\\x07" in out
    assert len(text.stdout.splitlines()) == 6  # the model, the input, a gap, the image, 2 classes


def test_an_error_line_shows_a_name_escaped(tmp_path: Path) -> None:
    model = tmp_path / "model\x1b[2J\nerror: forged.tflite"
    result = run_cli("classify", model, tmp_path / "a.jpg")
    assert_clean_error(result, "no such file")
    assert "\x1b" not in result.stderr and "model\\x1b[2J\\nerror: forged.tflite" in result.stderr


# --------------------------------------------------------------------------------- numbers


def _float_options() -> list[tuple[str, object]]:
    """(name, type) of every option and every option family's key: "deploy --release settle"."""
    from edgekit.cli.app import all_commands, cli

    all_commands()  # each command's module imported: the walk below sees them all
    found = []

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if isinstance(param, click.Option):
                found.append((f"{path} {param.opts[0]}", param.type))
                for key, spec in getattr(param, "keys", {}).items():  # a family's keys
                    found.append((f"{path} {param.opts[0]} {key}", spec.type))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(cli, "")
    return found


def test_every_float_option_takes_its_value_through_finite() -> None:
    from edgekit.cli.options import Finite

    floats = [(name, kind) for name, kind in _float_options()
              if isinstance(kind, (click.types.FloatParamType, Finite))]
    assert {"classify --max-megapixels", "bench --duration", "run --postprocess iou",
            "deploy --ssh timeout", "deploy --release settle",
            "deploy --rollout max_fail"} <= {n for n, _ in floats}
    wrong = [name for name, kind in floats if not isinstance(kind, Finite)]
    assert not wrong, f"float options that let NaN or inf through: {wrong}"
    for _, kind in floats:
        for bad in ("nan", "inf", "-inf", "NaN", "1e999"):
            with pytest.raises(click.BadParameter, match="finite number"):
                kind.convert(bad, None, None)


def test_finite_states_the_bound() -> None:
    from edgekit.cli.options import Finite

    with pytest.raises(click.BadParameter, match=r"above 0 and at most 600, not 601"):
        Finite(0, 600, low_open=True).convert("601", None, None)
    assert Finite(0, 1).convert("0.5", None, None) == 0.5


@pytest.mark.parametrize("args, says", [
    (["classify", LENET / "x.tflite", LENET / "x.png", "--max-megapixels", "nan"],
     "--max-megapixels"),
    (["bench", LENET, "--duration", "nan"], "--duration"),
    (["bench", LENET, "--duration", "inf"], "--duration"),
    (["deploy", LENET, "--host", "pi@127.0.0.1", "--ssh", "timeout=inf"], "--ssh timeout"),
    (["deploy", LENET, "--host", "pi@127.0.0.1", "--release", "settle=nan"], "--release settle"),
    (["run", LENET, "--source", "0", "--postprocess", "iou=nan"], "--postprocess iou"),
    (["run", LENET, "--source", "0", "--capture", "realtime=inf"], "--capture realtime"),
])
def test_nan_and_inf_are_usage_errors(args: list, says: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert_clean_error(result, says, "finite")


def test_nan_cannot_switch_the_decompression_bomb_guard_off(tmp_path: Path) -> None:
    import cv2

    from edgekit.preprocess import check_pixels, read_image

    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))
    for limit in (math.nan, math.inf, -1.0, 0.0, 2.0 ** 40):
        with pytest.raises(UsageError, match="finite number"):
            read_image(path, limit)
    with pytest.raises(InvalidData, match="megapixels"):
        check_pixels(path, 100.0)  # 600 pixels declared: the guard still works
    assert read_image(path, None).shape == (20, 30, 3)


def test_the_detection_thresholds_refuse_nan_and_inf() -> None:
    from edgekit.tasks.detection import DetectionOptions, configure

    for params in (("score_threshold=nan",), ("size_scale=inf",), ("max_detections=inf",)):
        with pytest.raises(UsageError):
            configure({"name": "edgekit-grid"}, DetectionOptions(params=params))


def test_requests_and_streams_are_bounded_by_the_machine() -> None:
    from edgekit.backends import Concurrency
    from edgekit.helpers.limits import max_parallel

    started = time.monotonic()
    for field in ("requests", "streams"):
        with pytest.raises(UsageError, match=f"at most {max_parallel()} .*per core") as raised:
            Concurrency("throughput", **{field: 10 ** 5})
        assert "100000" in str(raised.value)
    assert Concurrency("throughput", max_parallel()).requests == max_parallel()
    assert Concurrency("throughput", np.int64(2)).requests == 2  # numpy's integers are whole
    assert time.monotonic() - started < 1


def test_bench_refuses_ten_thousand_requests_at_once(lenet_bundle: Path) -> None:
    from edgekit.bench import BenchSettings, bench

    started = time.monotonic()
    for settings in (BenchSettings(mode="throughput", requests=10_000),
                     BenchSettings(runs=10 ** 9), BenchSettings(duration=math.nan),
                     BenchSettings(duration=10 ** 6), BenchSettings(threads=10 ** 6)):
        with pytest.raises(UsageError, match="at most|finite"):
            bench(lenet_bundle, ["onnxruntime"], settings)
    assert time.monotonic() - started < 2  # no worker was started


def test_bench_cli_says_the_bound_of_requests(lenet_bundle: Path) -> None:
    from edgekit.helpers.limits import max_parallel

    result = run_cli("bench", lenet_bundle, "--infer", "mode=throughput,requests=10000")
    assert result.returncode == 2
    assert_clean_error(result, "--infer requests", f"at most {max_parallel()}")


def test_threads_and_queues_are_bounded() -> None:
    from edgekit.backends import open_backend
    from edgekit.loop.pipeline import Pipeline, Stage
    from edgekit.loop.sources import ImageFolder

    with pytest.raises(UsageError, match="threads .*at most"):
        open_backend("tflite", LENET / "missing.tflite", threads=10 ** 6)
    with pytest.raises(UsageError, match="queue_size .*at most 64"):
        Pipeline(ImageFolder.__new__(ImageFolder), [Stage("x", lambda item: None)],
                 queue_size=10 ** 6)


@pytest.mark.parametrize("shape, says", [
    ((1, 100000, 100000, 3), "at most 16384 pixels a side"),
    ((1, 16000, 16000, 3000), "more than this machine can hold"),
    ((1, -32, 32, 1), "whole sizes of 1 or more"),
    ((1, 0, 32, 1), "whole sizes of 1 or more"),
    ((1, 32.5, 32, 1), "whole sizes of 1 or more"),
])
def test_an_input_shape_the_machine_cannot_hold_is_refused_at_once(shape: tuple, says: str
                                                                   ) -> None:
    from edgekit.preprocess import InputSpec

    started = time.monotonic()
    with pytest.raises(UsageError, match=says):
        InputSpec(shape=shape, color="rgb" if shape[3] == 3 else "gray")
    assert time.monotonic() - started < 1


def test_a_huge_shorter_side_is_refused() -> None:
    from edgekit.preprocess import SpecOptions, parse_resize

    with pytest.raises(UsageError, match="from 1 to 16384"):
        parse_resize("shorter-side:99999999")
    with pytest.raises(UsageError, match="from 1 to 16384"):
        SpecOptions(resize="shorter-side:99999999")
    assert parse_resize("shorter-side:16384").value == 16384


def test_convert_refuses_a_huge_input_shape_before_tensorflow(tmp_path: Path) -> None:
    from edgekit.convert import ConvertOptions, convert

    started = time.monotonic()
    with pytest.raises(UsageError, match="16384"):
        convert(LENET / "lenet5_digits.keras", tmp_path / "out",
                ConvertOptions(input_shape=(100000, 100000, 1)))
    assert time.monotonic() - started < 3 and not (tmp_path / "out").exists()


def test_a_manifest_with_a_negative_input_shape(lenet_bundle: Path, tmp_path: Path) -> None:
    from edgekit.model import load_model

    bundle = Path(shutil.copytree(lenet_bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "edgekit.json").read_text())
    manifest["input"]["shape"] = [1, -32, 32, 1]
    (bundle / "edgekit.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgekitError, match=r"\(1, -32, 32, 1\) must be whole sizes"):
        load_model(bundle)


# ------------------------------------------------------------------- item 8: the rest


def test_a_wrong_output_order_is_a_usage_error() -> None:
    from edgekit.tasks.detection import DetectionOptions, configure

    for name, order in (("edgekit-grid", "2,1,0"), ("ssd", "boxes,scores"),
                        ("ssd-raw", "scores,scores")):
        with pytest.raises(UsageError, match="output_order"):
            configure({"name": name}, DetectionOptions(params=(f"output_order={order}",)))
    decoder, _ = configure({"name": "edgekit-grid"}, DetectionOptions(
        params=("output_order=classes,box,objectness",)))
    assert decoder["output_order"] == ("classes", "box", "objectness")


@pytest.mark.slow
def test_run_with_a_wrong_output_order_exits_2(detector_bundle: Path, demo_clip: Path) -> None:
    result = run_cli("run", detector_bundle, "--source", demo_clip, "--capture", "max_frames=1",
                     "--postprocess", "output_order=2,1,0")
    assert result.returncode == 2, result.stderr
    assert_clean_error(result, "output_order")


@pytest.mark.parametrize("kwargs, says", [
    ({"threads": "2"}, "threads takes int or None, not '2' (str)"),
    ({"threads": 2.5}, "threads takes int or None, not 2.5 (float)"),
    ({"threads": True}, "threads takes int or None, not True (bool)"),
    ({"device": 123}, "device takes str or None, not 123 (int)"),
    ({"concurrency": "throughput"},
     "concurrency takes Concurrency or None, not 'throughput' (str)"),
])
def test_open_backend_checks_its_argument_types(lenet_bundle: Path, kwargs: dict,
                                                says: str) -> None:
    from edgekit.backends import open_backend

    with pytest.raises(UsageError) as raised:
        open_backend("tflite", lenet_bundle / "lenet5_digits_int8.tflite", **kwargs)
    assert str(raised.value) == f"open_backend(): {says}"


def test_the_python_api_checks_its_argument_types(lenet_bundle: Path) -> None:
    from edgekit.backends import Concurrency, open_backend
    from edgekit.loop.run import loop_model
    from edgekit.model import load_model
    from edgekit.preprocess import read_image

    calls = [(lambda: load_model(lenet_bundle, spec="x"), "spec takes SpecOptions or None"),
             (lambda: load_model(lenet_bundle, threads="2"), "threads takes int or None"),
             (lambda: load_model(42), "path takes str or Path or Manifest, not 42"),
             (lambda: loop_model(lenet_bundle, requests=2.0), "requests takes int"),
             (lambda: Concurrency("throughput", "2"), "requests takes int or None"),
             (lambda: open_backend(7, "x.tflite"), "name takes str"),
             (lambda: read_image(["a.png"]), "path takes str or Path")]
    for call, says in calls:
        with pytest.raises(UsageError, match=re.escape(says)):
            call()
    with load_model(lenet_bundle, threads=1, spec=None) as model:  # the right types still work
        assert model.backend.threads == 1


def test_no_cache_is_made_under_a_home_that_does_not_exist(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    import tempfile

    from edgekit.bundle import integrity
    from edgekit.helpers import config

    home = tmp_path / "nonexistent"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("EDGEKIT_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(config, "_temporary", {})
    monkeypatch.setattr(integrity, "_loaded", None)
    folder = config.cache_dir()
    assert folder == tmp_path / "tmp" / f"edgekit-cache-{os.getuid()}"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert config.cache_dir() == folder  # said once
    said = capsys.readouterr().err
    assert said.count("note:") == 1 and str(home) in said and "XDG_CACHE_HOME" in said
    integrity._remember(tmp_path / "model.tflite", "key", "digest")
    assert (folder / integrity.CACHE_NAME).is_file() and not home.exists()


def test_a_temporary_cache_someone_else_could_write_is_not_used(tmp_path: Path,
                                                               monkeypatch) -> None:
    import tempfile

    from edgekit.helpers import config

    monkeypatch.setenv("HOME", str(tmp_path / "nonexistent"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(config, "_temporary", {})
    planted = tmp_path / f"edgekit-cache-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    folder = config.cache_dir()
    assert folder != planted and folder.parent == tmp_path
    assert folder.stat().st_mode & 0o077 == 0


@pytest.mark.slow
def test_a_command_under_a_missing_home(lenet_bundle: Path, tmp_path: Path) -> None:
    import cv2

    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), np.zeros((32, 32), np.uint8))
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME",
                                                            "EDGEKIT_CACHE_DIR")}
    home = tmp_path / "nonexistent"
    (tmp_path / "tmp").mkdir()
    result = subprocess.run([sys.executable, "-m", "edgekit", "classify", str(lenet_bundle),
                             str(image), "-k", "1"], capture_output=True, text=True,
                            env={**env, "HOME": str(home), "TMPDIR": str(tmp_path / "tmp")},
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert not home.exists()
    assert "note: the home folder" in result.stderr
    assert (tmp_path / "tmp" / f"edgekit-cache-{os.getuid()}" / "verified.json").is_file()


def test_head_is_answered_like_get_without_a_body() -> None:
    with running_view() as run:
        assert wait_for(lambda: run.pipeline.stats.frames > 3)
        port = run.view.port
        for path, kind in (("/", "text/html"), ("/stats.json", "application/json"),
                           ("/metrics", "text/plain"), ("/snapshot.jpg", "image/jpeg"),
                           ("/app.js", "text/javascript")):
            got, head = get(port, path), get(port, path, method="HEAD")
            assert head.status == got.status == 200, path
            assert head.headers["content-type"].startswith(kind) and head.body == b""
            if path in ("/", "/app.js"):
                assert head.headers["content-length"] == str(len(got.body))
        started = time.monotonic()
        stream = get(port, "/stream.mjpg", method="HEAD")  # headers, then the end: no frames
        assert stream.status == 200 and stream.body == b"" and time.monotonic() - started < 2
        assert stream.headers["content-type"].startswith("multipart/x-mixed-replace")
        assert get(port, "/nothing", method="HEAD").status == 404
        assert get(port, "/", {"Host": "evil.example"}, method="HEAD").status == 403


def test_a_name_that_resolves_to_loopback_serves_at_the_url_it_prints(monkeypatch) -> None:
    from edgekit.live import server
    from edgekit.live.server import LiveView, serve_options

    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # the machine's own name, as Debian's /etc/hosts has it
        return real("127.0.0.1" if host == "camera-pi" else host, *args, **kwargs)

    monkeypatch.setattr(server.socket, "getaddrinfo", resolve)
    options = serve_options("camera-pi:0")
    assert options.loopback and options.token is None
    with LiveView(options) as view:
        assert view.url == f"http://camera-pi:{view.port}/"
        for host in (f"camera-pi:{view.port}", "Camera-Pi.", f"127.0.0.1:{view.port}",
                     "localhost"):
            assert get(view.port, "/stats.json", {"Host": host}).status == 200, host
        for host in ("evil.example", f"camera-pi.evil.example:{view.port}", "10.0.0.1"):
            assert get(view.port, "/stats.json", {"Host": host}).status == 403, host

