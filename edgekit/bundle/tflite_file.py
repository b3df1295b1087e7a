"""Read what a .tflite file holds without any TFLite runtime.

A TFLite model is a FlatBuffer (schema ``tensorflow/compiler/mlir/lite/schema/schema.fbs``).
This module walks just the tables edgekit needs (operator codes with their
versions, tensors with dtype, shape and quantisation, subgraph inputs and
outputs), so that ``edgekit inspect``, the Edge TPU checks and the backends can
tell a model's shape, dtypes and quantisation on any machine, a Raspberry Pi
with only tflite-runtime included.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.bundle.tensors import Quantization, TensorInfo
from edgekit.bundle.tflite_schema import BUILTIN_OPS, TENSOR_TYPES
from edgekit.errors import InvalidModel

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
_NUMPY_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "INT32": "int32", "UINT8": "uint8",
    "INT64": "int64", "STRING": "object", "BOOL": "bool", "INT16": "int16", "INT8": "int8",
    "FLOAT64": "float64", "UINT64": "uint64", "UINT32": "uint32", "UINT16": "uint16",
}


@dataclass(frozen=True)
class OpInfo:
    """One operator code of the model: its name, version and how many nodes use it."""

    name: str
    version: int
    count: int
    custom: bool = False


@dataclass(frozen=True)
class TFLiteInfo:
    """What a .tflite file says about itself."""

    path: Path
    size: int
    ops: tuple[OpInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    subgraphs: int
    description: str = ""
    tensor_dtypes: frozenset[str] = field(default_factory=frozenset)

    @property
    def edgetpu_compiled(self) -> bool:
        """True when the Edge TPU compiler has rewritten (part of) the model."""
        return any(op.custom and op.name == EDGETPU_CUSTOM_OP for op in self.ops)

    @property
    def custom_ops(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.ops if op.custom)

    @property
    def full_integer(self) -> bool:
        """No float tensors anywhere: what the Edge TPU compiler requires."""
        return not any(d.startswith("float") for d in self.tensor_dtypes)


class _Table:
    """A FlatBuffer table at ``pos`` in ``buf``: just the accessors the schema above needs."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot >= self.vtable_size:
            return 0
        offset = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + offset if offset else 0

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> int | float:
        at = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at else default

    def _target(self, index: int) -> int:
        at = self._field(index)
        return at + struct.unpack_from("<I", self.buf, at)[0] if at else 0

    def table(self, index: int) -> _Table | None:
        at = self._target(index)
        return _Table(self.buf, at) if at else None

    def string(self, index: int) -> str:
        at = self._target(index)
        if not at:
            return ""
        length = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4:at + 4 + length].decode("utf-8", "replace")

    def vector(self, index: int, fmt: str) -> tuple:
        at = self._target(index)
        if not at:
            return ()
        length = struct.unpack_from("<I", self.buf, at)[0]
        return struct.unpack_from(f"<{length}{fmt}", self.buf, at + 4)

    def tables(self, index: int) -> list[_Table]:
        at = self._target(index)
        if not at:
            return []
        length = struct.unpack_from("<I", self.buf, at)[0]
        starts = (at + 4 + 4 * i for i in range(length))
        return [_Table(self.buf, s + struct.unpack_from("<I", self.buf, s)[0]) for s in starts]


def _op_name(code: _Table) -> tuple[str, bool]:
    # OperatorCode: deprecated_builtin_code (int8), custom_code, version, builtin_code (int32).
    builtin = max(int(code.scalar(0, "b")), int(code.scalar(3, "i")))
    if builtin == BUILTIN_OPS.index("CUSTOM"):
        return code.string(1), True
    return (BUILTIN_OPS[builtin] if builtin < len(BUILTIN_OPS) else f"BUILTIN_{builtin}"), False


def _tensor(t: _Table) -> TensorInfo:
    type_code = int(t.scalar(1, "b"))
    type_name = TENSOR_TYPES[type_code] if type_code < len(TENSOR_TYPES) else f"TYPE_{type_code}"
    shape = tuple(int(d) for d in t.vector(0, "i"))
    signature = t.vector(7, "i")
    quant = None
    q = t.table(4)
    if q is not None:
        scale = tuple(float(s) for s in q.vector(2, "f"))
        if scale:
            quant = Quantization(scale, tuple(int(z) for z in q.vector(3, "q")),
                                 int(q.scalar(6, "i")))
    return TensorInfo(
        name=t.string(3),
        shape=shape,
        dtype=_NUMPY_DTYPES.get(type_name, type_name.lower()),
        quantization=quant,
        dynamic_dims=tuple(i for i, d in enumerate(signature) if d < 0),
    )


def read_tflite(path: str | Path) -> TFLiteInfo:
    """Parse a .tflite file; raise InvalidModel when it is not one or is damaged."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        raise InvalidModel(f"{path}: no such file") from None
    except OSError as exc:
        raise InvalidModel(f"{path}: cannot read it ({exc.strerror})") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise InvalidModel(f"{path}: not a TFLite model (no 'TFL3' FlatBuffer identifier)")
    try:
        return _parse(path, buf)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError):
        raise InvalidModel(
            f"{path}: the TFLite file is damaged or truncated ({len(buf)} bytes); "
            "convert or copy it again"
        ) from None


def _parse(path: Path, buf: bytes) -> TFLiteInfo:
    model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    codes = [(*_op_name(c), int(c.scalar(2, "i", 1))) for c in model.tables(1)]
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ValueError("no subgraph")
    uses: Counter[int] = Counter()
    dtypes: set[str] = set()
    for sub in subgraphs:
        for op in sub.tables(3):
            uses[int(op.scalar(0, "I"))] += 1
    main = subgraphs[0]
    tensors = main.tables(0)
    for t in tensors:
        dtypes.add(_tensor(t).dtype)
    ops = tuple(
        OpInfo(name=name, version=version, count=uses[i], custom=custom)
        for i, (name, custom, version) in enumerate(codes)
    )
    return TFLiteInfo(
        path=path,
        size=len(buf),
        ops=ops,
        inputs=tuple(_tensor(tensors[i]) for i in main.vector(1, "i")),
        outputs=tuple(_tensor(tensors[i]) for i in main.vector(2, "i")),
        subgraphs=len(subgraphs),
        description=model.string(3),
        tensor_dtypes=frozenset(dtypes),
    )


@dataclass(frozen=True)
class Node:
    """One operator of the main subgraph: its op and the names of the tensors it reads/writes."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def read_graph(buf: bytes) -> list[Node]:
    """The main subgraph's operators in order, from a TFLite model's bytes."""
    model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    codes = [_op_name(c)[0] for c in model.tables(1)]
    main = model.tables(2)[0]
    names = [t.string(3) for t in main.tables(0)]
    nodes = []
    for op in main.tables(3):
        # Operator: opcode_index (0), inputs (1), outputs (2); -1 marks an absent optional input.
        inputs = tuple(names[i] for i in op.vector(1, "i") if i >= 0)
        outputs = tuple(names[i] for i in op.vector(2, "i") if i >= 0)
        nodes.append(Node(codes[int(op.scalar(0, "I"))], inputs, outputs))
    return nodes
