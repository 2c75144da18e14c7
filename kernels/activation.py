"""Leaky ReLU forward and backward (ReLU is the slope-0 case)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import contiguous, on_device


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
    (x,) = contiguous(x)
    y = np.empty_like(x)
    _leaky_relu_cpu(x.reshape(-1), x.dtype.type(slope), y.reshape(-1))
    return y


@on_device
def leaky_relu_grad(x, gy, slope: float):
    """gy where x > 0, slope * gy elsewhere."""
    x, gy = np.ascontiguousarray(x).reshape(x.shape), np.ascontiguousarray(gy).reshape(gy.shape)
    gx = np.empty_like(gy)
    _leaky_relu_grad_cpu(x.reshape(-1), gy.reshape(-1), gy.dtype.type(slope), gx.reshape(-1))
    return gx


@_cuda.kernel("a1 f a1")
def _leaky_relu_cuda(x, slope, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@_cuda.kernel("a1 a1 f a1")
def _leaky_relu_grad_cuda(x, gy, slope, gx):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        gx[i] = gy[i] if x[i] > 0 else gy[i] * slope


@leaky_relu.cuda
def leaky_relu_cuda(x, slope: float):
    (x,) = contiguous(x)
    y = backend.array_module(x).empty_like(x)
    _cuda.for_each(_leaky_relu_cuda, x.size, x.reshape(-1), x.dtype.type(slope), y.reshape(-1))
    return y


@leaky_relu_grad.cuda
def leaky_relu_grad_cuda(x, gy, slope: float):
    gy, x = contiguous(gy, x)
    gx = backend.array_module(gy).empty_like(gy)
    _cuda.for_each(_leaky_relu_grad_cuda, gy.size, x.reshape(-1), gy.reshape(-1),
                   gy.dtype.type(slope), gx.reshape(-1))
    return gx
