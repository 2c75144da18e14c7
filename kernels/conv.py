"""im2col / col2im: the convolution's data movement; the arithmetic is one BLAS GEMM.

Layout: for input (N, C, H, W) and a kH x kW window, the column matrix has shape
(C * kH * kW, N * oH * oW); row (c, i, j) holds pixel x[n, c, oy*sH - pH + i, ox*sW - pW + j]
for every output position (n, oy, ox), zero where the window hangs over the padding.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._dispatch import on_device


@njit(cache=True, inline="always")
def _inside(j, pw, sw, w, ow):
    """The range [lo, hi) of output columns ox whose input column ox*sw - pw + j is in [0, w)."""
    lo = min(ow, max(0, -((j - pw) // sw)))
    hi = max(lo, min(ow, (w - 1 + pw - j) // sw + 1))
    return lo, hi


@njit(parallel=True, cache=True)
def _im2col_cpu(x, col, kh, kw, sh, sw, ph, pw, oh, ow):
    n_, c_, h, w = x.shape
    p = oh * ow
    zero = x.dtype.type(0)
    for r in prange(c_ * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        lo, hi = _inside(j, pw, sw, w, ow)
        for n in range(n_):
            for oy in range(oh):
                iy = oy * sh - ph + i
                dst = n * p + oy * ow
                if iy < 0 or iy >= h:
                    col[r, dst:dst + ow] = zero
                    continue
                col[r, dst:dst + lo] = zero
                for ox in range(lo, hi):
                    col[r, dst + ox] = x[n, c, iy, ox * sw - pw + j]
                col[r, dst + hi:dst + ow] = zero

@njit(parallel=True, cache=True)
def _col2im_cpu(col, x, kh, kw, sh, sw, ph, pw, oh, ow):
    n_, c_, h, w = x.shape
    p = oh * ow
    for nc in prange(n_ * c_):  # each (n, c) plane is written by one thread only
        n = nc // c_
        c = nc % c_
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                lo, hi = _inside(j, pw, sw, w, ow)
                for oy in range(oh):
                    iy = oy * sh - ph + i
                    if iy < 0 or iy >= h:
                        continue
                    src = n * p + oy * ow
                    for ox in range(lo, hi):
                        x[n, c, iy, ox * sw - pw + j] += col[r, src + ox]


@on_device
def im2col(x, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int, ow: int):
    """(N, C, H, W) -> (C*kh*kw, N*oh*ow)."""
    n, c = x.shape[:2]
    col = np.empty((c * kh * kw, n * oh * ow), x.dtype)
    _im2col_cpu(np.ascontiguousarray(x), col, kh, kw, sh, sw, ph, pw, oh, ow)
    return col


@on_device
def col2im(col, shape, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int, ow: int):
    """The adjoint of im2col: (C*kh*kw, N*oh*ow) -> (N, C, H, W), overlaps summed."""
    x = np.zeros(shape, col.dtype)
    _col2im_cpu(np.ascontiguousarray(col), x, kh, kw, sh, sw, ph, pw, oh, ow)
    return x
