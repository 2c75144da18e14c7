"""Dropout masks from a counter-based generator: element i's fate is a hash of (key, i).

No generator state lives on the device, so the same key gives the same mask on the CPU and on
the GPU, and a mask can be recomputed instead of stored.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import on_device


def _splitmix_uniform(key, i):
    """splitmix64 of key + i, top 24 bits as a float in [0, 1): exact, the same on every device."""
    z = uint64(key) + uint64(i + 1) * uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    z = z ^ (z >> uint64(31))
    return float(z >> uint64(40)) * (1.0 / 16777216.0)


_uniform = njit(cache=True, inline="always")(_splitmix_uniform)
_uniform_cuda = _cuda.device(_splitmix_uniform)


@njit(parallel=True, cache=True)
def _dropout_cpu(x, p, scale, key, y, mask):
    for i in prange(x.size):
        keep = _uniform(key, i) >= p
        m = scale if keep else 0.0
        mask[i] = m
        y[i] = x[i] * m


@on_device
def dropout(x, p: float, key: int):
    """y = x * mask, mask = 1/(1-p) with probability 1-p else 0; returns (y, mask)."""
    x = np.ascontiguousarray(x).reshape(x.shape)  # ascontiguousarray alone makes 0-d arrays 1-d
    y = np.empty_like(x)
    mask = np.empty_like(x)
    _dropout_cpu(x.reshape(-1), p, x.dtype.type(1.0 / (1.0 - p)), np.uint64(key),
                 y.reshape(-1), mask.reshape(-1))
    return y, mask


@_cuda.kernel("a1 d f u a1 a1")
def _dropout_cuda(x, p, scale, key, y, mask):
    zero = x.dtype.type(0)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        m = scale if _uniform_cuda(key, i) >= p else zero
        mask[i] = m
        y[i] = x[i] * m


@dropout.cuda
def dropout_cuda(x, p: float, key: int):
    xp = backend.array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    mask = xp.empty_like(x)
    _cuda.for_each(_dropout_cuda, x.size, x.reshape(-1), float(p), x.dtype.type(1.0 / (1.0 - p)),
                   np.uint64(key), y.reshape(-1), mask.reshape(-1))
    return y, mask
