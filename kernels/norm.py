"""Batch normalisation over (N, C, L) views: per-channel statistics, normalise, and backward.

Variance is computed in two passes (mean first, then squared deviations), which stays accurate
when the mean is large compared with the spread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

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
