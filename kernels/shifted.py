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

A stride-s convolution is first split into s*s phase images, x[:, py::s, px::s, :], stacked
along the channel axis ((phase, channel) rows, all phases padded to one size with zeros, which
stand for pixels outside the image): tap (i, j) reads phase ((i - pH) mod s, (j - pW) mod s)
at a stride-1 shift (dy, dx). Taps of consecutive phases with the same shift are one GEMM over
their stacked rows (K = phases * Cin: 4 * 64 instead of 64 for the DCGAN's 5x5, stride-2
layers, which keeps the GEMMs efficient). The adjoint (the input gradient, i.e. the transposed
convolution) accumulates into a stacked phase buffer that is interleaved back at the end.

The GEMMs go to the BLAS NumPy itself links (OpenBLAS in NumPy's wheels), through its CBLAS
interface, since NumPy's matmul cannot accumulate into a strided view. `available()` says
whether that library was found; without it, or with MINIGAN_SHIFTED_GEMM=0 in the environment,
the callers use im2col + GEMM. The GEMMs of a call are split by output rows over `POOL`'s
threads (kernels/threads.py), BLAS itself single-threaded, and timed for `THREADS`, which picks
the width by measuring (one thread when other processes keep the cores busy).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os

import numpy as np

from . import threads as T
from .conv import transpose2d

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _find_sgemm():
    """(cblas_sgemm, get_num_threads, set_num_threads) from the OpenBLAS bundled with NumPy's
    wheels; None for what is not found."""
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
            return (fn, *_thread_functions(lib))
    return None, None, None


def _thread_functions(lib):
    """OpenBLAS's get/set_num_threads under the names its builds give them, or (None, None)."""
    for suffix in ("64_", "_64_", ""):
        for prefix in ("scipy_openblas", "openblas"):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None, None


_SGEMM, _GET_THREADS, _SET_THREADS = ((None, None, None)
                                      if os.environ.get("MINIGAN_SHIFTED_GEMM") == "0"
                                      else _find_sgemm())
POOL = T.RowPool()
THREADS = T.configure(_SET_THREADS, POOL) if _SGEMM is not None else None  # None: fixed


def _timed(flops):
    """Context of one convolution's GEMMs for THREADS (nothing when the count is fixed)."""
    return _Timer(flops) if THREADS is not None else contextlib.nullcontext()


class _Timer:
    __slots__ = ("flops", "t0")

    def __init__(self, flops):
        self.flops = flops

    def __enter__(self):
        self.t0 = THREADS.start()

    def __exit__(self, *exc):
        THREADS.done(self.t0, self.flops)


def available(dtype) -> bool:
    """True when shifted-GEMM convolution can run on arrays of this dtype (float32 only: the
    float64 used by the gradient checks goes through im2col, which is exact there too)."""
    return _SGEMM is not None and np.dtype(dtype) == np.float32


MIN_CHANNELS = 16  # below this, a tap's GEMM is a thin rank-few update: im2col does better


def suits(a, b, channels) -> bool:
    """Whether a convolution of arrays a and b with these (in, out) channel counts should take
    this path: CPU (NumPy) float32 arrays, at least MIN_CHANNELS channels each way."""
    return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and available(a.dtype)
            and b.dtype == a.dtype and min(channels) >= MIN_CHANNELS)


def _gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """c = op(a) @ op(b) + beta * c, row-major, a/b/c raw addresses."""
    _SGEMM(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
           m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)


def _f32(a):
    return np.ascontiguousarray(a, np.float32)


