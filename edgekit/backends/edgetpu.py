"""The Coral Edge TPU: a TFLite interpreter with the ``libedgetpu`` delegate.

No pycoral: the delegate is loaded directly, with pycoral's device strings
(``usb``, ``usb:N``, ``pci``, ``pci:N``, or empty for the first found), and the
attached Edge TPUs are listed through libedgetpu's own C API
(``edgetpu_list_devices`` in ``edgetpu_c.h``).
"""
from __future__ import annotations

import ctypes
import platform
import re
from pathlib import Path
from typing import Any

from edgekit.backends.base import BackendStatus
from edgekit.backends.tflite import TFLiteBackend
from edgekit.bundle.tflite_file import TFLiteInfo
from edgekit.errors import BackendUnavailable, DeviceNotFound, InvalidModel, UsageError
from edgekit.helpers.quiet import captured_stderr

LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib",
           "Windows": "edgetpu.dll"}.get(platform.system(), "libedgetpu.so.1")
INSTALL_HINT = (
    "install the Edge TPU runtime from Coral's apt repository: "
    "https://coral.ai/docs/accelerator/get-started/ (apt-get install libedgetpu1-std)"
)
NO_DEVICE_HINT = (
    "plug the Coral USB Accelerator into a USB 3 port (`lsusb` shows 1a6e:089a or 18d1:9302), "
    "or check /dev/apex_0 for the PCIe/M.2 card, and that your user may access it "
    "(Coral's udev rules, group plugdev/apex)"
)
_DEVICE_RE = re.compile(r"^(usb|pci)?(:\d+)?$")
# USB ids: before its firmware is loaded the accelerator shows as Global Unichip, after as Google.
_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}


class _EdgeTpuDevice(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("path", ctypes.c_char_p)]


def _open_library() -> ctypes.CDLL:
    try:
        return ctypes.CDLL(LIBRARY)
    except OSError:
        raise BackendUnavailable(f"the Edge TPU runtime ({LIBRARY}) is not installed",
                                 INSTALL_HINT) from None


def list_edge_tpus(library: ctypes.CDLL | None = None) -> list[str]:
    """Attached Edge TPUs as device strings (``usb:0``, ``pci:0``...), from libedgetpu."""
    lib = library or _open_library()
    try:
        list_devices = lib.edgetpu_list_devices
        free_devices = lib.edgetpu_free_devices
    except AttributeError:
        return []
    list_devices.restype = ctypes.POINTER(_EdgeTpuDevice)
    list_devices.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
    count = ctypes.c_size_t(0)
    devices = list_devices(ctypes.byref(count))
    found: dict[str, int] = {"pci": 0, "usb": 0}
    names = []
    for i in range(count.value):
        kind = "pci" if devices[i].type == 0 else "usb"  # EDGETPU_APEX_PCI = 0, _USB = 1
        names.append(f"{kind}:{found[kind]}")
        found[kind] += 1
    if devices:
        free_devices.argtypes = [ctypes.POINTER(_EdgeTpuDevice)]
        free_devices(devices)
    return names


def usb_accelerators_present(sysfs: Path = Path("/sys/bus/usb/devices")) -> int:
    """How many Coral USB Accelerators the kernel sees, whether or not libedgetpu is here."""
    count = 0
    for device in sysfs.glob("*"):
        try:
            ids = ((device / "idVendor").read_text().strip(),
                   (device / "idProduct").read_text().strip())
        except OSError:
            continue
        count += ids in _USB_IDS
    return count


class EdgeTPUBackend(TFLiteBackend):
    """Edge-TPU-compiled ``*_edgetpu.tflite`` on a Coral, through libedgetpu's delegate."""

    name = "edgetpu"
    install_hint = INSTALL_HINT
    # libedgetpu has no asynchronous API and one Edge TPU runs one inference at a time: the
    # default (start runs it at once). The loop still overlaps the TPU with pre- and
    # post-processing on the CPU, each stage on its own thread.
    async_api = ""
    default_device = ""  # the first Edge TPU found, as pycoral does

    def _check_model(self, info: TFLiteInfo) -> None:
        if not _DEVICE_RE.match(self.device):
            raise UsageError(f"bad Edge TPU device {self.device!r}: use usb, usb:N, pci or "
                             "pci:N (or nothing for the first one found)")
        if not info.edgetpu_compiled:
            raise InvalidModel(
                f"{self.model_path.name} is not compiled for the Edge TPU (no edgetpu-custom-op):"
                " compile it with edgetpu_compiler (edgekit convert --formats edgetpu), or run "
                "it with --backend tflite"
            )

    def _delegates(self) -> list[Any]:
        library = _open_library()
        options = {"device": self.device} if self.device else {}
        with captured_stderr() as noise:
            try:
                return [self._runtime.load_delegate(LIBRARY, options)]
            except (ValueError, RuntimeError, OSError):
                pass
        seen = list_edge_tpus(library)
        detail = f" (attached: {', '.join(seen)})" if seen else ""
        which = self.device or "any"
        raise DeviceNotFound(f"no Edge TPU found for device {which!r}{detail}; {NO_DEVICE_HINT}"
                             + (f" [runtime said: {noise[0].strip()}]" if noise and noise[0].strip()
                                else ""))

    @classmethod
    def probe(cls) -> BackendStatus:
        base = TFLiteBackend.probe()
        if not base.usable:
            return BackendStatus(cls.name, False, reason=base.reason, hint=base.hint)
        try:
            library = _open_library()
        except BackendUnavailable as exc:
            usb = usb_accelerators_present()
            reason = f"the Edge TPU runtime ({LIBRARY}) is not installed"
            if usb:
                reason += f" ({usb} Coral USB Accelerator(s) plugged in)"
            return BackendStatus(cls.name, False, runtime=base.runtime, reason=reason,
                                 hint=exc.hint)
        devices = list_edge_tpus(library)
        if not devices:
            return BackendStatus(cls.name, False, runtime=f"{base.runtime} + {LIBRARY}",
                                 reason="no Edge TPU is attached", hint=NO_DEVICE_HINT)
        return BackendStatus(cls.name, True, runtime=f"{base.runtime} + {LIBRARY}",
                             devices=devices)
