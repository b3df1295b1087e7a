"""Stand-in for Picamera2's ``IMX500`` device (the Raspberry Pi AI Camera), with no sensor.

The same constructor (``IMX500(network_file, camera_id="")``, which loads the network and must
come before ``Picamera2()``), the same calls edgekit makes (``get_outputs(metadata,
add_batch)``, ``get_output_shapes``, ``get_input_size``, ``get_kpi_info``, ``camera_num``), the
same metadata layout (``CnnOutputTensor``: the tensors' floats one after another, each in
column-major order; ``CnnOutputTensorInfo``: libcamera's packed struct of the network name,
the tensor count and each tensor's dimensions; ``CnnKpiInfo``: the DNN and DSP times in
microseconds as two uint32) and the same failures (RuntimeError for no IMX500 among the cameras,
a missing network file, a firmware the driver refuses). Set by environment variables, beside
the Picamera2 stand-in's own:

- EDGEKIT_STANDIN_CAMERAS          must name "imx500" for the sensor to be found
- EDGEKIT_STANDIN_IMX500_OUTPUTS   an .npz of the network's outputs per frame: arrays "0",
                                   "1", ... of shape (frames, *tensor shape), used in turn; unset,
                                   the network never starts (no tensors in any metadata)
- EDGEKIT_STANDIN_IMX500_WARMUP    frames without tensors while the network loads (default 2)
- EDGEKIT_STANDIN_IMX500_DNN_US    the DNN time each frame reports (default 6500)
- EDGEKIT_STANDIN_IMX500_FAIL      "firmware": the driver refuses the network file
"""
from __future__ import annotations

import os
import struct

import numpy as np

NETWORK_NAME_LEN = 64
MAX_NUM_TENSORS = 8
MAX_NUM_DIMENSIONS = 8
_INFO = struct.Struct(f"<{NETWORK_NAME_LEN}sI" + "II8H" * MAX_NUM_TENSORS)

loaded: dict = {}  # the network in the sensor: what the Picamera2 stand-in's metadata carries


def _cameras() -> list[str]:
    return [m for m in os.environ.get("EDGEKIT_STANDIN_CAMERAS", "imx708").split(",") if m]


def tensor_info(name: str, shapes: list[tuple[int, ...]]) -> bytes:
    """libcamera's CnnOutputTensorInfo for tensors of ``shapes``."""
    fields: list = [name.encode()[:NETWORK_NAME_LEN], len(shapes)]
    for i in range(MAX_NUM_TENSORS):
        shape = list(shapes[i]) if i < len(shapes) else []
        fields += [int(np.prod(shape)) if shape else 0, len(shape),
                   *(shape + [0] * (MAX_NUM_DIMENSIONS - len(shape)))]
    return _INFO.pack(*fields)


def frame_metadata(index: int) -> dict:
    """The Cnn* metadata of frame ``index`` (none while the network loads, or never starts)."""
    outputs = loaded.get("outputs")
    if not outputs or index < int(os.environ.get("EDGEKIT_STANDIN_IMX500_WARMUP", "2")):
        return {}
    tensors = [o[index % len(o)] for o in outputs]
    flat = np.concatenate([t.astype(np.float32).flatten(order="F") for t in tensors])
    dnn_us = int(os.environ.get("EDGEKIT_STANDIN_IMX500_DNN_US", "6500"))
    return {"CnnOutputTensor": flat.tolist(),
            "CnnOutputTensorInfo": tensor_info(loaded["name"], [t.shape for t in tensors]),
            "CnnKpiInfo": struct.pack("II", dnn_us, 1200)}


class IMX500:
    def __init__(self, network_file: str, camera_id: str = "") -> None:
        if "imx500" not in _cameras():
            raise RuntimeError("IMX500: Requested camera dev-node not found")
        if not os.path.isfile(network_file):
            raise RuntimeError(f"Firmware file {network_file} does not exist.")
        if os.environ.get("EDGEKIT_STANDIN_IMX500_FAIL") == "firmware":
            raise RuntimeError(f"IMX500: Unable to set network firmware {network_file}: "
                               "[Errno 5] Input/output error")
        self.network_file = network_file
        path = os.environ.get("EDGEKIT_STANDIN_IMX500_OUTPUTS")
        outputs = []
        if path:
            with np.load(path) as data:
                outputs = [data[k] for k in sorted(data.files, key=int)]
        loaded.clear()
        loaded.update(name=os.path.basename(network_file), outputs=outputs)
        self.config = {"network_file": network_file,
                       "input_tensor_size": tuple(int(v) for v in os.environ.get(
                           "EDGEKIT_STANDIN_IMX500_INPUT", "128,128").split(","))}

    @property
    def camera_num(self) -> int:
        return _cameras().index("imx500")

    def get_input_size(self) -> tuple:
        return self.config["input_tensor_size"]

    def get_output_shapes(self, metadata: dict) -> list:
        info = metadata.get("CnnOutputTensorInfo")
        if not info:
            return []
        fields = _INFO.unpack(bytes(info))
        count = fields[1]
        shapes = []
        for i in range(count):
            base = 2 + i * (2 + MAX_NUM_DIMENSIONS)
            dims = fields[base + 1]
            shapes.append(list(fields[base + 2:base + 2 + dims]))
        return shapes

    def get_outputs(self, metadata: dict, add_batch: bool = False):
        tensor = metadata.get("CnnOutputTensor")
        if not tensor:
            return None
        flat = np.fromiter(tensor, dtype=np.float32)
        outputs, offset = [], 0
        for shape in self.get_output_shapes(metadata):
            size = int(np.prod(shape))
            out = flat[offset:offset + size].reshape(shape, order="F")
            outputs.append(np.expand_dims(out, 0) if add_batch else out)
            offset += size
        return outputs

    @staticmethod
    def get_kpi_info(metadata: dict):
        kpi = metadata.get("CnnKpiInfo")
        if kpi is None:
            return None
        dnn, dsp = struct.unpack("II", bytes(kpi))
        return dnn / 1000, dsp / 1000
