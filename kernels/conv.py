"""im2col / col2im: the convolution's data movement; the arithmetic is one BLAS GEMM.

Layout: images are channel-major with the batch innermost, (C, H, W, N); for a kH x kW window
the column matrix has shape (C * kH * kW, oH * oW * N): row (c, i, j), column (oy, ox, n) holds
pixel x[c, oy*sH - pH + i, ox*sW - pW + j, n], zero where the window hangs over the padding.
With the batch innermost, every copy and every sum below runs over N (stride 1: over a whole
row of the window, (hi - lo) * N) consecutive elements on both sides, instead of one short
image row at a time: 3-7x faster than the (N, C, H, W) / (n, oy, ox) layout at batch 64-256.
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
    """One work item per column-matrix row (c, i, j); every entry is written once."""
    c_, h, w, n_ = x.shape
    zero = x.dtype.type(0)
    for r in prange(c_ * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        lo, hi = _inside(j, pw, sw, w, ow)
        for oy in range(oh):
            iy = oy * sh - ph + i
            d = oy * ow * n_
            if iy < 0 or iy >= h:
                for t in range(ow * n_):
                    col[r, d + t] = zero
                continue
            for t in range(lo * n_):
                col[r, d + t] = zero
            for ox in range(lo, hi):
                ix = ox * sw - pw + j
                e = d + ox * n_
                for n in range(n_):
                    col[r, e + n] = x[c, iy, ix, n]
            for t in range(hi * n_, ow * n_):
                col[r, d + t] = zero


@njit(parallel=True, cache=True)
def _col2im_cpu(col, x, kh, kw, sh, sw, ph, pw, oh, ow):
    """One work item per image row (c, iy), which only that item writes (zeroed here first, so
    x may come from np.empty); taps are added in (i, j) order, as the CUDA twin does."""
    c_, h, w, n_ = x.shape
    zero = x.dtype.type(0)
    for item in prange(c_ * h):
        c = item // h
        iy = item - c * h
        for ix in range(w):
            for n in range(n_):
                x[c, iy, ix, n] = zero
        for i in range(kh):
            ty = iy + ph - i
            if ty < 0 or ty % sh != 0 or ty // sh >= oh:
                continue
            oy = ty // sh
            for j in range(kw):
                r = (c * kh + i) * kw + j
                lo, hi = _inside(j, pw, sw, w, ow)
                for ox in range(lo, hi):
                    ix = ox * sw - pw + j
                    s = (oy * ow + ox) * n_
                    for n in range(n_):
                        x[c, iy, ix, n] += col[r, s + n]


@on_device
def im2col(x, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int, ow: int):
    """(C, H, W, N) -> (C*kh*kw, oh*ow*N)."""
    c, n = x.shape[0], x.shape[3]
    col = np.empty((c * kh * kw, oh * ow * n), x.dtype)
    _im2col_cpu(np.ascontiguousarray(x), col, kh, kw, sh, sw, ph, pw, oh, ow)
    return col


@on_device
def col2im(col, shape, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int, ow: int):
    """The adjoint of im2col: (C*kh*kw, oh*ow*N) -> (C, H, W, N), overlaps summed."""
    x = np.empty(shape, col.dtype)  # every row is zeroed by its own work item
    _col2im_cpu(np.ascontiguousarray(col), x, kh, kw, sh, sw, ph, pw, oh, ow)
    return x


_TILE = 64  # transpose tile, walked in 8 x 8 blocks that stay in registers / L1


@njit(parallel=True, cache=True)
def _transpose_cpu(a, out):
    """out = a.T for a 2-D a, one 64 x 64 tile a work item: (N, C*H*W) <-> (C*H*W, N) is the
    move between PyTorch's (N, C, H, W) and the (C, H, W, N) layout above. Whole tiles go in
    8 x 8 blocks (25-30 % faster than plain 32 x 32 tiles here), ragged edges element-wise."""
    r_, c_ = a.shape
    tc = (c_ + _TILE - 1) // _TILE
    for b in prange(((r_ + _TILE - 1) // _TILE) * tc):
        r0 = (b // tc) * _TILE
        c0 = (b % tc) * _TILE
        r1 = min(r0 + _TILE, r_)
        c1 = min(c0 + _TILE, c_)
        if r1 - r0 == _TILE and c1 - c0 == _TILE:
            for rr in range(r0, r1, 8):
                for cc in range(c0, c1, 8):
                    for c in range(cc, cc + 8):
                        for r in range(rr, rr + 8):
                            out[c, r] = a[r, c]
        else:
            for r in range(r0, r1):
                for c in range(c0, c1):
                    out[c, r] = a[r, c]


@on_device
def transpose2d(a):
    """A C-contiguous copy of a.T, for a 2-D array.

    The tiled kernel is the faster one except on small wide arrays (one thread, this 2-vCPU
    AMD EPYC: (512, 4096), a 4x4 layer's weight with 256 -> 512 channels, 1.7 ms against
    NumPy's 10.2 ms; (12544, 256) 2.4 against 6.2 ms; but (64, 3136) 92 against 53 us), where
    NumPy's strided copy of a.T wins.
    """
    if a.shape[0] <= a.shape[1] and a.shape[0] < 128 and a.size < 1 << 18:
        return np.ascontiguousarray(a.T)
    out = np.empty((a.shape[1], a.shape[0]), a.dtype)
    _transpose_cpu(np.ascontiguousarray(a), out)
    return out


@_cuda.kernel("a4 a2 i i i i i i i i")
def _im2col_cuda(x, col, kh, kw, sh, sw, ph, pw, oh, ow):
    """One thread per column-matrix entry; consecutive threads take consecutive n, so reads of
    x and writes of col are both coalesced."""
    _, h, w, n_ = x.shape
    q_ = oh * ow * n_
    zero = x.dtype.type(0)
    for e in range(cuda.grid(1), col.size, cuda.gridsize(1)):
        r = e // q_
        q = e - r * q_
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        n = q % n_
        pix = q // n_
        oy = pix // ow
        ox = pix - oy * ow
        iy = oy * sh - ph + i
        ix = ox * sw - pw + j
        v = zero
        if 0 <= iy < h and 0 <= ix < w:
            v = x[c, iy, ix, n]
        col[r, q] = v


@_cuda.kernel("a2 a4 i i i i i i i i")
def _col2im_cuda(col, x, kh, kw, sh, sw, ph, pw, oh, ow):
    """One thread per image element, gathering the column entries that land on it (no atomics).

    Pixel (iy, ix) receives window tap (i, j) of output (oy, ox) when oy*sh - ph + i = iy;
    taps are summed in the CPU twin's order, (i, j) row by row.
    """
    c_, h, w, n_ = x.shape
    for e in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n = e % n_
        ix = (e // n_) % w
        iy = (e // (n_ * w)) % h
        c = e // (n_ * w * h)
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
                s += col[(c * kh + i) * kw + j, ((oy * ow + tx // sw) * n_) + n]
        x[c, iy, ix, n] = s


@_cuda.kernel("a2 a2")
def _transpose_cuda(a, out):
    """One thread per output element: writes coalesced, reads strided (a cache-line apart)."""
    r_ = a.shape[0]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = e // r_
        r = e - c * r_
        out[c, r] = a[r, c]


def _ints(*values):
    return tuple(int(v) for v in values)


@im2col.cuda
def im2col_cuda(x, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int, ow: int):
    xp = backend.array_module(x)
    x = xp.ascontiguousarray(x)
    c, n = x.shape[0], x.shape[3]
    col = xp.empty((c * kh * kw, oh * ow * n), x.dtype)
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


@transpose2d.cuda
def transpose2d_cuda(a):
    xp = backend.array_module(a)
    a = xp.ascontiguousarray(a)
    out = xp.empty((a.shape[1], a.shape[0]), a.dtype)
    if out.size:
        _cuda.for_each(_transpose_cuda, out.size, a, out)
    return out
