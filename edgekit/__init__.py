"""edgekit: take a trained Keras CNN to the edge.

Importing this package is cheap: it never imports TensorFlow, OpenVINO,
ONNX Runtime or a TFLite runtime. Converters and backends import their
runtime when they are used.
"""
from __future__ import annotations

__version__ = "0.1.0"

from edgekit.errors import (  # noqa: E402
    BackendUnavailable,
    ConnectionFailed,
    ConversionError,
    DeployError,
    DeviceNotFound,
    EdgekitError,
    InferenceError,
    InvalidData,
    InvalidModel,
    Skipped,
    SourceLost,
    UsageError,
    WriteFailed,
)

__all__ = [
    "__version__",
    "BackendUnavailable",
    "ConnectionFailed",
    "ConversionError",
    "DeployError",
    "DeviceNotFound",
    "EdgekitError",
    "InferenceError",
    "InvalidData",
    "InvalidModel",
    "Skipped",
    "SourceLost",
    "UsageError",
    "WriteFailed",
]
