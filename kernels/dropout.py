"""Dropout masks from a counter-based generator: element i's fate is a hash of (key, i).

No generator state lives on the device, so the same key gives the same mask on the CPU and on
the GPU, and a mask can be recomputed instead of stored.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from ._dispatch import on_device


@njit(cache=True, inline="always")
def _uniform(key, i):
    """splitmix64 of key + i, top 24 bits as a float in [0, 1)."""
    z = uint64(key) + uint64(i + 1) * uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    z = z ^ (z >> uint64(31))
    return float(z >> uint64(40)) * (1.0 / 16777216.0)


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
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    mask = np.empty_like(x)
    _dropout_cpu(x.reshape(-1), p, x.dtype.type(1.0 / (1.0 - p)), np.uint64(key),
                 y.reshape(-1), mask.reshape(-1))
    return y, mask
