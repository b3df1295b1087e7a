"""`edgekit bench` on the LeNet bundle: every pair, honest statuses, every output form."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli_json, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows(lenet_bundle: Path) -> list[dict]:
    result = run_cli("bench", lenet_bundle, "--runs", "30", "--warmup", "3", "--json", "-q")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_pair_has_a_row_and_a_status(rows: list[dict]) -> None:
    pairs = {(r["format"], r["backend"]): r for r in rows}
    for pair in [("tflite-fp32", "tflite"), ("tflite-int8", "tflite"), ("tflite-int8", "openvino"),
                 ("tflite-dynamic", "tflite"), ("onnx", "onnxruntime"), ("onnx", "openvino"),
                 ("onnx-int8", "onnxruntime"), ("onnx-int8", "openvino"),
                 ("openvino-fp32", "openvino"), ("openvino-fp16", "openvino")]:
        assert pairs[pair]["status"] == "ok", pairs[pair]
    assert pairs[("openvino-fp16", "myriad")]["status"] == "skipped"
    assert "MYRIAD" in pairs[("openvino-fp16", "myriad")]["reason"]
    assert pairs[("edgetpu", "edgetpu")]["status"] == "skipped"
    assert "not in the bundle" in pairs[("edgetpu", "edgetpu")]["reason"]


def test_ok_rows_carry_consistent_numbers(rows: list[dict]) -> None:
    for r in (r for r in rows if r["status"] == "ok"):
        lat = r["latency"]
        assert lat["count"] == 30
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["load_ms"] > 0 and r["first_ms"] > 0 and r["throughput"] > 0
        assert r["peak_memory_mb"] > 10 and r["model_memory_mb"] >= 0
        assert r["agreement"] >= 0.99 and r["accuracy"] > 0.95
        assert r["mode"] == "latency" and r["requests"] == 1 and r["threads"] == "default"
        assert r["streams"] == ("1" if r["backend"] == "openvino" else "-")
        assert r["device"] == "CPU" and r["runtime"]


def test_csv_markdown_plot_and_threads(lenet_bundle: Path, tmp_path: Path) -> None:
    base = ["bench", lenet_bundle, "--backends", "tflite,onnxruntime", "--runs", "5",
            "--warmup", "1", "--infer", "threads=1", "-q", "--no-fidelity"]
    png = tmp_path / "lat.png"
    as_csv = run_cli(*base, "--table", "csv", "--plot", png)  # the table and the plot of one run
    assert as_csv.returncode == 0, as_csv.stderr
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["backend"] for r in table} == {"tflite", "onnxruntime"}
    assert all(r["threads"] == "1" for r in table)
    assert all(float(r["p50_ms"]) > 0 for r in table if r["status"] == "ok")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = run_cli(*base, "--table", "markdown")
    assert md.returncode == 0, md.stderr
    md = md.stdout
    assert md.startswith("| artifact | backend |") and "|---|" in md
    timed = cli_json("bench", lenet_bundle, "--backends", "onnxruntime", "--duration", "0.3",
                     "--json", "-q", "--no-fidelity")
    assert timed[0]["latency"]["count"] > 10


def test_a_failing_pair_does_not_stop_the_rest(lenet_bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(lenet_bundle, broken)
    onnx = broken / "lenet5_digits.onnx"
    onnx.write_bytes(onnx.read_bytes()[:5000])
    result = run_cli("bench", broken, "--backends", "onnxruntime,tflite", "--runs", "5",
                     "--json", "-q", "--no-fidelity")
    assert_clean_error(result, "rows failed", "lenet5_digits.onnx on onnxruntime")  # exit 1
    rows = {(r["format"], r["backend"]): r for r in json.loads(result.stdout)}
    assert rows[("onnx", "onnxruntime")]["status"] == "failed"
    assert "lenet5_digits.onnx does not match the bundle's manifest" in \
        rows[("onnx", "onnxruntime")]["reason"]
    assert rows[("tflite-int8", "tflite")]["status"] == "ok"


def test_bare_model_and_bad_arguments(coral: Path, tmp_path: Path) -> None:
    rows = cli_json("bench", coral / "mobilenet_v1_0.25_128_quant.tflite", "--runs", "3",
                    "--json", "-q")
    assert {r["backend"] for r in rows} == {"tflite", "openvino"}
    assert all(r["status"] == "ok" and r["agreement"] is None for r in rows)
    assert_clean_error(run_cli("bench", coral / "cat.bmp"), "bench takes a bundle")
    assert_clean_error(run_cli("bench", tmp_path / "nothing"), "no such bundle")
    assert_clean_error(run_cli("bench", coral / "mobilenet_v1_0.25_128_quant.tflite",
                               "--backends", "tflite,gpu"), "unknown backend 'gpu'")
    assert_clean_error(run_cli("bench", coral / "mobilenet_v1_0.25_128_quant.tflite",
                               "--json", "--table", "csv"), "choose one of")


def test_peak_memory_is_the_workers_own(lenet_bundle: Path) -> None:
    """A worker started from a big process must not report that process's peak."""
    import numpy as np

    from edgekit.bench import BenchSettings, bench

    _ballast = np.ones(400 * 2**20 // 8)  # this (parent) process holds 400 MB meanwhile
    rows = bench(lenet_bundle, ["tflite"], BenchSettings(runs=3, warmup=0, fidelity=False))
    ok = [r for r in rows if r.status == "ok"]
    assert ok and all(10 < r.peak_memory_mb < 300 for r in ok), [r.peak_memory_mb for r in ok]


def test_name_format_pairs_device_and_a_progress_line_per_row(lenet_bundle: Path) -> None:
    """--backends takes NAME:FORMAT as compare does; --device goes to every row; the progress
    counts every row, skipped ones included."""
    result = run_cli("bench", lenet_bundle, "--backends",
                     "tflite:tflite-fp32,openvino:onnx,edgetpu", "--infer", "device=CPU", "--runs",
                     "3", "--warmup", "0", "--no-fidelity", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["format"], r["backend"], r["status"]) for r in rows] == [
        ("tflite-fp32", "tflite", "ok"), ("edgetpu", "edgetpu", "skipped"),
        ("onnx", "openvino", "ok")]
    assert {r["device"] for r in rows if r["status"] == "ok"} == {"CPU"}
    progress = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    assert len(progress) == len(rows)
    assert all(line.startswith(f"[{i}/{len(rows)}] ") for i, line in enumerate(progress, 1))
    assert "skipped (not in the bundle" in progress[1]
    refused = run_cli("bench", lenet_bundle, "--backends", "onnxruntime:tflite-int8", "-q")
    assert refused.returncode == 0, refused.stderr  # a pair the backend cannot run: one row
    assert "does not run tflite-int8" in refused.stdout
    assert_clean_error(run_cli("bench", lenet_bundle, "--backends", "tflite:tflite-int4"),
                       "unknown format 'tflite-int4'")
    gpu = run_cli("bench", lenet_bundle, "--backends", "tflite", "--infer", "device=GPU", "--runs",
                  "2", "-q", "--json")
    assert_clean_error(gpu, "every row that could run failed", "CPU only")  # each row says so
    assert all("CPU only" in r["reason"] for r in json.loads(gpu.stdout))


