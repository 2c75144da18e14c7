"""Read and write IDX files, the format MNIST ships in (gzip-compressed or plain).

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the values in
row-major order. The magic is two zero bytes, a dtype code and the number of dimensions, so
MNIST images (ubyte, 3 dims) read 0x00000803 = 2051 and labels (ubyte, 1 dim) 0x00000801 = 2049.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# dtype code -> big-endian NumPy dtype, as the IDX format defines them.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The whole (decompressed) content; a broken gzip stream is a ValueError naming the file."""
    if not _is_gzip(path):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt gzip stream ({e}); delete the file and fetch it "
                         "again") from e


def _parse_header(data: bytes, path: str | os.PathLike = "<bytes>") -> tuple[np.dtype, tuple]:
    """Check an IDX header and return (big-endian dtype, shape); errors name `path`."""
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX file ({len(data)} bytes, the magic "
                         "number alone takes 4)")
    magic = int.from_bytes(data[:4], "big")
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: bad IDX magic number {magic} (0x{magic:08X}); expected "
                         f"{IMAGES_MAGIC} for images, {LABELS_MAGIC} for labels, or 0x0000TTDD "
                         "with a known dtype byte TT and DD >= 1 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                         f"the file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"{path}: {what}: the header says shape {shape} of {dtype.name}, "
                         f"which needs {expected} bytes ({header} header + "
                         f"{expected - header} data), but the file holds {len(data)}")
    return dtype, shape


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or plain) into a writable native-endian array.

    The header, the counts and the file length are all checked, so a truncated download or a
    file of another kind raises a ValueError naming the file and what was wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape = _parse_header(data, path)
    header = 4 + 4 * len(shape)
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a copy: writable and native-endian


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write `array` as an IDX file, gzip-compressed when the name ends in .gz."""
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}; use one of "
                         f"{sorted(str(d) for d in _CODES)}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got shape {array.shape}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + body)
    return path
