"""Batch normalisation over (N, C, L) views: per-channel statistics, normalise, and backward.

Variance is computed in two passes (mean first, then squared deviations), which stays accurate
when the mean is large compared with the spread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import on_device


@njit(parallel=True, cache=True)
def _bn_forward_cpu(x, gamma, beta, eps, y, mean, invstd):
    n_, c_, l_ = x.shape
    m = n_ * l_
    for c in prange(c_):
        s = 0.0
        for n in range(n_):
            for k in range(l_):
                s += x[n, c, k]
        mu = s / m
        q = 0.0
        for n in range(n_):
            for k in range(l_):
                d = x[n, c, k] - mu
                q += d * d
        inv = 1.0 / np.sqrt(q / m + eps)
        mean[c] = mu
        invstd[c] = inv
        a = gamma[c] * inv
        b = beta[c] - mu * a
        for n in range(n_):
            for k in range(l_):
                y[n, c, k] = x[n, c, k] * a + b


@njit(parallel=True, cache=True)
def _bn_backward_cpu(x, gy, mean, invstd, gamma, gx, ggamma, gbeta):
    n_, c_, l_ = x.shape
    m = n_ * l_
    for c in prange(c_):
        mu = mean[c]
        inv = invstd[c]
        sg = 0.0
        sgx = 0.0
        for n in range(n_):
            for k in range(l_):
                g = gy[n, c, k]
                sg += g
                sgx += g * (x[n, c, k] - mu)
        sgx *= inv  # sum(gy * xhat)
        gbeta[c] = sg
        ggamma[c] = sgx
        a = gamma[c] * inv
        for n in range(n_):
            for k in range(l_):
                xhat = (x[n, c, k] - mu) * inv
                gx[n, c, k] = a * (gy[n, c, k] - (sg + xhat * sgx) / m)


@on_device
def batch_norm_forward(x, gamma, beta, eps: float):
    """x (N, C, L) -> y, batch mean (C,), 1/sqrt(batch var + eps) (C,)."""
    c = x.shape[1]
    y = np.empty_like(x)
    mean = np.empty(c, x.dtype)
    invstd = np.empty(c, x.dtype)
    _bn_forward_cpu(np.ascontiguousarray(x), gamma, beta, eps, y, mean, invstd)
    return y, mean, invstd


@on_device
def batch_norm_backward(x, gy, mean, invstd, gamma):
    """Gradients of training-mode batchnorm: gx (N, C, L), ggamma (C,), gbeta (C,)."""
    c = x.shape[1]
    gx = np.empty_like(x)
    ggamma = np.empty(c, x.dtype)
    gbeta = np.empty(c, x.dtype)
    _bn_backward_cpu(np.ascontiguousarray(x), np.ascontiguousarray(gy), mean, invstd, gamma,
                     gx, ggamma, gbeta)
    return gx, ggamma, gbeta


_BLOCK = 256  # the most threads a per-channel block may have (its shared-memory buffer)


@_cuda.device
def _block_sum(buf, v):
    """The sum of v over the block's threads, returned to all of them (a tree in shared memory).

    blockDim.x must be a power of two no larger than len(buf).
    """
    t = cuda.threadIdx.x
    buf[t] = v
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            buf[t] += buf[t + half]
        cuda.syncthreads()
        half //= 2
    total = buf[0]
    cuda.syncthreads()  # everyone has read buf[0] before buf is used again
    return total


@_cuda.kernel("a3 a1 a1 f a3 a1 a1")
def _bn_forward_cuda(x, gamma, beta, eps, y, mean, invstd):
    """One block per channel: block sums for the mean, then for the squared deviations."""
    n_, _, l_ = x.shape
    m = n_ * l_
    c = cuda.blockIdx.x
    buf = cuda.shared.array(_BLOCK, x.dtype)
    one = x.dtype.type(1)
    inv_m = one / x.dtype.type(m)
    s = x.dtype.type(0)
    for e in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        s += x[e // l_, c, e % l_]
    mu = _block_sum(buf, s) * inv_m
    q = x.dtype.type(0)
    for e in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        d = x[e // l_, c, e % l_] - mu
        q += d * d
    inv = one / math.sqrt(_block_sum(buf, q) * inv_m + eps)
    if cuda.threadIdx.x == 0:
        mean[c] = mu
        invstd[c] = inv
    a = gamma[c] * inv
    b = beta[c] - mu * a
    for e in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        n = e // l_
        k = e % l_
        y[n, c, k] = x[n, c, k] * a + b


@_cuda.kernel("a3 a3 a1 a1 a1 a3 a1 a1")
def _bn_backward_cuda(x, gy, mean, invstd, gamma, gx, ggamma, gbeta):
    """One block per channel: block sums of gy and gy * (x - mean), then gx."""
    n_, _, l_ = x.shape
    m = n_ * l_
    c = cuda.blockIdx.x
    buf = cuda.shared.array(_BLOCK, x.dtype)
    inv_m = x.dtype.type(1) / x.dtype.type(m)
    mu = mean[c]
    inv = invstd[c]
    sg = x.dtype.type(0)
    sgx = x.dtype.type(0)
    for e in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        n = e // l_
        k = e % l_
        g = gy[n, c, k]
        sg += g
        sgx += g * (x[n, c, k] - mu)
    sg = _block_sum(buf, sg)
    sgx = _block_sum(buf, sgx) * inv  # sum(gy * xhat)
    if cuda.threadIdx.x == 0:
        gbeta[c] = sg
        ggamma[c] = sgx
    a = gamma[c] * inv
    for e in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        n = e // l_
        k = e % l_
        xhat = (x[n, c, k] - mu) * inv
        gx[n, c, k] = a * (gy[n, c, k] - (sg + xhat * sgx) * inv_m)


def _channel_threads() -> int:
    return min(_cuda.THREADS, _BLOCK)


@batch_norm_forward.cuda
def batch_norm_forward_cuda(x, gamma, beta, eps: float):
    xp = backend.array_module(x)
    x = xp.ascontiguousarray(x)
    c = x.shape[1]
    gamma = xp.ascontiguousarray(gamma, dtype=x.dtype)
    beta = xp.ascontiguousarray(beta, dtype=x.dtype)
    y = xp.empty_like(x)
    mean = xp.empty(c, x.dtype)
    invstd = xp.empty(c, x.dtype)
    if c:
        _cuda.launch(_bn_forward_cuda, c, _channel_threads(), x, gamma, beta, x.dtype.type(eps),
                     y, mean, invstd)
    return y, mean, invstd


@batch_norm_backward.cuda
def batch_norm_backward_cuda(x, gy, mean, invstd, gamma):
    xp = backend.array_module(x)
    x = xp.ascontiguousarray(x)
    gy = xp.ascontiguousarray(gy, dtype=x.dtype)
    mean, invstd, gamma = (xp.ascontiguousarray(a, dtype=x.dtype) for a in (mean, invstd, gamma))
    c = x.shape[1]
    gx = xp.empty_like(x)
    ggamma = xp.empty(c, x.dtype)
    gbeta = xp.empty(c, x.dtype)
    if c:
        _cuda.launch(_bn_backward_cuda, c, _channel_threads(), x, gy, mean, invstd, gamma, gx,
                     ggamma, gbeta)
    return gx, ggamma, gbeta
