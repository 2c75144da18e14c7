"""im2col / col2im: the convolution's data movement; the arithmetic is one BLAS GEMM.

Layout: for input (N, C, H, W) and a kH x kW window, the column matrix has shape
(C * kH * kW, N * oH * oW); row (c, i, j) holds pixel x[n, c, oy*sH - pH + i, ox*sW - pW + j]
for every output position (n, oy, ox), zero where the window hangs over the padding.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._dispatch import on_device


@njit(parallel=True, cache=True)
def _im2col_cpu(x, col, kh, kw, sh, sw, ph, pw, oh, ow):
    n_, c_, h, w = x.shape
    p = oh * ow
    for r in prange(c_ * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        for n in range(n_):
            base = n * p
            for oy in range(oh):
                iy = oy * sh - ph + i
                for ox in range(ow):
                    ix = ox * sw - pw + j
                    v = x.dtype.type(0)
                    if 0 <= iy < h and 0 <= ix < w:
                        v = x[n, c, iy, ix]
                    col[r, base + oy * ow + ox] = v


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
                for oy in range(oh):
                    iy = oy * sh - ph + i
                    if iy < 0 or iy >= h:
                        continue
                    for ox in range(ow):
                        ix = ox * sw - pw + j
                        if 0 <= ix < w:
                            x[n, c, iy, ix] += col[r, n * p + oy * ow + ox]


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