def test_throughput_mode_rows_say_mode_requests_streams_threads(lenet_bundle: Path) -> None:
    rows = cli_json("bench", lenet_bundle, "--backends",
                    "tflite:tflite-fp32,onnxruntime:onnx,openvino:openvino-fp32",
                    "--infer", "mode=throughput,requests=2,threads=2",
                        "--runs", "40",
                    "--warmup", "2", "--json", "-q", "--no-fidelity")
    by_backend = {r["backend"]: r for r in rows}
    assert set(by_backend) == {"tflite", "onnxruntime", "openvino"}
    for r in rows:
        assert r["status"] == "ok" and r["mode"] == "throughput" and r["requests"] == 2
        assert r["latency"]["count"] == 40 and r["throughput"] > 0
    assert by_backend["tflite"]["threads"] == "1 per request"
    assert by_backend["onnxruntime"]["threads"] == "1 per request"
    assert by_backend["tflite"]["streams"] == "-"
    assert by_backend["openvino"]["threads"] == "2" and int(by_backend["openvino"]["streams"]) >= 1
    streams = cli_json("bench", lenet_bundle, "--backends", "openvino:openvino-fp32", "--infer",
                       "mode=throughput,streams=2", "--runs", "10", "--json", "-q",
                       "--no-fidelity")
    assert streams[0]["streams"] == "2" and streams[0]["requests"] >= 2
    table = run_cli("bench", lenet_bundle, "--backends", "onnxruntime:onnx", "--infer",
                    "mode=throughput", "--runs", "10", "-q", "--no-fidelity")
    assert table.returncode == 0, table.stderr
    assert "throughput" in table.stdout and "requests in flight" in table.stdout


def test_streams_with_every_backend_skip_the_rows_without_streams(lenet_bundle: Path) -> None:
    rows = cli_json("bench", lenet_bundle, "--infer", "mode=throughput,streams=1",
                    "--runs",
                    "5", "--json", "-q", "--no-fidelity")
    for r in rows:
        if r["backend"] in ("tflite", "onnxruntime"):
            assert r["status"] == "skipped" and "no execution streams" in r["reason"]
    assert any(r["backend"] == "openvino" and r["status"] == "ok" for r in rows)
