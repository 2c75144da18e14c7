"""Fused optimizer updates: one pass over each parameter, in place."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import on_device


@njit(parallel=True, cache=True)
def _adam_cpu(p, g, m, v, lr, b1, b2, eps, wd, bc1, bc2):
    one = p.dtype.type(1)  # `1 - b1` with an integer 1 would be float64 (3x slower here)
    for i in prange(p.size):
        gi = g[i] + wd * p[i]
        mi = b1 * m[i] + (one - b1) * gi
        vi = b2 * v[i] + (one - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= lr * (mi / bc1) / (np.sqrt(vi / bc2) + eps)


@njit(parallel=True, cache=True)
def _rmsprop_cpu(p, g, sq, lr, alpha, eps, wd):
    one = p.dtype.type(1)
    for i in prange(p.size):
        gi = g[i] + wd * p[i]
        s = alpha * sq[i] + (one - alpha) * gi * gi
        sq[i] = s
        p[i] -= lr * gi / (np.sqrt(s) + eps)


@njit(parallel=True, cache=True)
def _sgd_cpu(p, g, buf, lr, momentum, dampening, wd, nesterov, first):
    one = p.dtype.type(1)
    for i in prange(p.size):
        gi = g[i] + wd * p[i]
        if momentum != 0:
            b = gi if first else momentum * buf[i] + (one - dampening) * gi
            buf[i] = b
            gi = gi + momentum * b if nesterov else b
        p[i] -= lr * gi


def _flat(*arrays):
    return tuple(a.reshape(-1) for a in arrays)


@on_device
def adam_update(p, g, m, v, lr, b1, b2, eps, wd, bc1, bc2) -> None:
    """Adam (PyTorch semantics, L2 weight decay) on flat views; bc1/bc2 are bias corrections."""
    t = p.dtype.type
    _adam_cpu(*_flat(p, g, m, v), t(lr), t(b1), t(b2), t(eps), t(wd), t(bc1), t(bc2))


@on_device
def rmsprop_update(p, g, sq, lr, alpha, eps, wd) -> None:
    """RMSprop (PyTorch semantics: eps added outside the square root)."""
    t = p.dtype.type
    _rmsprop_cpu(*_flat(p, g, sq), t(lr), t(alpha), t(eps), t(wd))


@on_device
def sgd_update(p, g, buf, lr, momentum, dampening, wd, nesterov, first) -> None:
    """SGD with optional momentum / Nesterov, as torch.optim.SGD."""
    t = p.dtype.type
    _sgd_cpu(*_flat(p, g, buf), t(lr), t(momentum), t(dampening), t(wd), bool(nesterov),
             bool(first))


@_cuda.kernel("a1 a1 a1 a1 f f f f f f f")
def _adam_cuda(p, g, m, v, lr, b1, b2, eps, wd, bc1, bc2):
    one = p.dtype.type(1)  # float32 constants keep float32 arithmetic in float32
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i]
        mi = b1 * m[i] + (one - b1) * gi
        vi = b2 * v[i] + (one - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= lr * (mi / bc1) / (math.sqrt(vi / bc2) + eps)


@_cuda.kernel("a1 a1 a1 f f f f")
def _rmsprop_cuda(p, g, sq, lr, alpha, eps, wd):
    one = p.dtype.type(1)
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i]
        s = alpha * sq[i] + (one - alpha) * gi * gi
        sq[i] = s
        p[i] -= lr * gi / (math.sqrt(s) + eps)


@_cuda.kernel("a1 a1 a1 f f f f b b")
def _sgd_cuda(p, g, buf, lr, momentum, dampening, wd, nesterov, first):
    one = p.dtype.type(1)
    use_buf = momentum != p.dtype.type(0)
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        gi = g[i] + wd * p[i]
        if use_buf:
            b = gi if first else momentum * buf[i] + (one - dampening) * gi
            buf[i] = b
            gi = gi + momentum * b if nesterov else b
        p[i] -= lr * gi


def _flat_cuda(p, g, *state):
    """Flat views of the parameter and its state (updated in place) and a contiguous gradient."""
    xp = backend.array_module(p)
    g = xp.ascontiguousarray(g, dtype=p.dtype)
    return _flat(p, g, *state)


@adam_update.cuda
def adam_update_cuda(p, g, m, v, lr, b1, b2, eps, wd, bc1, bc2) -> None:
    t = p.dtype.type
    _cuda.for_each(_adam_cuda, p.size, *_flat_cuda(p, g, m, v), t(lr), t(b1), t(b2), t(eps),
                   t(wd), t(bc1), t(bc2))


@rmsprop_update.cuda
def rmsprop_update_cuda(p, g, sq, lr, alpha, eps, wd) -> None:
    t = p.dtype.type
    _cuda.for_each(_rmsprop_cuda, p.size, *_flat_cuda(p, g, sq), t(lr), t(alpha), t(eps), t(wd))


@sgd_update.cuda
def sgd_update_cuda(p, g, buf, lr, momentum, dampening, wd, nesterov, first) -> None:
    t = p.dtype.type
    _cuda.for_each(_sgd_cuda, p.size, *_flat_cuda(p, g, buf), t(lr), t(momentum), t(dampening),
                   t(wd), bool(nesterov), bool(first))
