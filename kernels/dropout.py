"""Dropout masks from a counter-based generator: element i's fate is a hash of (key, i).

No generator state lives on the device, so the same key gives the same mask on the CPU and on
the GPU, and a mask can be recomputed instead of stored. Element i is kept when its uniform
u_i = b_i / 2^24 (b_i: the top 24 bits of the hash) is >= p, which the kernels test exactly in
integers, as b_i >= ceil(p * 2^24): no float64 arithmetic on either device.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import contiguous, on_device
from .layout import batch_last, from_last_memory, last_memory


def _splitmix_bits(key, i):
    """The top 24 bits of splitmix64(key + (i + 1) * golden): the same on every device."""
    z = uint64(key) + uint64(i + 1) * uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    z = z ^ (z >> uint64(31))
    return z >> uint64(40)


_bits = njit(cache=True, inline="always")(_splitmix_bits)
_bits_cuda = _cuda.device(_splitmix_bits)


def _threshold(p: float) -> np.uint64:
    """ceil(p * 2^24): b / 2^24 >= p exactly when b >= this, for integer b (p * 2^24 is exact)."""
    return np.uint64(np.ceil(p * 16777216.0))


@njit(parallel=True, cache=True)
def _dropout_cpu(x, thr, scale, key, y, mask):
    zero = x.dtype.type(0)
    for i in prange(x.size):
        m = scale if _bits(key, i) >= thr else zero
        mask[i] = m
        y[i] = x[i] * m


@njit(parallel=True, cache=True)
def _dropout_batch_last_cpu(x, thr, scale, key, y, mask):
    """x, y, mask: the (R, N) memory of batch-last (N, ...) arrays; element (r, n) is element
    n * R + r of the (N, ...) array, and its fate is drawn by that index, as above."""
    r_, n_ = x.shape
    zero = x.dtype.type(0)
    for r in prange(r_):
        for n in range(n_):
            m = scale if _bits(key, n * r_ + r) >= thr else zero
            mask[r, n] = m
            y[r, n] = x[r, n] * m


@on_device
def dropout(x, p: float, key: int):
    """y = x * mask, mask = 1/(1-p) with probability 1-p else 0; returns (y, mask), in x's
    layout when x is batch-last (see layout.py), the mask the same for either layout."""
    if batch_last(x):
        mem = last_memory(x)  # (..., N), a view
        x2 = mem.reshape(-1, x.shape[0])
        y, mask = np.empty_like(x2), np.empty_like(x2)
        _dropout_batch_last_cpu(x2, _threshold(p), x.dtype.type(1.0 / (1.0 - p)), np.uint64(key),
                                y, mask)
        return from_last_memory(y.reshape(mem.shape)), from_last_memory(mask.reshape(mem.shape))
    (x,) = contiguous(x)
    y = np.empty_like(x)
    mask = np.empty_like(x)
    _dropout_cpu(x.reshape(-1), _threshold(p), x.dtype.type(1.0 / (1.0 - p)), np.uint64(key),
                 y.reshape(-1), mask.reshape(-1))
    return y, mask


@_cuda.kernel("a1 u f u a1 a1")
def _dropout_cuda(x, thr, scale, key, y, mask):
    zero = x.dtype.type(0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        m = scale if _bits_cuda(key, i) >= thr else zero
        mask[i] = m
        y[i] = x[i] * m


@_cuda.kernel("a2 u f u a2 a2")
def _dropout_batch_last_cuda(x, thr, scale, key, y, mask):
    """The (R, N) memory of batch-last arrays, as the CPU twin: element (r, n) is n * R + r."""
    r_, n_ = x.shape
    zero = x.dtype.type(0)
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        r = e // n_
        n = e - r * n_
        m = scale if _bits_cuda(key, n * r_ + r) >= thr else zero
        mask[r, n] = m
        y[r, n] = x[r, n] * m


@dropout.cuda
def dropout_cuda(x, p: float, key: int):
    xp = backend.array_module(x)
    if batch_last(x):
        mem = last_memory(x)
        x2 = mem.reshape(-1, x.shape[0])
        y, mask = xp.empty_like(x2), xp.empty_like(x2)
        _cuda.for_each(_dropout_batch_last_cuda, x2.size, x2, _threshold(p),
                       x.dtype.type(1.0 / (1.0 - p)), np.uint64(key), y, mask)
        return from_last_memory(y.reshape(mem.shape)), from_last_memory(mask.reshape(mem.shape))
    (x,) = contiguous(x)
    y = xp.empty_like(x)
    mask = xp.empty_like(x)
    _cuda.for_each(_dropout_cuda, x.size, x.reshape(-1), _threshold(p),
                   x.dtype.type(1.0 / (1.0 - p)), np.uint64(key), y.reshape(-1), mask.reshape(-1))
    return y, mask