def _plan(kh, kw, sh, sw, ph, pw):
    """The GEMMs of a convolution: [(dy, dx, p0, taps)], one per shift (dy, dx) and run of
    consecutive phases p0, p0 + 1, ... holding a tap with that shift; taps[k] is the (i, j) of
    phase p0 + k. Phase p = py * sw + px."""
    groups = {}
    for i in range(kh):
        py = (i - ph) % sh
        dy = (i - ph - py) // sh
        for j in range(kw):
            px = (j - pw) % sw
            groups.setdefault((dy, (j - pw - px) // sw), {})[py * sw + px] = (i, j)
    plan = []  # the centre shift (0, 0) first: in a 'same' convolution it covers every output
    for (dy, dx), by_phase in sorted(groups.items(), key=lambda kv: (kv[0] != (0, 0), kv[0])):
        run = []
        for p in sorted(by_phase):
            if run and p != run[-1] + 1:
                plan.append((dy, dx, run[0], [by_phase[q] for q in run]))
                run = []
            run.append(p)
        plan.append((dy, dx, run[0], [by_phase[q] for q in run]))
    return plan


def _calls(plan, oh, ow, hp, wp, n):
    """(plan index, output offset, phase-image offset, columns) of each BLAS call, offsets in
    elements: one per covered output row of a shift, or one for all of its rows when they are
    whole rows on both sides (contiguous in both)."""
    for g, (dy, dx, _, _) in enumerate(plan):
        y0, y1 = max(0, -dy), min(oh, hp - dy)
        x0, x1 = max(0, -dx), min(ow, wp - dx)
        if y0 >= y1 or x0 >= x1:
            continue  # this shift only ever reads padding
        if x0 == 0 and x1 == ow == wp:
            yield g, y0 * ow * n, (y0 + dy) * wp * n, (y1 - y0) * ow * n
            continue
        for oy in range(y0, y1):
            yield g, (oy * ow + x0) * n, ((oy + dy) * wp + x0 + dx) * n, (x1 - x0) * n


def _phase_size(h, s):
    return -(-h // s)  # the largest phase: rows py, py + s, ... for py = 0


def split(x, sh, sw):
    """x (C, H, W, N) -> its stacked phase images (sh*sw*C, ceil(H/sh), ceil(W/sw), N), rows
    (phase, channel); x itself for stride 1. Made once per input and shared by the forward pass
    and the weight gradient."""
    if sh == sw == 1 or x.ndim == 5:
        return _f32(x)
    c, h, w, n = x.shape
    hp, wp = _phase_size(h, sh), _phase_size(w, sw)
    out = np.empty((sh * sw, c, hp, wp, n), np.float32)
    for py in range(sh):
        for px in range(sw):
            part = x[:, py::sh, px::sw, :]
            dst = out[py * sw + px]
            dst[:, :part.shape[1], :part.shape[2]] = part
            dst[:, part.shape[1]:] = 0
            dst[:, :, part.shape[2]:] = 0
    return out


def _to_taps(w):
    """(Co, Ci, kh, kw) -> contiguous (kh, kw, Ci, Co): the tiled 2-D transpose of
    (Co, Ci*kh*kw), then moves of whole Co-rows (a strided 4-D copy is several times slower on
    the 3-13 MB weights of 256-512-channel layers)."""
    co, ci, kh, kw = w.shape
    t = transpose2d(_f32(w).reshape(co, ci * kh * kw))  # (Ci*kh*kw, Co)
    return np.ascontiguousarray(t.reshape(ci, kh, kw, co).transpose(1, 2, 0, 3))


def _from_taps(t):
    """The inverse of _to_taps: (kh, kw, Ci, Co) -> contiguous (Co, Ci, kh, kw)."""
    kh, kw, ci, co = t.shape
    rows = np.ascontiguousarray(t.transpose(2, 0, 1, 3)).reshape(ci * kh * kw, co)
    return transpose2d(rows).reshape(co, ci, kh, kw)


def _tap_rows(w, plan):
    """The weights of each planned GEMM as a (len(taps) * Ci, Co) matrix, rows (tap, ci): a view
    of one transposed copy of w for a single tap, the taps' blocks stacked otherwise."""
    wt = _to_taps(w)  # (kh, kw, Ci, Co)
    return [wt[taps[0]] if len(taps) == 1 else np.concatenate([wt[t] for t in taps])
            for _, _, _, taps in plan]


def _geometry(stacked):
    """(phase height, phase width, N, channel-row stride) of (stacked) phase images."""
    hp, wp, n = stacked.shape[-3:]
    return hp, wp, n, hp * wp * n


def _first_covers(calls, size):
    """Whether the first call writes a whole target of `size` columns (then the target need not
    be zeroed first: that call runs with beta = 0)."""
    return bool(calls) and calls[0][1] == 0 and calls[0][3] == size


def conv2d(x, w, sh, sw, ph, pw, oh, ow):
    """x (Ci, H, W, N) or its `split`, w (Co, Ci, kh, kw) -> out (Co, oh, ow, N)."""
    xs = split(x, sh, sw)
    co, ci, kh, kw = w.shape
    hp, wp, n, ld = _geometry(xs)
    plan = _plan(kh, kw, sh, sw, ph, pw)
    rows = _tap_rows(w, plan)
    calls = list(_calls(plan, oh, ow, hp, wp, n))
    fresh = _first_covers(calls, oh * ow * n)  # the centre shift, in a 'same' convolution
    out = (np.empty if fresh else np.zeros)((co, oh, ow, n), np.float32)
    x_ptr, o_ptr = xs.ctypes.data, out.ctypes.data
    a_ptrs = [a.ctypes.data for a in rows]
    def chunk(r0, r1):  # output channels r0 .. r1-1
        for c, (g, o_off, x_off, cols) in enumerate(calls):
            k = len(plan[g][3]) * ci
            _gemm(True, False, r1 - r0, cols, k, a_ptrs[g] + 4 * r0, co,
                  x_ptr + 4 * (plan[g][2] * ci * ld + x_off), ld,
                  0.0 if fresh and c == 0 else 1.0, o_ptr + 4 * (r0 * oh * ow * n + o_off),
                  oh * ow * n)

    with _timed(2.0 * co * ci * kh * kw * oh * ow * n):
        POOL.run(co, chunk)
    return out


def conv2d_input_grad(gy, w, sh, sw, ph, pw, h, wd):
    """The adjoint of conv2d in x (= the transposed convolution): gy (Co, oh, ow, N),
    w (Co, Ci, kh, kw) -> gx (Ci, h, wd, N)."""
    co, oh, ow, n = gy.shape
    _, ci, kh, kw = w.shape
    gy = _f32(gy)
    hp, wp = _phase_size(h, sh), _phase_size(wd, sw)
    ld = hp * wp * n
    plan = _plan(kh, kw, sh, sw, ph, pw)
    rows = _tap_rows(w, plan)
    calls = list(_calls(plan, oh, ow, hp, wp, n))
    # the first call may cover every phase image whole (its run holds all sh*sw phases)
    fresh = _first_covers(calls, ld) and plan[calls[0][0]][2] == 0 and \
        len(plan[calls[0][0]][3]) == sh * sw
    gs = (np.empty if fresh else np.zeros)((sh * sw, ci, hp, wp, n), np.float32)
    g_ptr, s_ptr = gy.ctypes.data, gs.ctypes.data
    a_ptrs = [a.ctypes.data for a in rows]
    def chunk(r0, r1):  # rows (phase, channel) r0 .. r1-1 of the stacked phase images
        for c, (g, o_off, x_off, cols) in enumerate(calls):
            first = plan[g][2] * ci
            lo, hi = max(r0, first), min(r1, first + len(plan[g][3]) * ci)
            if lo < hi:
                _gemm(False, False, hi - lo, cols, co, a_ptrs[g] + 4 * (lo - first) * co, co,
                      g_ptr + 4 * o_off, oh * ow * n, 0.0 if fresh and c == 0 else 1.0,
                      s_ptr + 4 * (lo * ld + x_off), ld)

    with _timed(2.0 * co * ci * kh * kw * oh * ow * n):
        POOL.run(sh * sw * ci, chunk)
    if sh == sw == 1:
        return gs[0]
    gx = np.empty((ci, h, wd, n), np.float32)
    for py in range(sh):
        for px in range(sw):
            part = gx[:, py::sh, px::sw, :]
            part[...] = gs[py * sw + px, :, :part.shape[1], :part.shape[2]]
    return gx


def conv2d_weight_grad(x, gy, sh, sw, ph, pw, kh, kw):
    """d<conv2d(x, w), gy>/dw: x (Ci, H, W, N) or its `split`, gy (Co, oh, ow, N)
    -> (Co, Ci, kh, kw)."""
    xs = split(x, sh, sw)
    co, oh, ow, _ = gy.shape
    ci = xs.shape[-4]
    hp, wp, n, ld = _geometry(xs)
    gy = _f32(gy)
    plan = _plan(kh, kw, sh, sw, ph, pw)
    gwt = np.zeros((kh, kw, ci, co), np.float32)  # taps that only meet padding stay zero
    # single-tap GEMMs write their (Ci, Co) block of gwt directly; stacked ones go to a buffer
    outs = [gwt[taps[0]] if len(taps) == 1 else np.zeros((len(taps) * ci, co), np.float32)
            for _, _, _, taps in plan]
    x_ptr, g_ptr = xs.ctypes.data, gy.ctypes.data
    c_ptrs = [a.ctypes.data for a in outs]
    calls = list(_calls(plan, oh, ow, hp, wp, n))

    def chunk(r0, r1):  # output channels r0 .. r1-1: columns of the (tap, Ci) x Co blocks
        for g, o_off, x_off, cols in calls:
            k = len(plan[g][3]) * ci
            _gemm(False, True, k, r1 - r0, cols, x_ptr + 4 * (plan[g][2] * ci * ld + x_off), ld,
                  g_ptr + 4 * (r0 * oh * ow * n + o_off), oh * ow * n, 1.0, c_ptrs[g] + 4 * r0,
                  co)

    with _timed(2.0 * co * ci * kh * kw * oh * ow * n):
        POOL.run(co, chunk)
    for (_, _, _, taps), m in zip(plan, outs):
        if len(taps) > 1:
            for t, tap in enumerate(taps):
                gwt[tap] = m[t * ci:(t + 1) * ci]
    return _from_taps(gwt)
