"""The runtimes' telemetry, kept off: edgekit never sends anything anywhere.

Two of the runtimes edgekit drives report usage unless told not to:

- **OpenVINO's model converter** (``openvino.convert_model``, imported by ``import
  openvino``) reports to Google Analytics through the ``openvino-telemetry`` package unless
  the user opted out (``opt_in_out --opt_out``, which writes ``~/intel/openvino_telemetry``).
  It sends each event from a ``multiprocessing`` child forked from a sender thread: about a
  hundred forks for one LeNet conversion, each from a process full of TensorFlow threads.
  That is what hung Ctrl-C (a thread stuck in fork) and printed tracebacks from the children.
  OpenVINO's converter is written to run without that package: every module of
  ``openvino.tools.ovc`` falls back to its own no-op ``telemetry_stub`` when ``import
  openvino_telemetry`` fails, and ``off()`` makes that import fail in this process (only
  here: the user's consent file and other programs are left alone; running ``opt_in_out
  --opt_out`` for them would change their choice for every OpenVINO tool, and itself sends
  an opt-out event).
- **ONNX Runtime** 1.29+ on Linux queues 1DS events for Microsoft's collector (a device id
  and an event database under ``~/.cache/Microsoft/DeveloperTools``, a ``.ses`` file in the
  temporary folder) as soon as it is imported. ``ORT_DISABLE_TELEMETRY=1``, its documented
  switch, set before the import stops all of it; ``off()`` sets it, and worker processes
  inherit it.

Call ``off()`` before importing either runtime (the backends, the converters and the CLI do).
"""
from __future__ import annotations

import os
import sys

OPENVINO_PACKAGE = "openvino_telemetry"
ONNXRUNTIME_SWITCH = "ORT_DISABLE_TELEMETRY"


def off() -> None:
    """Turn both runtimes' telemetry off in this process and the processes it starts.

    A process that imported ``openvino_telemetry`` or ``onnxruntime`` before (the caller's own
    code) keeps what it has: ``is_off()`` then says False.
    """
    sys.modules.setdefault(OPENVINO_PACKAGE, None)  # type: ignore[arg-type]  # import fails
    os.environ[ONNXRUNTIME_SWITCH] = "1"


def is_off() -> bool:
    """Whether neither runtime can report from this process."""
    return (OPENVINO_PACKAGE in sys.modules and sys.modules[OPENVINO_PACKAGE] is None
            and os.environ.get(ONNXRUNTIME_SWITCH) == "1")
