"""The Edge TPU backend up to the device boundary, and on a Coral where one is attached.

libedgetpu is published only in Coral's apt repository and cannot be installed
here. To test what edgekit does when the library is present but no Edge TPU is
plugged in, a test builds a stand-in ``libedgetpu.so.1`` with the two entry
points edgekit touches (the TFLite external-delegate ABI and libedgetpu's
``edgetpu_list_devices``), behaving as the real library does without a device:
it logs to stderr, lists no device and returns no delegate.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli

from edgekit.backends import backend_class, open_backend
from edgekit.backends.edgetpu import list_edge_tpus, usb_accelerators_present
from edgekit.errors import BackendUnavailable, InvalidModel, UsageError

COMPILED = "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
NO_DEVICE_LIBRARY = r"""
#include <stdio.h>
#include <stddef.h>
struct edgetpu_device { int type; const char *path; };
void *tflite_plugin_create_delegate(char **keys, char **values, size_t n,
                                    void (*report_error)(const char *)) {
  fprintf(stderr, "E :237] Failed to open device: no Edge TPU found\n");
  return NULL;
}
void tflite_plugin_destroy_delegate(void *delegate) {}
struct edgetpu_device *edgetpu_list_devices(size_t *num_devices) {
  *num_devices = 0;
  return NULL;
}
void edgetpu_free_devices(struct edgetpu_device *devices) {}
"""


def _library_installed() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libedgetpu.so.1")
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def no_device_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the stand-in libedgetpu.so.1")
    folder = tmp_path_factory.mktemp("libedgetpu")
    (folder / "edgetpu.c").write_text(NO_DEVICE_LIBRARY)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / "libedgetpu.so.1"),
                    str(folder / "edgetpu.c")], check=True)
    return folder


def test_without_the_library(coral: Path) -> None:
    if _library_installed():
        pytest.skip("libedgetpu is installed here")
    status = backend_class("edgetpu").probe()
    assert not status.usable and "libedgetpu.so.1" in status.reason
    assert "coral.ai" in status.hint and "libedgetpu1-std" in status.hint
    with pytest.raises(BackendUnavailable, match="libedgetpu.so.1"):
        open_backend("edgetpu", coral / COMPILED)


def test_model_and_device_string_checks(coral: Path) -> None:
    with pytest.raises(InvalidModel, match="not compiled for the Edge TPU"):
        open_backend("edgetpu", coral / "mobilenet_v1_0.25_128_quant.tflite")
    with pytest.raises(UsageError, match="bad Edge TPU device 'usb:x'"):
        open_backend("edgetpu", coral / COMPILED, device="usb:x")


def test_no_usb_accelerator_is_seen_in_an_empty_sysfs(tmp_path: Path) -> None:
    device = tmp_path / "1-1"
    device.mkdir()
    (device / "idVendor").write_text("18d1\n")
    (device / "idProduct").write_text("9302\n")
    assert usb_accelerators_present(tmp_path) == 1
    (device / "idProduct").write_text("4ee7\n")
    assert usb_accelerators_present(tmp_path) == 0


def test_library_without_a_device(no_device_library: Path, coral: Path) -> None:
    env = {"LD_LIBRARY_PATH": str(no_device_library)}
    result = run_cli("classify", coral / COMPILED, coral / "cat.bmp", "--infer", "device=usb:0",
                     env=env)
    assert_clean_error(result, "no Edge TPU found for device 'usb:0'", "lsusb")
    assert "Failed to open device" not in result.stderr.split("[runtime said")[0]
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    listed = run_cli("backends", env=env)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("edgetpu"))
    assert "no Edge TPU is attached" in row


def test_list_edge_tpus_through_the_c_api(no_device_library: Path) -> None:
    import ctypes

    assert list_edge_tpus(ctypes.CDLL(str(no_device_library / "libedgetpu.so.1"))) == []


@pytest.mark.edgetpu
def test_classify_on_an_attached_edge_tpu(coral: Path) -> None:
    if not backend_class("edgetpu").probe().usable:
        pytest.skip("needs a Coral Edge TPU and libedgetpu.so.1 (see edgekit backends)")
    result = run_cli("classify", coral / COMPILED, coral / "cat.bmp", "--labels",
                     coral / "imagenet_labels.txt", "--json")
    assert result.returncode == 0, result.stderr
    assert '"backend": "edgetpu"' in result.stdout and "cat" in result.stdout
