"""The safetensors format, written by hand: an 8-byte little-endian header length, a JSON header
({name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}), then the raw little-endian
bytes of every tensor, back to back. Twenty lines, so exporting needs no extra package."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..atomic import atomic_open

DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16",
          np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
          np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def save_file(tensors: dict[str, np.ndarray], path: str | Path,
              metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` (name -> array) to `path` as safetensors, as safetensors.numpy.save_file
    does; `metadata` values must be strings (the format's rule)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, a in tensors.items():
        a = np.asarray(a)
        native = a.dtype.newbyteorder("=")
        if native not in DTYPES:
            raise ValueError(f"safetensors: {name!r} has dtype {a.dtype}, which the format "
                             f"does not name; use one of {sorted(str(d) for d in DTYPES)}")
        blob = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[native], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)             # the data starts 8-byte aligned
    with atomic_open(path) as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)
    return Path(path)
