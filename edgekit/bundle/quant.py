"""Quantisation at the model boundary, done once for every backend.

Callers hand float tensors in the model's pre-processed space; an int8/uint8
artifact gets them quantised with its own scale and zero point, and its
outputs come back dequantised, so every backend returns comparable numbers.
"""
from __future__ import annotations

import numpy as np

from edgekit.bundle.tensors import Quantization, TensorInfo
from edgekit.errors import InferenceError


def _broadcast(values: tuple, q: Quantization, ndim: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if q.per_channel:
        shape = [1] * ndim
        shape[q.axis] = -1
        arr = arr.reshape(shape)
    return arr


def quantize(x: np.ndarray, spec: TensorInfo) -> np.ndarray:
    """Float input -> the tensor's integer dtype with its scale and zero point."""
    q = spec.quantization
    if q is None:
        return x
    info = np.iinfo(spec.dtype)
    if not q.per_channel:  # the common case: scalars keep float32 input in float32
        scaled = x * np.float32(1.0 / q.scale[0]) + np.float32(q.zero_point[0])
    else:
        scaled = x / _broadcast(q.scale, q, x.ndim) + _broadcast(q.zero_point, q, x.ndim)
    return np.clip(np.rint(scaled), info.min, info.max).astype(spec.dtype)


def dequantize(y: np.ndarray, spec: TensorInfo) -> np.ndarray:
    """Integer output -> float32 with the tensor's scale and zero point."""
    q = spec.quantization
    if q is None or not np.issubdtype(y.dtype, np.integer):
        return y.astype(np.float32, copy=False)
    scale = _broadcast(q.scale, q, y.ndim)
    zero = _broadcast(q.zero_point, q, y.ndim)
    return ((y.astype(np.float64) - zero) * scale).astype(np.float32)


def prepare_input(x: np.ndarray, spec: TensorInfo, index: int = 0) -> np.ndarray:
    """Check shape and dtype of one input and bring it to what the artifact takes.

    Accepts the artifact's own dtype as is, or float data in the pre-processed
    space (quantised here when the artifact is integer). Anything else is an
    InferenceError that names what the model expects.
    """
    x = np.asarray(x)
    want = f"{tuple(spec.shape)} {spec.dtype}"
    if tuple(x.shape) != tuple(spec.shape):
        raise InferenceError(
            f"input {index} ({spec.name or 'unnamed'}) has shape {tuple(x.shape)}; "
            f"the model takes {want}: resize or reshape the input"
        )
    if x.dtype == np.dtype(spec.dtype):
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if spec.quantization is not None:
            return quantize(x, spec)
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            return np.ascontiguousarray(x, dtype=spec.dtype)
        if np.issubdtype(np.dtype(spec.dtype), np.integer):  # raw integer input, no scale
            info = np.iinfo(spec.dtype)
            return np.clip(np.round(x), info.min, info.max).astype(spec.dtype)
    raise InferenceError(
        f"input {index} ({spec.name or 'unnamed'}) is {x.dtype}; the model takes {want}"
        + (" or float data to quantise" if spec.quantization is not None else "")
        + ": pre-process the image into the model's input space first"
    )
