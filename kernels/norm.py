"""Batch normalisation over (N, C, L) views: per-channel statistics, normalise, and backward.

Variance is computed in two passes (mean first, then squared deviations), which stays accurate
when the mean is large compared with the spread. The CPU sums accumulate in float64 and may be
reassociated (fastmath "reassoc"), so that they vectorise: 3-5x faster, the same to float64
rounding. A convolution's batch-last output arrives as (1, C, H*W*N): one contiguous row per
channel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import on_device
from .activation import leaky_relu_cuda, leaky_relu_grad_cuda

_COLS = 512  # channels a CPU work item takes when L == 1 (a (N, C) batch: rows of C floats)


@njit(cache=True, inline="always")
def _blocks(n_, c_, l_):
    """Channels per work item: a block of _COLS when each (n, c) is one value, so the loops run
    along the contiguous rows of C; otherwise whole channels (runs of L contiguous values),
    several to an item when channels are short, so that an item has some 8192 values."""
    cb = _COLS if l_ == 1 else max(1, 8192 // (n_ * l_))
    return cb, (c_ + cb - 1) // cb


@njit(cache=True, inline="always")
def _row(a, n, c0, w):
    """a[n, c0:c0+w, 0] of a C-contiguous (N, C, 1) array, typed as contiguous (so that the
    loops over it vectorise; the 3-D slice itself would be typed as strided)."""
    return a.reshape(a.shape[0], a.shape[1])[n, c0:c0 + w]


@njit(cache=True, inline="always")
def _leaky(y, slope):
    """leaky_relu of y, a value as stored (rounded to the array's dtype): the same arithmetic as
    the activation's own kernel."""
    return y if y > 0 else y * slope


@njit(cache=True, inline="always")
def _act(g, z, slope):
    """g where z > 0, slope * g elsewhere: the leaky ReLU's gradient read off its output z
    (z > 0 exactly where its input is, for a slope >= 0)."""
    return g if z > 0 else g * slope


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _sums(x, gy, c0, w, mu, s, t, z, slope):
    """For channels c0 .. c0+w-1 (index c - c0), in float64:
    gy None: s = sum(x), or with mu given: t = sum((x - mu)^2);
    gy given: s = sum(g), t = sum(g * (x - mu)), g = gy, or with z (the output of a leaky
    ReLU after the batchnorm) given, the gradient gy makes at the ReLU's input."""
    n_, _, l_ = x.shape
    if l_ == 1:
        for n in range(n_):
            xr = _row(x, n, c0, w)
            if gy is None:
                if mu is None:
                    for c in range(w):
                        s[c] += xr[c]
                else:
                    for c in range(w):
                        d = xr[c] - mu[c]
                        t[c] += d * d
            else:
                gr = _row(gy, n, c0, w)
                if z is None:
                    for c in range(w):
                        s[c] += gr[c]
                        t[c] += gr[c] * (xr[c] - mu[c])
                else:
                    zr = _row(z, n, c0, w)
                    for c in range(w):
                        g = _act(gr[c], zr[c], slope)
                        s[c] += g
                        t[c] += g * (xr[c] - mu[c])
        return
    for c in range(w):  # scalar accumulators, so that the loops vectorise
        a0 = 0.0
        a1 = 0.0
        mc = 0.0 if mu is None else mu[c]
        for n in range(n_):
            xr = x[n, c0 + c]
            if gy is None:
                if mu is None:
                    for k in range(l_):
                        a0 += xr[k]
                else:
                    for k in range(l_):
                        d = xr[k] - mc
                        a1 += d * d
            else:
                gr = gy[n, c0 + c]
                if z is None:
                    for k in range(l_):
                        a0 += gr[k]
                        a1 += gr[k] * (xr[k] - mc)
                else:
                    zr = z[n, c0 + c]
                    for k in range(l_):
                        g = _act(gr[k], zr[k], slope)
                        a0 += g
                        a1 += g * (xr[k] - mc)
        s[c] += a0
        t[c] += a1


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _bn_forward_cpu(x, gamma, beta, eps, slope, y, mean, invstd):
    """y = leaky_relu(batchnorm(x), slope); slope 1 is the batchnorm alone (v * 1 == v)."""
    n_, c_, l_ = x.shape
    m = n_ * l_
    cb, nb = _blocks(n_, c_, l_)
    for blk in prange(nb):
        c0 = blk * cb
        w = min(cb, c_ - c0)
        s = np.zeros(w)
        q = np.zeros(w)
        _sums(x, None, c0, w, None, s, q, None, slope)
        s /= m
        _sums(x, None, c0, w, s, s, q, None, slope)
        a = np.empty(w)
        b = np.empty(w)
        for c in range(w):
            inv = 1.0 / np.sqrt(q[c] / m + eps)
            mean[c0 + c] = s[c]
            invstd[c0 + c] = inv
            a[c] = gamma[c0 + c] * inv
            b[c] = beta[c0 + c] - s[c] * a[c]
        for n in range(n_):
            if l_ == 1:  # along the row of C
                xr = _row(x, n, c0, w)
                yr = _row(y, n, c0, w)
                for c in range(w):
                    yr[c] = xr[c] * a[c] + b[c]
                    yr[c] = _leaky(yr[c], slope)
                continue
            for c in range(w):
                xr = x[n, c0 + c]
                yr = y[n, c0 + c]
                ac = a[c]
                bc = b[c]
                for k in range(l_):
                    yr[k] = xr[k] * ac + bc
                    yr[k] = _leaky(yr[k], slope)


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _bn_backward_cpu(x, gy, z, slope, mean, invstd, gamma, gx, ggamma, gbeta):
    """The gradients of batchnorm at gy; with z, of leaky_relu(batchnorm(x), slope) = z at
    gy (the gradient at the ReLU's output)."""
    n_, c_, l_ = x.shape
    m = n_ * l_
    cb, nb = _blocks(n_, c_, l_)
    for blk in prange(nb):
        c0 = blk * cb
        w = min(cb, c_ - c0)
        mu = np.empty(w)
        for c in range(w):
            mu[c] = mean[c0 + c]
        sg = np.zeros(w)
        sgx = np.zeros(w)
        _sums(x, gy, c0, w, mu, sg, sgx, z, slope)
        # gx = a * (gy - (sg + xhat * sgx') / m), sgx' = sgx * inv = sum(gy * xhat)
        a = np.empty(w)
        k1 = np.empty(w)
        k0 = np.empty(w)
        for c in range(w):
            inv = invstd[c0 + c]
            gbeta[c0 + c] = sg[c]
            ggamma[c0 + c] = sgx[c] * inv
            a[c] = gamma[c0 + c] * inv
            k1[c] = sgx[c] * inv * inv / m
            k0[c] = sg[c] / m
        for n in range(n_):
            if l_ == 1:
                xr = _row(x, n, c0, w)
                gr = _row(gy, n, c0, w)
                out = _row(gx, n, c0, w)
                if z is None:
                    for c in range(w):
                        out[c] = a[c] * (gr[c] - (k0[c] + (xr[c] - mu[c]) * k1[c]))
                else:
                    zr = _row(z, n, c0, w)
                    for c in range(w):
                        out[c] = a[c] * (_act(gr[c], zr[c], slope)
                                         - (k0[c] + (xr[c] - mu[c]) * k1[c]))
                continue
            for c in range(w):
                xr = x[n, c0 + c]
                gr = gy[n, c0 + c]
                out = gx[n, c0 + c]
                ac = a[c]
                mc = mu[c]  # not `m`: that name holds n * L outside this parallel loop
                kc0 = k0[c]
                kc1 = k1[c]
                if z is None:
                    for k in range(l_):
                        out[k] = ac * (gr[k] - (kc0 + (xr[k] - mc) * kc1))
                else:
                    zr = z[n, c0 + c]
                    for k in range(l_):
                        out[k] = ac * (_act(gr[k], zr[k], slope) - (kc0 + (xr[k] - mc) * kc1))


@on_device
def batch_norm_forward(x, gamma, beta, eps: float, slope: float | None = None):
    """x (N, C, L) -> y, batch mean (C,), 1/sqrt(batch var + eps) (C,); with `slope`, y is
    leaky_relu(batchnorm(x), slope) (slope >= 0; the CPU's fused kernel)."""
    c = x.shape[1]
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    mean = np.empty(c, x.dtype)
    invstd = np.empty(c, x.dtype)
    _bn_forward_cpu(x, gamma, beta, eps, x.dtype.type(1 if slope is None else slope), y, mean,
                    invstd)
    return y, mean, invstd


@on_device
def batch_norm_backward(x, gy, mean, invstd, gamma, z=None, slope: float = 1.0):
    """Gradients of training-mode batchnorm: gx (N, C, L), ggamma (C,), gbeta (C,); with z,
    of y = leaky_relu(batchnorm(x), slope), z its value (gy the gradient at it)."""
    c = x.shape[1]
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    if z is not None:
        z = np.ascontiguousarray(z)
    gx = np.empty_like(x)
    ggamma = np.empty(c, x.dtype)
    gbeta = np.empty(c, x.dtype)
    _bn_backward_cpu(x, gy, z, x.dtype.type(slope), mean, invstd, gamma, gx, ggamma, gbeta)
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
def batch_norm_forward_cuda(x, gamma, beta, eps: float, slope: float | None = None):
    """As the CPU's; with `slope`, the leaky ReLU runs as a second kernel."""
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
    if slope is not None:
        y = leaky_relu_cuda(y, slope)
    return y, mean, invstd


@batch_norm_backward.cuda
def batch_norm_backward_cuda(x, gy, mean, invstd, gamma, z=None, slope: float = 1.0):
    """As the CPU's; with z, the leaky ReLU's gradient runs as a kernel of its own first."""
    xp = backend.array_module(x)
    x = xp.ascontiguousarray(x)
    gy = xp.ascontiguousarray(gy, dtype=x.dtype)
    if z is not None:
        gy = leaky_relu_grad_cuda(xp.ascontiguousarray(z, dtype=x.dtype), gy, slope)
    mean, invstd, gamma = (xp.ascontiguousarray(a, dtype=x.dtype) for a in (mean, invstd, gamma))
    c = x.shape[1]
    gx = xp.empty_like(x)
    ggamma = xp.empty(c, x.dtype)
    gbeta = xp.empty(c, x.dtype)
    if c:
        _cuda.launch(_bn_backward_cuda, c, _channel_threads(), x, gy, mean, invstd, gamma, gx,
                     ggamma, gbeta)
    return gx, ggamma, gbeta
