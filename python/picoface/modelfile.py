"""Writing .pface model files (layout: cpp/include/picoface/model.h).

Reading and validation are done by the C++ loader only (:func:`summary`), so there is one
parser of the format. Files are written atomically: a temporary file in the same folder is
fsynced and renamed over the target.
"""

import numbers
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from picoface import _core

MAGIC = b"PICOFACE"
VERSION = _core.MODEL_FORMAT_VERSION
HEADER_SIZE = 64
ALIGN = 64
EXTENSION = ".pface"

_DTYPES = {"float32": 0, "int8": 1, "uint8": 2, "int32": 3, "int64": 4}
_INT, _FLOAT, _STRING, _INTS, _FLOATS, _STRINGS = 1, 2, 3, 4, 5, 6


@dataclass
class Tensor:
    """A graph value: a constant (``data`` set) or an activation (``shape`` with -1 for
    dynamic dimensions)."""

    name: str
    data: Optional[np.ndarray] = None
    dtype: str = "float32"
    shape: Sequence[int] = ()
    scales: Optional[Sequence[float]] = None  # int8 quantisation, per tensor or per axis
    zero_points: Optional[Sequence[int]] = None
    axis: int = -1


@dataclass
class Op:
    type: str
    inputs: List[Optional[str]]  # None: optional input left out
    outputs: List[str]
    attrs: Dict[str, object] = field(default_factory=dict)


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def _value(v) -> bytes:
    if isinstance(v, np.ndarray):
        v = v.ravel().tolist()
    if isinstance(v, (bool, np.bool_)) or isinstance(v, numbers.Integral):
        return struct.pack("<Bq", _INT, int(v))
    if isinstance(v, numbers.Real):
        return struct.pack("<Bd", _FLOAT, float(v))
    if isinstance(v, str):
        return struct.pack("<B", _STRING) + _str(v)
    if isinstance(v, (list, tuple)):
        items = list(v)
        if all(isinstance(x, str) for x in items) and items:
            return struct.pack("<BI", _STRINGS, len(items)) + b"".join(_str(x) for x in items)
        if all(isinstance(x, numbers.Integral) for x in items):
            return struct.pack(f"<BI{len(items)}q", _INTS, len(items), *map(int, items))
        if all(isinstance(x, numbers.Real) for x in items):
            return struct.pack(f"<BI{len(items)}d", _FLOATS, len(items), *map(float, items))
    raise ValueError(f"cannot store {v!r} ({type(v).__name__}) as a model attribute")


def _attributes(attrs: Dict[str, object]) -> bytes:
    out = [struct.pack("<I", len(attrs))]
    for k, v in attrs.items():
        out += [_str(k), _value(v)]
    return b"".join(out)


def encode(metadata: Dict[str, object], tensors: List[Tensor], ops: List[Op],
           inputs: List[str], outputs: List[str]) -> bytes:
    """The bytes of a model file. Raises ValueError on inconsistent input."""
    index = {}
    for i, t in enumerate(tensors):
        if t.name in index:
            raise ValueError(f"duplicate tensor name {t.name!r}")
        index[t.name] = i
    data = bytearray()
    graph = [struct.pack("<I", len(tensors))]
    for t in tensors:
        if t.data is not None:
            # Not ascontiguousarray: it turns 0-d arrays (scalar indices) into shape (1,).
            arr = np.asarray(t.data)
            if not arr.flags.c_contiguous:
                arr = arr.copy(order="C")
            dtype = str(arr.dtype)
            if dtype not in _DTYPES:
                raise ValueError(f"tensor {t.name!r}: unsupported dtype {dtype}")
            shape = arr.shape
        else:
            dtype, shape = t.dtype, tuple(t.shape)
        entry = [_str(t.name), struct.pack("<BB", _DTYPES[dtype], len(shape)),
                 struct.pack(f"<{len(shape)}q", *shape)]
        if t.data is not None:
            data += b"\0" * (-len(data) % ALIGN)
            entry.append(struct.pack("<BQQ", 1, len(data), arr.nbytes))
            data += arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        else:
            entry.append(struct.pack("<B", 0))
        if t.scales is not None:
            n = len(t.scales)
            zps = list(t.zero_points) if t.zero_points is not None else [0] * n
            entry.append(struct.pack(f"<BI{n}f{n}ii", 1, n, *t.scales, *zps, t.axis))
        else:
            entry.append(struct.pack("<B", 0))
        graph += entry

    def ids(names, optional=False):
        out = []
        for n in names:
            if n is None and optional:
                out.append(-1)
            elif n in index:
                out.append(index[n])
            else:
                raise ValueError(f"unknown tensor {n!r}")
        return struct.pack(f"<I{len(out)}i", len(out), *out)

    graph += [ids(inputs), ids(outputs), struct.pack("<I", len(ops))]
    for op in ops:
        graph += [_str(op.type), ids(op.inputs, optional=True), ids(op.outputs),
                  _attributes(op.attrs)]
    meta = _attributes(metadata)
    graph_bytes = b"".join(graph)
    meta_off = HEADER_SIZE
    graph_off = meta_off + len(meta)
    data_off = graph_off + len(graph_bytes)
    data_off += -data_off % ALIGN
    body = meta + graph_bytes + b"\0" * (data_off - graph_off - len(graph_bytes)) + bytes(data)
    crc = _core.crc32(body)
    header = MAGIC + struct.pack("<II6Q", VERSION, crc, meta_off, len(meta), graph_off,
                                 len(graph_bytes), data_off, len(data))
    return header + body


def save(path: Union[str, Path], blob: bytes) -> Path:
    """Writes ``blob`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def summary(model) -> dict:
    """Metadata, tensors, ops and parameter count of a model file (path or bytes), as the
    C++ loader validated them. Raises ValueError for an invalid file."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _core.model_summary_from_bytes(bytes(model))
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {str(path)!r}")
    return _core.model_summary_from_file(str(path))
