"""im2col / col2im: the convolution's data movement; the arithmetic is one BLAS GEMM.

Layout: for input (N, C, H, W) and a kH x kW window, the column matrix has shape
(C * kH * kW, N * oH * oW); row (c, i, j) holds pixel x[n, c, oy*sH - pH + i, ox*sW - pW + j]
for every output position (n, oy, ox), zero where the window hangs over the padding.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minigan import backend

from . import _cuda
from ._cuda import cuda
from ._dispatch import on_device


@njit(cache=True, inline="always")
def _inside(j, pw, sw, w, ow):
    """The range [lo, hi) of output columns ox whose input column ox*sw - pw + j is in [0, w)."""
    lo = min(ow, max(0, -((j - pw) // sw)))
    hi = max(lo, min(ow, (w - 1 + pw - j) // sw + 1))
    return lo, hi


@njit(parallel=True, cache=True)
def _im2col_cpu(x, col, kh, kw, sh, sw, ph, pw, oh, ow):
    """One work item per (c, n) plane, c-major, so a thread's consecutive items write
    consecutive stretches of the same column rows; every entry is written once (no prior fill)."""
    n_, c_, h, w = x.shape
    p = oh * ow
    zero = x.dtype.type(0)
    for item in prange(c_ * n_):
        c = item // n_
        n = item - c * n_
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                lo, hi = _inside(j, pw, sw, w, ow)
                for oy in range(oh):
                    iy = oy * sh - ph + i
                    d = n * p + oy * ow
                    if iy < 0 or iy >= h:
                        for ox in range(ow):
                            col[r, d + ox] = zero
                        continue
                    for ox in range(lo):
                        col[r, d + ox] = zero
                    for ox in range(lo, hi):
                        col[r, d + ox] = x[n, c, iy, ox * sw - pw + j]
                    for ox in range(hi, ow):
                        col[r, d + ox] = zero


@njit(parallel=True, cache=True)
def _col2im_cpu(col, x, kh, kw, sh, sw, ph, pw, oh, ow):
    """One work item per (c, n) image plane, which only that item writes (zeroed here first,
    so x may come from np.empty); c-major so a thread reads consecutive stretches of col."""
    n_, c_, h, w = x.shape
    p = oh * ow
    zero = x.dtype.type(0)
    for item in prange(c_ * n_):
        c = item // n_
        n = item - c * n_
        for iy in range(h):
            for ix in range(w):
                x[n, c, iy, ix] = zero
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
    x = np.empty(shape, col.dtype)  # every plane is zeroed by its own work item
    _col2im_cpu(np.ascontiguousarray(col), x, kh, kw, sh, sw, ph, pw, oh, ow)
    return x


@_cuda.kernel("a4 a2 i i i i i i i i")
def _im2col_cuda(x, col, kh, kw, sh, sw, ph, pw, oh, ow):
    """One thread per column-matrix entry; consecutive threads write consecutive columns."""
    n_, _, h, w = x.shape
    p = oh * ow
    q_ = n_ * p
    zero = x.dtype.type(0)
    for e in range(cuda.grid(1), col.size, cuda.gridsize(1)):
        r = e // q_
        q = e - r * q_
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        n = q // p
        oy = (q // ow) % oh
        ox = q % ow
        iy = oy * sh - ph + i
        ix = ox * sw - pw + j
        v = zero
        if 0 <= iy < h and 0 <= ix < w:
            v = x[n, c, iy, ix]
        col[r, q] = v


@_cuda.kernel("a2 a4 i i i i i i i i")
def _col2im_cuda(col, x, kh, kw, sh, sw, ph, pw, oh, ow):
    """One thread per image pixel, gathering the column entries that land on it (no atomics).

    Pixel (iy, ix) receives window tap (i, j) of output (oy, ox) when oy*sh - ph + i = iy;
    taps are summed in the CPU twin's order, (i, j) row by row.
    """
    _, c_, h, w = x.shape
    p = oh * ow
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        ix = e % w
        iy = (e // w) % h
        c = (e // (w * h)) % c_
        n = e // (w * h * c_)
        s = x.dtype.type(0)
        for i in range(kh):
            ty = iy + ph - i
            if ty < 0 or ty % sh != 0 or ty // sh >= oh:
                continue
            oy = ty // sh
            for j in range(kw):
                tx = ix + pw - j
                if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                    continue
                s += col[(c * kh + i) * kw + j, n * p + oy * ow + tx // sw]
        x[n, c, iy, ix] = s


def _ints(*values):
    return tuple(int(v) for v in values)


@im2col.cuda
def im2col_cuda(x, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int, ow: int):
    xp = backend.array_module(x)
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    col = xp.empty((c * kh * kw, n * oh * ow), x.dtype)
    _cuda.for_each(_im2col_cuda, col.size, x, col, *_ints(kh, kw, sh, sw, ph, pw, oh, ow))
    return col


@col2im.cuda
def col2im_cuda(col, shape, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int,
                ow: int):
    xp = backend.array_module(col)
    col = xp.ascontiguousarray(col)
    x = xp.empty(shape, col.dtype)  # every pixel is written by the gather
    _cuda.for_each(_col2im_cuda, x.size, col, x, *_ints(kh, kw, sh, sw, ph, pw, oh, ow))
    return x
