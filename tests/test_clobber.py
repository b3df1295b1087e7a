"""Outputs never clobber inputs, reads stay bounded, a bundle is read strictly (issue 20).

One place (``edgekit.helpers.output_files``) decides whether a path may be written: never a
file of a bundle, never a source being read (temporary names are unique per process), never a path
another edgekit process is writing (a lock beside it names that process); a converted bundle
replaces only what was at ``-o`` when the conversion began. A device or FIFO given as a
source or data file is refused up front; headers are read as bounded prefixes. A bundle's
labels, manifest and validation set that cannot be what they claim get one clear line.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import LENET, assert_clean_error, run_cli

from edgekit.errors import InvalidData, InvalidModel, UsageError, WriteFailed
from edgekit.helpers.output_files import PendingFile, check, identity, lock_path

MODEL = LENET / "lenet5_digits.keras"


def _fake_bundle(folder: Path, manifest: str = "{}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "edgekit.json").write_text(manifest)
    (folder / "digit_detector.onnx").write_bytes(b"model")
    (folder / "validation.npz").write_bytes(b"PK\x03\x04")
    return folder


class Holder:
    """Another process holding an output path, as a running edgekit writing it would."""

    def __init__(self, path: Path, option: str = "--save") -> None:
        code = ("import sys, time; from pathlib import Path; "
                "from edgekit.helpers.output_files import Claim;"
                f"c = Claim(Path({str(path)!r}), {option!r}); print('ready', flush=True); "
                "sys.stdin.read()")
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        self.pid = self.process.pid

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- never a file of a bundle -------------------------------------------------------------

@pytest.mark.parametrize("name", ["digit_detector.onnx", "validation.npz", "notes.jsonl"])
def test_no_output_inside_a_bundle(tmp_path: Path, name: str) -> None:
    bundle = _fake_bundle(tmp_path / "bundle")
    before = (bundle / "digit_detector.onnx").read_bytes()
    with pytest.raises(UsageError, match="inside the edgekit bundle"):
        check({"--jsonl": bundle / name}, [tmp_path / "other_model.tflite"])
    assert (bundle / "digit_detector.onnx").read_bytes() == before


def test_cli_refuses_a_plot_into_a_bundle(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path / "bundle")
    result = run_cli("bench", bundle, "--plot", bundle / "validation.npz.png")
    assert_clean_error(result, "inside the edgekit bundle")
    assert result.returncode == 2
    assert sorted(p.name for p in bundle.iterdir()) == [
        "digit_detector.onnx", "edgekit.json", "validation.npz"]


def test_convert_refuses_an_output_inside_a_bundle(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path / "bundle")
    result = run_cli("convert", MODEL, "-o", bundle / "inner")
    assert_clean_error(result, "inside the edgekit bundle")
    assert not (bundle / "inner").exists()


# --- never a source being read: temporary names unique per process ----------------------

def test_no_output_inside_a_folder_being_read(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    (frames / "sub").mkdir(parents=True)
    (frames / "a.png").write_bytes(b"an image being read")
    for target in (frames / "a.png", frames / "sub" / "plot.png"):
        with pytest.raises(UsageError, match="a folder this command reads"):
            check({"--plot": target}, [frames])
    check({"--plot": tmp_path / "plot.png"}, [frames])  # beside it is fine
    assert (frames / "a.png").read_bytes() == b"an image being read"


def test_temporary_name_is_unique_and_never_the_source(tmp_path: Path) -> None:
    source = tmp_path / ".x.partial.avi"  # what a killed run of an older edgekit left
    source.write_bytes(b"the frames being read")
    pending = PendingFile(tmp_path / "x.avi", "--save")
    other = PendingFile(tmp_path / "y.avi", "--save")
    assert pending.tmp != source and str(os.getpid()) in pending.tmp.name
    assert pending.tmp.suffix == ".avi"  # the writer picks its codec by the extension
    assert pending.tmp.name.split(".")[2] != other.tmp.name.split(".")[2]
    pending.tmp.write_bytes(b"new")
    pending.commit()
    other.discard()
    assert source.read_bytes() == b"the frames being read"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.partial.avi", "x.avi"]


@pytest.mark.slow
def test_run_reads_a_hidden_partial_file_while_saving_beside_it(
        detector_bundle: Path, demo_clip: Path, tmp_path: Path) -> None:
    source = tmp_path / ".x.partial.avi"
    source.write_bytes(demo_clip.read_bytes())
    result = run_cli("run", detector_bundle, "--source", source, "--save", tmp_path / "x.avi",
                     "--capture", "max_frames=10")
    assert result.returncode == 0, result.stderr
    assert source.read_bytes() == demo_clip.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.partial.avi", "x.avi"]


# --- never a path another edgekit process is writing -------------------------------------

def test_a_second_writer_is_refused_naming_the_first(tmp_path: Path) -> None:
    target = tmp_path / "a.avi"
    with Holder(target) as holder:
        with pytest.raises(UsageError, match=f"another edgekit process \\(pid {holder.pid}\\)"):
            check({"--save": target})
        with pytest.raises(UsageError, match=f"pid {holder.pid}"):
            PendingFile(target, "--save")
        result = run_cli("run", tmp_path / "model.tflite", "--source", tmp_path / "clip.avi",
                         "--save", target)
        assert_clean_error(result, f"pid {holder.pid}", "is writing it")
        assert result.returncode == 2
    assert not lock_path(target).exists()  # the holder let go: the path is free again
    pending = PendingFile(target, "--save")
    pending.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    target = tmp_path / "a.jsonl"
    lock_path(target).write_text("999999\n")  # SIGKILL leaves the file, the kernel the lock
    check({"--jsonl": target})
    pending = PendingFile(target, "--jsonl")
    pending.tmp.write_text("{}\n")
    pending.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


@pytest.mark.slow
def test_two_runs_with_the_same_save(detector_bundle: Path, demo_clip: Path,
                                     tmp_path: Path) -> None:
    video = tmp_path / "a.avi"
    first = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "run", detector_bundle, "--source", demo_clip,
         "--capture", "repeat=on", "--save", video], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".a.partial-*.avi")):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        second = run_cli("run", detector_bundle, "--source", demo_clip, "--save", video)
        assert_clean_error(second, f"pid {first.pid}")
        assert second.returncode == 2
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert video.is_file() and video.stat().st_size > 0  # the first run's recording is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi"]


# --- convert: one -o at a time; a bundle replaces only what was there --------------------

def test_second_convert_to_the_same_output_refuses(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Holder(out, "-o") as holder:
        result = run_cli("convert", MODEL, "-o", out)
        assert_clean_error(result, f"pid {holder.pid}", "is writing it")
    assert not out.exists()
    assert not lock_path(out).exists()


def test_publish_keeps_a_folder_made_meanwhile(tmp_path: Path) -> None:
    from edgekit.convert.destination import move_into_place

    out, tmp = tmp_path / "out", tmp_path / ".out.partial-1"
    before = identity(out)  # nothing there when the conversion began
    tmp.mkdir()
    (tmp / "edgekit.json").write_text("{}")
    out.mkdir()  # a person makes the folder and puts work in it while convert runs
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(WriteFailed, match="was put there while this command ran"):
        move_into_place(tmp, out, before)
    assert (out / "mine.txt").read_text() == "keep me"
    assert not (out / "edgekit.json").exists()


def test_publish_replaces_only_the_bundle_force_was_given_for(tmp_path: Path) -> None:
    from edgekit.convert.destination import move_into_place

    out = _fake_bundle(tmp_path / "out")
    before = identity(out)
    (out / "edgekit.json").rename(tmp_path / "moved.json")  # another bundle replaces it
    out.rename(tmp_path / "gone")
    _fake_bundle(out, '{"name": "the other one"}')
    tmp = _fake_bundle(tmp_path / ".out.partial-1", '{"name": "new"}')
    with pytest.raises(WriteFailed, match="replaced or changed"):
        move_into_place(tmp, out, before)
    assert (out / "edgekit.json").read_text() == '{"name": "the other one"}'
    same = identity(out)
    move_into_place(tmp, out, same)  # unchanged since: replaced
    assert (out / "edgekit.json").read_text() == '{"name": "new"}'


@pytest.mark.slow
def test_convert_keeps_a_folder_made_while_it_runs(tmp_path: Path) -> None:
    from edgekit.convert import ConvertOptions, convert

    out = tmp_path / "out"

    def meanwhile(step: str) -> None:
        if step.startswith("exporting") and not out.exists():
            out.mkdir()
            (out / "mine.txt").write_text("keep me")

    with pytest.raises(WriteFailed, match="nothing was written there"):
        convert(MODEL, out, ConvertOptions(formats="tflite-fp32"), progress=meanwhile)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- bounded reads; devices and FIFOs refused up front -----------------------------------

def test_codec_check_reads_a_bounded_prefix(tmp_path: Path) -> None:
    from edgekit.loop.sources import avi_fourcc

    video = tmp_path / "big.avi"
    with open(video, "wb") as f:
        f.write(b"RIFF\0\0\0\0AVI LIST\0\0\0\0hdrlstrh\0\0\0\0vidsXVID")
        f.truncate(256 * 1024 * 1024)  # sparse: 256 MB that cost nothing on disk
    tracemalloc.start()
    try:
        assert avi_fourcc(video) == "XVID"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_device_or_fifo_source_is_refused(tmp_path: Path, kind: str) -> None:
    from edgekit.loop.sources import open_source

    path = Path("/dev/zero") if kind == "device" else tmp_path / "pipe"
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(InvalidData, match="character device|FIFO"):
        open_source(path)


@pytest.mark.slow
def test_run_refuses_dev_zero_as_source(detector_bundle: Path) -> None:
    started = time.monotonic()
    result = run_cli("run", detector_bundle, "--source", "/dev/zero")
    assert_clean_error(result, "--source /dev/zero", "character device")
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("name", ["data.npz", "data.npy"])
def test_a_device_or_fifo_as_data_is_refused(tmp_path: Path, name: str) -> None:
    from edgekit.data.datasets import load_samples
    from edgekit.preprocess import InputSpec

    spec = InputSpec(shape=[1, 32, 32, 1])
    device = tmp_path / name
    device.symlink_to("/dev/zero")
    with pytest.raises(InvalidData, match="character device"):
        load_samples(device, spec, what="calibration")
    fifo = tmp_path / ("pipe_" + name)
    os.mkfifo(fifo)
    with pytest.raises(InvalidData, match="FIFO"):
        load_samples(fifo, spec, what="validation")


def test_an_inventory_that_is_a_device_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli("status", "--inventory", "/dev/zero")
    assert_clean_error(result, "--inventory /dev/zero", "character device")
    assert result.returncode == 2
    assert time.monotonic() - started < 30


# --- reading a bundle: labels, manifest schema and depth, validation set -----------------

@pytest.mark.parametrize("labels", ["/dev/null", "empty.txt", "blank.txt"])
def test_empty_labels_are_refused(tmp_path: Path, labels: str) -> None:
    from edgekit.data.datasets import read_labels

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("\n  \n")
    path = labels if labels.startswith("/") else tmp_path / labels
    with pytest.raises(InvalidData, match="holds no labels|character device"):
        read_labels(path)


def test_convert_refuses_empty_labels_over_the_cards(tmp_path: Path) -> None:
    empty = tmp_path / "labels.txt"
    empty.write_text("")
    result = run_cli("convert", MODEL, "-o", tmp_path / "out", "--labels", empty)
    assert_clean_error(result, "holds no labels")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt"]


def test_a_newer_manifest_schema_says_upgrade(tmp_path: Path) -> None:
    from edgekit.bundle.manifest import read_manifest

    bundle = _fake_bundle(tmp_path / "b", json.dumps({
        "schema": "edgekit.bundle/99", "name": "x", "task": "classification",
        "input": {"shape": [1, 32, 32, 1]}, "artifacts": []}))
    with pytest.raises(InvalidModel, match="edgekit.bundle/99") as caught:
        read_manifest(bundle)
    assert "edgekit.bundle/1" in str(caught.value) and "upgrade" in str(caught.value)


def test_a_deeply_nested_manifest_is_one_clear_line(tmp_path: Path) -> None:
    from edgekit.bundle.manifest import read_manifest

    bundle = _fake_bundle(tmp_path / "b", "[" * 200_000 + "]" * 200_000)
    with pytest.raises(InvalidModel, match="nested too deeply"):
        read_manifest(bundle)
    result = run_cli("inspect", bundle)
    assert_clean_error(result, "nested too deeply")
    assert "unexpected" not in result.stderr


def _validation(folder: Path) -> Path:
    folder.mkdir()
    np.savez_compressed(folder / "validation.npz", x=np.zeros((4, 32, 32, 1), np.float32),
                        reference_0=np.zeros((4, 10), np.float32))
    return folder / "validation.npz"


@pytest.mark.parametrize("damage, says", [
    ("device", "character device"),
    ("truncated", "damaged or truncated"),
    ("text", "not a readable .npz file"),
    ("empty", "it is empty"),
    ("pickled", "Python objects"),
])
def test_a_bad_validation_set_is_one_clear_line(tmp_path: Path, damage: str, says: str) -> None:
    from edgekit.bundle.fidelity import load_validation

    path = _validation(tmp_path / "bundle")
    data = path.read_bytes()
    path.unlink()
    if damage == "device":
        path.symlink_to("/dev/zero")
    elif damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "text":
        path.write_text("x,y\n1,2\n")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, x=np.array([{"a": 1}], dtype=object),
                 reference_0=np.zeros((1, 10), np.float32))
    with pytest.raises(InvalidData, match=says) as caught:
        load_validation(path.parent)
    message = str(caught.value)
    assert "allow_pickle" not in message and "\n" not in message
    assert "convert the model again" in message


@pytest.mark.slow
def test_deploy_refuses_a_validation_set_that_is_a_device(tmp_path: Path,
                                                          lenet_bundle: Path) -> None:
    import shutil

    from edgekit.deploy.plan import ShippedFile, plan_release
    from edgekit.deploy.targets import find_target
    from edgekit.deploy.wheels import WheelInfo

    bundle = Path(shutil.copytree(lenet_bundle, tmp_path / "bundle"))
    (bundle / "validation.npz").unlink()
    (bundle / "validation.npz").symlink_to("/dev/zero")
    wheel = ShippedFile("wheels/edgekit-0.1.0-py3-none-any.whl", tmp_path / "x.whl", "0" * 64, 0)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(InvalidData, match="validation set .* character device"):
        plan_release(bundle, find_target("rpi4-cpu"), wheel,
                     WheelInfo("edgekit", "0.1.0", ">=3.9", ("numpy",)), staging)
