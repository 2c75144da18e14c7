"""Convolution as a sum of shifted GEMMs, one per kernel tap: no column matrix, no padding.

On (C, H, W, N) images (batch innermost, as in conv.py) a stride-1 convolution is

    out[:, oy, ox, :] = sum over taps (i, j) of  W[:, :, i, j] @ x[:, oy - pH + i, ox - pW + j, :]

and for one tap and one output row the pixels it reads, x[:, iy, ix0:ix1, :], are a plain 2-D
matrix: Cin rows, H*W*N apart, each (ix1 - ix0) * N consecutive floats. So each (tap, row) is one
BLAS call on views of x and out (leading dimensions do the striding), accumulating with beta = 1;
where a tap covers whole rows (the centre column, when the width is unchanged) all its rows are
one call. Taps that would read padding are simply not issued, so unlike im2col + GEMM none of the
multiply-adds land on zeros (31 % of them in a 5x5, stride-1 layer on 7x7 images), and nothing
the size of a column matrix (C*kh*kw x oH*oW*N, up to 300 MB at batch 256) is ever written.

A stride-s convolution is split into s*s phases first: x[:, py::s, px::s, :] (a copy of x in
all) holds every pixel that taps with i = py + pH (mod s), j likewise, read; each tap is then a
stride-1 shift within its phase. The adjoint (the input gradient, i.e. the transposed
convolution) accumulates into phase buffers that are interleaved back at the end.

The GEMMs go to the BLAS NumPy itself links (OpenBLAS in NumPy's wheels), through its CBLAS
interface, since NumPy's matmul cannot accumulate into a strided view. `available()` says
whether that library was found; without it the callers use im2col + GEMM.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _find_sgemm():
    """cblas_sgemm from the OpenBLAS bundled with NumPy's wheels, or None."""
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "lib*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: the same library and threads
        except OSError:
            continue
        for name, int_t in (("scipy_cblas_sgemm64_", ctypes.c_int64),
                            ("cblas_sgemm64_", ctypes.c_int64),
                            ("scipy_cblas_sgemm", ctypes.c_int32),
                            ("cblas_sgemm", ctypes.c_int32)):
            fn = getattr(lib, name, None)
            if fn is None:
                continue
            i, p, f = int_t, ctypes.c_void_p, ctypes.c_float
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, f, p, i, p, i, f,
                           p, i]
            fn.restype = None
            return fn
    return None


_SGEMM = None if os.environ.get("MINIGAN_SHIFTED_GEMM") == "0" else _find_sgemm()


def available(dtype) -> bool:
    """True when shifted-GEMM convolution can run on arrays of this dtype (float32 only: the
    float64 used by the gradient checks goes through im2col, which is exact there too)."""
    return _SGEMM is not None and np.dtype(dtype) == np.float32


def _gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """c = op(a) @ op(b) + beta * c, row-major, a/b/c raw addresses."""
    _SGEMM(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
           m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)


def _calls(kh, kw, sh, sw, ph, pw, oh, ow, n, shapes):
    """The GEMMs of one convolution: (tap index, phase, output offset, phase-image offset,
    columns), offsets in elements. One per covered output row of each tap, or one for all of a
    tap's rows when they are whole rows on both sides (contiguous in both)."""
    for i in range(kh):
        py = (i - ph) % sh
        dy = (i - ph - py) // sh
        for j in range(kw):
            px = (j - pw) % sw
            dx = (j - pw - px) // sw
            hp, wp = shapes[py, px]
            y0, y1 = max(0, -dy), min(oh, hp - dy)
            x0, x1 = max(0, -dx), min(ow, wp - dx)
            if y0 >= y1 or x0 >= x1:
                continue  # this tap only ever reads padding
            if x0 == 0 and x1 == ow == wp:  # dx == 0: whole rows on both sides, one call
                yield i * kw + j, (py, px), y0 * ow * n, (y0 + dy) * wp * n, (y1 - y0) * ow * n
                continue
            for oy in range(y0, y1):
                yield (i * kw + j, (py, px), (oy * ow + x0) * n, ((oy + dy) * wp + x0 + dx) * n,
                       (x1 - x0) * n)


def _f32(a):
    return np.ascontiguousarray(a, np.float32)


