"""Leaky ReLU forward and backward (ReLU is the slope-0 case)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._dispatch import on_device


@njit(parallel=True, cache=True)
def _leaky_relu_cpu(x, slope, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@njit(parallel=True, cache=True)
def _leaky_relu_grad_cpu(x, gy, slope, gx):
    for i in prange(x.size):
        gx[i] = gy[i] if x[i] > 0 else gy[i] * slope


@on_device
def leaky_relu(x, slope: float):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _leaky_relu_cpu(x.reshape(-1), x.dtype.type(slope), y.reshape(-1))
    return y


@on_device
def leaky_relu_grad(x, gy, slope: float):
    """gy where x > 0, slope * gy elsewhere."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    gx = np.empty_like(gy)
    _leaky_relu_grad_cpu(x.reshape(-1), gy.reshape(-1), gy.dtype.type(slope), gx.reshape(-1))
    return gx
