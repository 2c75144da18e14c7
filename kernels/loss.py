"""Binary cross-entropy on logits, forward and backward, each one elementwise pass.

loss = max(z, 0) - z t + log(1 + exp(-|z|)) never overflows; its gradient in z is
sigmoid(z) - t, with sigmoid computed from e = exp(-|z|) as 1 / (1 + e) or e / (1 + e): no
overflow, and full relative precision in the negative tail.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import contiguous, on_device


@njit(parallel=True, cache=True)
def _bce_with_logits_cpu(z, t, loss):
    zero = z.dtype.type(0)
    for i in prange(z.size):
        v = z[i]
        loss[i] = max(v, zero) - v * t[i] + math.log1p(math.exp(-abs(v)))


@njit(parallel=True, cache=True)
def _bce_with_logits_grad_cpu(z, t, gl, gz):
    one = z.dtype.type(1)
    for i in prange(z.size):
        e = math.exp(-abs(z[i]))
        s = one / (one + e) if z[i] >= 0 else e / (one + e)
        gz[i] = gl[i] * (s - t[i])


@on_device
def bce_with_logits(z, t):
    """Elementwise BCE of sigmoid(z) against t, from the logits z."""
    z, t = contiguous(z, t)
    loss = np.empty_like(z)
    _bce_with_logits_cpu(z.reshape(-1), t.reshape(-1), loss.reshape(-1))
    return loss


@on_device
def bce_with_logits_grad(z, t, gl):
    """gl * (sigmoid(z) - t): the gradient of bce_with_logits in z, times gl."""
    z, t, gl = contiguous(z, t, gl)
    gz = np.empty_like(z)
    _bce_with_logits_grad_cpu(z.reshape(-1), t.reshape(-1), gl.reshape(-1), gz.reshape(-1))
    return gz


@_cuda.kernel("a1 a1 a1")
def _bce_with_logits_cuda(z, t, loss):
    zero = z.dtype.type(0)
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        v = z[i]
        loss[i] = max(v, zero) - v * t[i] + math.log1p(math.exp(-abs(v)))


@_cuda.kernel("a1 a1 a1 a1")
def _bce_with_logits_grad_cuda(z, t, gl, gz):
    one = z.dtype.type(1)
    for i in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        e = math.exp(-abs(z[i]))
        s = one / (one + e) if z[i] >= 0 else e / (one + e)
        gz[i] = gl[i] * (s - t[i])


@bce_with_logits.cuda
def bce_with_logits_cuda(z, t):
    z, t = contiguous(z, t)
    loss = backend.array_module(z).empty_like(z)
    _cuda.for_each(_bce_with_logits_cuda, z.size, z.reshape(-1), t.reshape(-1), loss.reshape(-1))
    return loss


@bce_with_logits_grad.cuda
def bce_with_logits_grad_cuda(z, t, gl):
    z, t, gl = contiguous(z, t, gl)
    gz = backend.array_module(z).empty_like(z)
    _cuda.for_each(_bce_with_logits_grad_cuda, z.size, z.reshape(-1), t.reshape(-1),
                   gl.reshape(-1), gz.reshape(-1))
    return gz