def split(x, sh, sw):
    """The phase images of x (C, H, W, N) for stride (sh, sw): {(py, px): contiguous
    x[:, py::sh, px::sw, :]}, x itself for stride 1. Made once per input and shared by the
    forward pass and the weight gradient."""
    if isinstance(x, dict):
        return x
    x = _f32(x)
    if sh == sw == 1:
        return {(0, 0): x}
    return {(py, px): np.ascontiguousarray(x[:, py::sh, px::sw, :])
            for py in range(sh) for px in range(sw)}


def _shapes(phases):
    return {k: a.shape[1:3] for k, a in phases.items()}


def conv2d(x, w, sh, sw, ph, pw, oh, ow):
    """x (Ci, H, W, N) or its `split`, w (Co, Ci, kh, kw) -> out (Co, oh, ow, N)."""
    phases = split(x, sh, sw)
    ci, _, _, n = phases[0, 0].shape
    co, _, kh, kw = w.shape
    taps = _f32(w.transpose(2, 3, 0, 1))  # (kh, kw, Co, Ci): one Co x Ci matrix a tap
    shapes = _shapes(phases)
    out = np.zeros((co, oh, ow, n), np.float32)
    t_ptr, o_ptr = taps.ctypes.data, out.ctypes.data
    ptrs = {k: a.ctypes.data for k, a in phases.items()}
    for t, key, o_off, x_off, cols in _calls(kh, kw, sh, sw, ph, pw, oh, ow, n, shapes):
        hp, wp = shapes[key]
        _gemm(False, False, co, cols, ci, t_ptr + 4 * t * co * ci, ci,
              ptrs[key] + 4 * x_off, hp * wp * n, 1.0, o_ptr + 4 * o_off, oh * ow * n)
    return out


def conv2d_input_grad(gy, w, sh, sw, ph, pw, h, wd):
    """The adjoint of conv2d in x (= the transposed convolution): gy (Co, oh, ow, N),
    w (Co, Ci, kh, kw) -> gx (Ci, h, wd, N)."""
    co, oh, ow, n = gy.shape
    _, ci, kh, kw = w.shape
    gy = _f32(gy)
    taps = _f32(w.transpose(2, 3, 0, 1))
    shapes = {(py, px): (len(range(py, h, sh)), len(range(px, wd, sw)))
              for py in range(sh) for px in range(sw)}
    phases = {k: np.zeros((ci, *hw, n), np.float32) for k, hw in shapes.items()}
    t_ptr, g_ptr = taps.ctypes.data, gy.ctypes.data
    ptrs = {k: a.ctypes.data for k, a in phases.items()}
    for t, key, o_off, x_off, cols in _calls(kh, kw, sh, sw, ph, pw, oh, ow, n, shapes):
        hp, wp = shapes[key]
        _gemm(True, False, ci, cols, co, t_ptr + 4 * t * co * ci, ci,
              g_ptr + 4 * o_off, oh * ow * n, 1.0, ptrs[key] + 4 * x_off, hp * wp * n)
    if sh == sw == 1:
        return phases[0, 0]
    gx = np.empty((ci, h, wd, n), np.float32)
    for (py, px), part in phases.items():
        gx[:, py::sh, px::sw, :] = part
    return gx


def conv2d_weight_grad(x, gy, sh, sw, ph, pw, kh, kw):
    """d<conv2d(x, w), gy>/dw: x (Ci, H, W, N) or its `split`, gy (Co, oh, ow, N)
    -> (Co, Ci, kh, kw)."""
    phases = split(x, sh, sw)
    ci, _, _, n = phases[0, 0].shape
    co, oh, ow, _ = gy.shape
    gy = _f32(gy)
    shapes = _shapes(phases)
    taps = np.zeros((kh, kw, co, ci), np.float32)
    t_ptr, g_ptr = taps.ctypes.data, gy.ctypes.data
    ptrs = {k: a.ctypes.data for k, a in phases.items()}
    for t, key, o_off, x_off, cols in _calls(kh, kw, sh, sw, ph, pw, oh, ow, n, shapes):
        hp, wp = shapes[key]
        _gemm(False, True, co, ci, cols, g_ptr + 4 * o_off, oh * ow * n,
              ptrs[key] + 4 * x_off, hp * wp * n, 1.0, t_ptr + 4 * t * co * ci, ci)
    return np.ascontiguousarray(taps.transpose(2, 3, 0, 1))
