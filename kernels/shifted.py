"""Convolution as a sum of shifted GEMMs, one per kernel tap: no column matrix, no padding.

On (C, H, W, N) images (batch innermost, as in conv.py) a stride-1 convolution is

    out[:, oy, ox, :] = sum over taps (i, j) of  W[:, :, i, j] @ x[:, oy - pH + i, ox - pW + j, :]

and for one tap the pixels it reads are x at a constant offset from the pixels it writes. With
the image rows laid out `wq` pixels apart, zero beyond the image's `wp` (`Phases`), every output
row of a tap reads one plain matrix (Cin rows, the leading dimension doing the striding), and
when the zero columns are wide enough to stand for the padding on both sides, all of the tap's
rows are one matrix too: one BLAS call per tap, accumulating with beta = 1. Those zero columns
are multiplied as well, so rows get them only where they add little (`_layout`: the 32x32 and
16x16 maps of a 64x64 DCGAN); on narrow maps a tap with a horizontal shift is one call per
output row, over the columns that meet the image. Taps that would read only padding are not
issued, so unlike im2col + GEMM almost none of the multiply-adds land on zeros (31 % of
im2col's do in a 5x5, stride-1 layer on 7x7 images), and nothing the size of a column matrix
(C*kh*kw x oH*oW*N, up to 300 MB at batch 256) is ever written.

A stride-s convolution is first split into s*s phase images, x[:, py::s, px::s, :], stacked
along the channel axis ((phase, channel) rows, all phases padded to one size with zeros, which
stand for pixels outside the image): tap (i, j) reads phase ((i - pH) mod s, (j - pW) mod s)
at a stride-1 shift (dy, dx). Taps of phases stacked next to one another with the same shift
are one GEMM over their stacked rows (K = phases * Cin: 4 * 64 instead of 64 for the DCGAN's
5x5, stride-2 layers, which keeps the GEMMs efficient), and the phases are stacked in the order
that makes the fewest GEMMs (`phase_order`). The adjoint (the input gradient, i.e. the transposed
convolution) accumulates into a stacked phase buffer that is interleaved back at the end.

The GEMMs go to the BLAS NumPy itself links (OpenBLAS in NumPy's wheels), through its CBLAS
interface, since NumPy's matmul cannot accumulate into a strided view. A chunk's GEMMs are
gathered as a table (`_Calls`) and run by one numba kernel (`_gemms_cpu`) that calls cblas_sgemm
through its address, without the GIL and with no Python between the calls (a training step of
the half-width DCGAN makes about 1,000 of them, most under 0.1 ms). `available()` says
whether that library was found; without it, or with MINIGAN_SHIFTED_GEMM=0 in the environment,
the callers use im2col + GEMM. On `POOL`'s threads (kernels/threads.py; BLAS itself then
single-threaded) a call's pixels are cut into chunks, each a range of output pixels (of input
pixels for the input gradient, so that every pixel is written by one chunk): every GEMM keeps
all its output channels, and the weight gradient sums each chunk's share into a buffer of its
own, added up in a fixed order at the end. `THREADS` picks the width by measuring (one thread
when other processes keep the cores busy). On OpenBLAS's own threads (a quiet machine) a
convolution's GEMMs are whole, one chunk, and OpenBLAS shares out each one; but the weight
gradient's are thin (64-256 columns over up to 35,000 pixels), so there its GEMMs are dealt out
instead, each block of the result with all of its GEMMs to one thread, OpenBLAS single-threaded
meanwhile (`_weight_grad_apart`): the same sums, bit for bit, in 0.78-0.88 of the time on a
64x64 DCGAN's 32 x 32 layers (`python benchmarks/weight_grad.py`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from . import blas as _blas
from . import threads as T

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


BLAS = _blas.load()   # NumPy's OpenBLAS (kernels/blas.py)
_SGEMM, _GET_THREADS, _SET_THREADS = BLAS.sgemm, BLAS.get_threads, BLAS.set_threads
# cblas_sgemm's address and the width of its integers, for `_gemms_cpu`
_SGEMM_AT = ctypes.cast(_SGEMM, ctypes.c_void_p).value if _SGEMM is not None else 0
_INT = (np.int64(0) if _SGEMM is not None and _SGEMM.argtypes[3] is ctypes.c_int64
        else np.int32(0))
POOL = T.RowPool()
THREADS = (T.configure(_SET_THREADS, POOL, _GET_THREADS) if _SGEMM is not None
           else None)                                                      # None: fixed


def thread_family() -> str | None:
    """'blas' or 'pool': how the default setting (MINIGAN_THREADS unset) runs this process's
    convolutions, once the first has run; None for the other settings or before that."""
    return THREADS.family if isinstance(THREADS, T.Detect) else None


def fix_blas_threads(n: int) -> None:
    """OpenBLAS's threads fixed at n for this process, the default's detection off; a measured
    setting (MINIGAN_THREADS=pool or auto) keeps its own. For runs sized to fit the cores (a
    sweep's), which the load they make together must not move."""
    global THREADS
    if isinstance(THREADS, T.Detect):
        THREADS.use("blas")
        THREADS = None
    if _SET_THREADS is not None and THREADS is None:
        _SET_THREADS(n)


def use_thread_family(family: str | None) -> None:
    """Run the convolutions the way a run started (`thread_family()` then), so that a resumed
    run rounds as the unbroken one would; nothing unless MINIGAN_THREADS is unset."""
    if family is not None and isinstance(THREADS, T.Detect) and THREADS.family != family:
        THREADS.use(family)


def redetect_threads() -> None:
    """Let the next convolution choose the default setting's thread family afresh (nothing for
    the other settings): after a warm-up that ran under a load of its own."""
    if isinstance(THREADS, T.Detect):
        THREADS.reset()


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


@intrinsic
def _sgemm_call(typingctx, at, call, width):
    """cblas_sgemm at address `at` on one row of a `_Calls` table (trans_a, trans_b, m, n, k,
    a, lda, b, ldb, beta, c, ldc; alpha 1, row-major); `width`'s type (int32 or int64) is the
    width of the library's integers. An intrinsic, not a ctypes function, so that the kernel
    calling it can be cached (numba cannot cache code that holds a ctypes function)."""
    if not (isinstance(at, types.Integer) and isinstance(call, types.Array)
            and isinstance(width, types.Integer)):
        return None
    bits = width.bitwidth

    def codegen(context, builder, signature, args):
        at_v, row, _ = args
        data = context.make_array(signature.args[1])(context, builder, row).data
        i32, i_n, f32 = ir.IntType(32), ir.IntType(bits), ir.FloatType()
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(),
                               [i32, i32, i32, i_n, i_n, i_n, f32, ptr, i_n, ptr, i_n, f32, ptr,
                                i_n])

        def get(i):
            return builder.load(builder.gep(data, [ir.Constant(ir.IntType(64), i)]))

        def integer(i):
            return builder.trunc(get(i), i_n) if bits < 64 else get(i)

        def address(i):
            return builder.inttoptr(get(i), ptr)

        fn = builder.inttoptr(at_v, fnty.as_pointer())
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), builder.trunc(get(0), i32),
                          builder.trunc(get(1), i32), integer(2), integer(3), integer(4),
                          ir.Constant(f32, 1.0), address(5), integer(6), address(7), integer(8),
                          builder.sitofp(get(9), f32), address(10), integer(11)])
        return context.get_dummy_value()

    return types.void(at, call, width), codegen


@njit(nogil=True, cache=True)
def _gemms_cpu(at, calls, width):
    """Every row of `calls` (int64, a `_Calls` table) as one cblas_sgemm, in order, without
    the GIL: a chunk's GEMMs with no Python between them."""
    for i in range(calls.shape[0]):
        _sgemm_call(at, calls[i], width)


class _Calls:
    """A chunk's GEMMs, gathered as `_gemm`'s arguments (beta 0 or 1) and run by `run()` in
    one call into `_gemms_cpu`, in the order they were added. `rows` is a list of them, or an
    int64 table with a row each (`placed`)."""

    __slots__ = ("rows",)

    def __init__(self, rows=None):
        self.rows = [] if rows is None else rows

    def add(self, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        self.rows.append((_TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
                          m, n, k, a, lda, b, ldb, int(beta), c, ldc))

    def table(self):
        """The calls as a read-only int64 table, a row each."""
        table = np.array(self.rows, np.int64).reshape(-1, 12)
        table.flags.writeable = False
        return table

    @classmethod
    def placed(cls, table, a, b, c):
        """The calls of a `table` made with the operands A, B and C at address 0 (their
        addresses there are offsets in bytes), with A, B and C at addresses a, b and c."""
        return cls(table + np.array((0, 0, 0, 0, 0, a, 0, b, 0, 0, c, 0), np.int64))

    def run(self):
        if len(self.rows):
            _gemms_cpu(_SGEMM_AT, np.asarray(self.rows, np.int64), _INT)


def _f32(a):
    return np.ascontiguousarray(a, np.float32)


def _shift_phases(kh, kw, sh, sw, ph, pw):
    """{(dy, dx): {phase p = py * sw + px: (i, j)}}: tap (i, j) reads phase p at that shift."""
    groups = {}
    for i in range(kh):
        py = (i - ph) % sh
        dy = (i - ph - py) // sh
        for j in range(kw):
            px = (j - pw) % sw
            groups.setdefault((dy, (j - pw - px) // sw), {})[py * sw + px] = (i, j)
    return groups


def _runs(positions):
    """How many runs of consecutive integers the sorted `positions` make."""
    return sum(1 for k, q in enumerate(positions) if k == 0 or q != positions[k - 1] + 1)


@functools.cache
def phase_order(kh, kw, sh, sw, ph, pw):
    """The order in which the phases are stacked (order[position] = py * sw + px): the one that
    makes the fewest GEMMs, i.e. puts the phases that share a shift next to one another most
    often (the first such order in lexicographic order, the natural one when it is among them).
    A 5x5, stride-2 layer (padding 2) stacks the phases (py, px) = (0, 1), (0, 0), (1, 0),
    (1, 1): its shifts with dx = 1 read phases (0, 0) and (1, 0), which the natural order keeps
    apart, so 9 GEMMs instead of 11, two of them over twice the rows in place of four thin ones
    (a 4x4, stride-2 one, padding 1: 10 instead of 11). Strides above 2 in both
    directions (over 4 phases) keep the natural order."""
    phases = sh * sw
    groups = [sorted(by_phase) for by_phase in _shift_phases(kh, kw, sh, sw, ph, pw).values()]
    if phases > 4:
        return tuple(range(phases))
    best, fewest = None, None
    for order in itertools.permutations(range(phases)):
        pos = {p: k for k, p in enumerate(order)}
        gemms = sum(_runs(sorted(pos[p] for p in g)) for g in groups)
        if fewest is None or gemms < fewest:
            best, fewest = order, gemms
    return best


@functools.cache
def _plan(kh, kw, sh, sw, ph, pw):
    """The GEMMs of a convolution: ((dy, dx, p0, taps), ...), one per shift (dy, dx) and run of
    phases stacked at consecutive positions p0, p0 + 1, ... holding a tap with that shift;
    taps[k] is the (i, j) of the phase at position p0 + k (`phase_order`)."""
    pos = {p: k for k, p in enumerate(phase_order(kh, kw, sh, sw, ph, pw))}
    groups = _shift_phases(kh, kw, sh, sw, ph, pw)
    plan = []  # the centre shift (0, 0) first: in a 'same' convolution it covers every output
    for (dy, dx), by_phase in sorted(groups.items(), key=lambda kv: (kv[0] != (0, 0), kv[0])):
        at = {pos[p]: tap for p, tap in by_phase.items()}
        run = []
        for k in sorted(at):
            if run and k != run[-1] + 1:
                plan.append((dy, dx, run[0], tuple(at[q] for q in run)))
                run = []
            run.append(k)
        plan.append((dy, dx, run[0], tuple(at[q] for q in run)))
    return tuple(plan)


def _phase_size(h, s):
    return -(-h // s)  # the largest phase: rows py, py + s, ... for py = 0


class Phases:
    """The stacked phase images of x (C, H, W, N) in the gap layout of one convolution.

    `buf` is (P * C, L), rows (phase, channel). In a row, phase pixel (r, c) of image b is at
    `base + (r * wq + c) * n + b`: each phase row is `wq` >= `wp` pixels wide, its last
    `wq - wp` pixels zero, and `base` zeros lie before row 0 and enough after the last row.
    Output pixel (oy, ox) of the convolution is at (oy * wq + ox) * n of an output buffer with
    the same row width, so a tap with shift (dy, dx) reads the input at a constant offset
    ((dy * wq + dx) * n) from what it writes: a window of output rows is one GEMM, whatever
    the shift. A read left of column 0 lands on the previous row's zero columns, one right of
    column wp - 1 on this row's: the zeros stand for the padding. The output's columns
    ox >= ow are not part of the result."""

    __slots__ = ("buf", "c", "hp", "wp", "wq", "n", "base")

    def __init__(self, buf, c, hp, wp, wq, n, base):
        self.buf, self.c, self.hp, self.wp, self.wq, self.n, self.base = (buf, c, hp, wp, wq,
                                                                          n, base)


GAP_WASTE = 12  # gap columns are used when they add at most 1/12 to a GEMM's columns


def _layout(plan, wp, ow):
    """(row width wq, zero pixels before row 0, after the last row) for these shifts.

    With enough zero columns at the end of each row every shift is one GEMM over all its
    rows, but those columns are multiplied too; so rows get them only when they are wide
    (the 32x32 and 16x16 maps of a DCGAN), and narrow maps keep wq = wp: there the shifts
    with dx != 0 are one GEMM per output row (`_pieces`)."""
    lo = min(dx for _, dx, _, _ in plan)
    hi = max(dx for _, dx, _, _ in plan)
    extra = max(0, -lo, ow - wp + max(hi, 0))
    wq = wp + extra if extra * GAP_WASTE <= wp else max(wp, ow)
    return wq, max(0, -lo), max(0, hi)


@functools.lru_cache(maxsize=256)
def _pieces(plan, oh, ow, hp, wp, wq):
    """The GEMMs of a convolution as (plan index, first, last + 1 output pixel), pixels
    numbered row-major over oh x wq: one per shift that fits its rows' zero columns (all of
    its rows that meet the input at once), else one per output row (the columns that read
    the input only). A tuple, made once per geometry."""
    out = []
    for g, (dy, dx, _, _) in enumerate(plan):
        y0, y1 = max(0, -dy), min(oh, hp - dy)
        if y0 >= y1:
            continue                     # this shift only ever reads padding
        if -dx <= wq - wp and dx <= wq - ow:
            out.append((g, y0 * wq, y1 * wq))
            continue
        x0, x1 = max(0, -dx), min(ow, wp - dx)
        if x0 < x1:
            out.extend((g, oy * wq + x0, oy * wq + x1) for oy in range(y0, y1))
    return tuple(out)


def split(x, sh, sw, kh, kw, ph, pw, oh, ow):
    """x (C, H, W, N) -> its `Phases` for this convolution (x itself when already split).
    Made once per input and shared by the forward pass and the weight gradient."""
    if isinstance(x, Phases):
        return x
    c, h, w, n = x.shape
    hp, wp = _phase_size(h, sh), _phase_size(w, sw)
    wq, front, back = _layout(_plan(kh, kw, sh, sw, ph, pw), wp, ow)
    if sh == sw == 1 and wq == wp and front == back == 0:
        return Phases(_f32(x).reshape(c, -1), c, hp, wp, wq, n, 0)  # no copy needed
    buf = np.empty((sh * sw * c, (front + hp * wq + back) * n), np.float32)
    _split_cpu(_f32(x), buf, sh, sw, hp, wq, front * n, _order_array(kh, kw, sh, sw, ph, pw))
    return Phases(buf, c, hp, wp, wq, n, front * n)


def _grid(y, wq):
    """y (C, oh, ow, N) on an output grid of row width wq: (C, oh * wq * N), zero in the
    columns ox >= ow (they then add nothing to the sums that read them)."""
    c, oh, ow, n = y.shape
    if wq == ow:
        return _f32(y).reshape(c, -1)
    out = np.empty((c, oh * wq * n), np.float32)
    _split_cpu(_f32(y), out, 1, 1, oh, wq, 0, _ONE_PHASE)
    return out


class OnGrid:
    """An output gradient gy (C, oh, ow, N) as both gradients of a convolution read it (`_grid`
    on the layout's row width `wq`): made once by `on_grid` when both are wanted, instead of
    once in each. `shape` is gy's."""

    __slots__ = ("buf", "wq", "shape")

    def __init__(self, buf, wq, shape):
        self.buf, self.wq, self.shape = buf, wq, shape


def on_grid(gy, sh, sw, ph, pw, kh, kw, h, wd):
    """gy (Co, oh, ow, N) of a convolution of (Ci, h, wd, N) images with a kh x kw kernel, as an
    `OnGrid` that conv2d_input_grad and conv2d_weight_grad take in place of gy."""
    wq = _layout(_plan(kh, kw, sh, sw, ph, pw), _phase_size(wd, sw), gy.shape[2])[0]
    return OnGrid(_grid(gy, wq), wq, gy.shape)


def _gridded(gy, wq):
    """gy's `_grid` on row width wq (gy itself when it is an `OnGrid` made for this layout)."""
    if isinstance(gy, OnGrid):
        if gy.wq != wq:
            raise ValueError(f"output gradient laid out {gy.wq} pixels a row, not {wq}")
        return gy.buf
    return _grid(gy, wq)


def _compact(buf, c, rows, wq, w, n):
    """The first w of every wq pixels of (c, rows * wq * n) memory, as contiguous (c, rows, w,
    n)."""
    if wq == w:
        return buf.reshape(c, rows, w, n)
    out = np.empty((c, rows, w, n), np.float32)
    _merge_cpu(buf, out, 1, 1, wq, _ONE_PHASE)
    return out


_ONE_PHASE = np.zeros(1, np.int64)
_ONE_PHASE.flags.writeable = False


@functools.cache
def _order_array(kh, kw, sh, sw, ph, pw):
    """`phase_order` as the kernels take it: made once per geometry, read-only."""
    order = np.array(phase_order(kh, kw, sh, sw, ph, pw), np.int64)
    order.flags.writeable = False
    return order


@njit(parallel=True, cache=True)
def _split_cpu(x, buf, sh, sw, hp, wq, base, order):
    """buf[k * C + c, base + (r * wq + q) * N + b] = x[c, py + r * sh, px + q * sw, b] for the
    phase py * sw + px = order[k] stacked at position k, zero where that pixel is outside x
    and in the `base` values before and all after: the phase images of `Phases`, every value
    written once, one work item per (phase, channel) row. With sh = sw = 1 and base 0, x on a
    grid of row width wq (`_grid`). Flat indices and whole-pixel slices (N values) vectorise
    best."""
    c_, h, w, n_ = x.shape
    src, dst, length = x.reshape(-1), buf.reshape(-1), buf.shape[1]
    zero = buf.dtype.type(0)
    for row in prange(sh * sw * c_):
        k = row // c_
        c = row - k * c_
        p = order[k]
        py = p // sw
        px = p - py * sw
        o = row * length
        dst[o:o + base] = zero
        for r in range(hp):
            iy = py + r * sh
            for q in range(wq):
                ix = px + q * sw
                e = o + base + (r * wq + q) * n_
                if iy < h and ix < w:
                    s = ((c * h + iy) * w + ix) * n_
                    dst[e:e + n_] = src[s:s + n_]
                else:
                    dst[e:e + n_] = zero
        dst[o + base + hp * wq * n_:o + length] = zero


@njit(parallel=True, cache=True)
def _merge_cpu(buf, x, sh, sw, wq, order):
    """The inverse of _split_cpu (base 0, the same `order`) on the pixels of x (C, H, W, N),
    which it fills: phase images back into one image, one work item per image row (c, iy)."""
    c_, h, w, n_ = x.shape
    src, dst, length = buf.reshape(-1), x.reshape(-1), buf.shape[1]
    at = np.empty(order.size, np.int64)   # the position of each phase
    for k in range(order.size):
        at[order[k]] = k
    for item in prange(c_ * h):
        c = item // h
        iy = item - c * h
        r = iy // sh
        py = iy - r * sh
        for ix in range(w):
            q = ix // sw
            s = (at[py * sw + ix - q * sw] * c_ + c) * length + (r * wq + q) * n_
            d = (item * w + ix) * n_
            dst[d:d + n_] = src[s:s + n_]


@njit(parallel=True, cache=True)
def _to_taps_cpu(w, order, out):
    """out[o, p * Ci + c] = w[o, c, order[p]] for w (Co, Ci, T): each output channel's weights
    from (channel, tap) to (tap in `order`, channel), one work item per output channel (a
    Ci x T block, at most 32 KB here, that stays in cache)."""
    co, ci, _ = w.shape
    for o in prange(co):
        for p in range(order.size):
            t = order[p]
            for c in range(ci):
                out[o, p * ci + c] = w[o, c, t]


@njit(parallel=True, cache=True)
def _from_taps_cpu(a, pos, out):
    """The inverse: out[o, c, t] = a[o, pos[t] * Ci + c], pos the inverse of the order."""
    co, ci, taps = out.shape
    for o in prange(co):
        for c in range(ci):
            for t in range(taps):
                out[o, c, t] = a[o, pos[t] * ci + c]


@functools.lru_cache(maxsize=64)
def _order(plan, kw):
    """The taps (i * kw + j) in the order the plan's GEMMs take them (read-only)."""
    order = np.array([i * kw + j for _, _, _, taps in plan for i, j in taps], np.int64)
    order.flags.writeable = False
    return order


@functools.lru_cache(maxsize=64)
def _positions(plan, kw):
    """Where each tap is in `_order` (read-only)."""
    pos = np.argsort(_order(plan, kw))
    pos.flags.writeable = False
    return pos


class TapWeights:
    """A weight (Co, Ci, kh, kw) as the GEMMs read it: `a` is (Co, kh * kw * Ci), each row the
    output channel's weights in plan order, tap by tap, Ci apiece, so the taps of one GEMM are
    `k[g]` consecutive columns from `offset[g]`: conv2d reads that block as is (Co x K), the
    input gradient as its transpose, with no copy either way. Made in one parallel pass over
    the weight (`tap_rows`); a layer's Function hands it from its forward to its backward."""

    __slots__ = ("a", "offset", "k", "plan")

    def __init__(self, a, offset, k, plan):
        self.a, self.offset, self.k, self.plan = a, offset, k, plan


@functools.lru_cache(maxsize=256)
def _offsets(plan, ci):
    """(offset, k): where each of the plan's GEMMs starts in a `TapWeights` row, and how many
    columns it takes there."""
    k = tuple(len(taps) * ci for _, _, _, taps in plan)
    return tuple(int(o) for o in np.cumsum((0,) + k)[:-1]), k


def _tap_rows(w, plan):
    co, ci, kh, kw = w.shape
    a = np.empty((co, kh * kw * ci), np.float32)
    _to_taps_cpu(_f32(w).reshape(co, ci, kh * kw), _order(plan, kw), a)
    return TapWeights(a, *_offsets(plan, ci), plan)


def _rows_for(rows, w, plan):
    """`rows` (made by tap_rows) checked against this convolution's plan, or made now: weights
    laid out for another stride or padding would send the GEMMs outside their buffers."""
    if rows is None:
        return _tap_rows(w, plan)
    if rows.plan != plan:
        raise ValueError("tap_rows were made for another stride or padding than this "
                         "convolution's")
    return rows


def tap_rows(w, sh, sw, ph, pw):
    """The weights w (Co, Ci, kh, kw) as conv2d and conv2d_input_grad read them (a
    `TapWeights`): made once per forward pass, a layer's Function hands them to its
    backward's."""
    return _tap_rows(w, _plan(*w.shape[2:], sh, sw, ph, pw))


def conv2d(x, w, sh, sw, ph, pw, oh, ow, rows=None):
    """x (Ci, H, W, N) or its `split`, w (Co, Ci, kh, kw) -> out (Co, oh, ow, N); `rows` is
    tap_rows(w, ...) when the caller has it."""
    co, ci, kh, kw = w.shape
    xs = split(x, sh, sw, kh, kw, ph, pw, oh, ow)
    wq, n, ld = xs.wq, xs.n, xs.buf.shape[1]
    plan = _plan(kh, kw, sh, sw, ph, pw)
    rows = _rows_for(rows, w, plan)
    pieces = _pieces(plan, oh, ow, xs.hp, xs.wp, wq)
    fresh = bool(pieces) and pieces[0][1:] == (0, oh * wq)  # the first GEMM writes all
    out = (np.empty if fresh else np.zeros)((co, oh * wq * n), np.float32)
    x_ptr, o_ptr = xs.buf.ctypes.data, out.ctypes.data
    w_ptr, lda = rows.a.ctypes.data, rows.a.shape[1]

    def chunk(q0, q1):  # output pixels q0 .. q1-1 (row-major over oh x wq)
        _Calls.placed(_conv_calls(plan, oh, ow, xs.hp, xs.wp, wq, n, ci, co, ld, xs.base, lda,
                                  fresh, q0, q1), w_ptr, x_ptr, o_ptr).run()

    with _timed(2.0 * co * ci * kh * kw * oh * ow * n):
        POOL.run(oh * wq, chunk)
    return _compact(out, co, oh, wq, ow, n)


# A chunk's GEMMs depend on the shapes and its pixels alone, not on the arrays: each kind is
# made once per geometry and chunk as a `_Calls` table with A, B and C at address 0, and a
# call adds the arrays' addresses (`_Calls.placed`). Their Python loops would otherwise run in
# every call (about 1,000 GEMMs in a step of the half-width DCGAN, most of them one image row).

@functools.lru_cache(maxsize=1024)
def _conv_calls(plan, oh, ow, hp, wp, wq, n, ci, co, ld, base, lda, fresh, q0, q1):
    """conv2d's GEMMs over output pixels q0 .. q1-1: A the tap rows, B the phase images, C the
    output (`ld` and `base` those of the `Phases`, `lda` the tap rows' row length); the first
    writes (beta 0) when `fresh`."""
    pieces = _pieces(plan, oh, ow, hp, wp, wq)
    offset, k = _offsets(plan, ci)
    calls = _Calls()
    for c, (g, u0, u1) in enumerate(pieces):
        a, b = max(q0, u0), min(q1, u1)
        if a >= b:
            continue
        dy, dx, p0, _ = plan[g]
        calls.add(False, False, co, (b - a) * n, k[g], 4 * offset[g], lda,
                  4 * (p0 * ci * ld + base + (a + dy * wq + dx) * n), ld,
                  0.0 if fresh and c == 0 else 1.0, 4 * a * n, oh * wq * n)
    return calls.table()


@functools.lru_cache(maxsize=1024)
def _input_grad_calls(plan, oh, ow, hp, wp, wq, n, ci, co, lda, fresh, q0, q1):
    """conv2d_input_grad's GEMMs into phase pixels q0 .. q1-1: A the tap rows, B the output
    gradient on its grid, C the stacked phase buffer (rows hp * wq * n long); the first
    writes (beta 0) when `fresh`."""
    pieces = _pieces(plan, oh, ow, hp, wp, wq)
    offset, k = _offsets(plan, ci)
    ld = hp * wq * n
    calls = _Calls()
    for c, (g, u0, u1) in enumerate(pieces):
        dy, dx, p0, _ = plan[g]
        shift = dy * wq + dx
        a, b = max(q0, u0 + shift), min(q1, u1 + shift)
        if a < b:
            calls.add(True, False, k[g], (b - a) * n, co, 4 * offset[g], lda,
                      4 * (a - shift) * n, oh * wq * n, 0.0 if fresh and c == 0 else 1.0,
                      4 * (p0 * ci * ld + a * n), ld)
    return calls.table()


@functools.lru_cache(maxsize=1024)
def _weight_grad_calls(plan, oh, ow, hp, wp, wq, n, ci, co, ld, base, q0, q1):
    """conv2d_weight_grad's GEMMs over output pixels q0 .. q1-1, and the (offset, k) column
    blocks none of them reaches: A the output gradient on its grid, B the phase images, C the
    chunk's (Co, taps) sums (each block's first GEMM writes, beta 0; the others add)."""
    pieces = _pieces(plan, oh, ow, hp, wp, wq)
    offset, k = _offsets(plan, ci)
    taps = sum(k)
    calls = _Calls()
    started = set()
    for g, u0, u1 in pieces:
        a, b = max(q0, u0), min(q1, u1)
        if a < b:
            dy, dx, p0, _ = plan[g]
            calls.add(False, True, co, k[g], (b - a) * n, 4 * a * n, oh * wq * n,
                      4 * (p0 * ci * ld + base + (a + dy * wq + dx) * n), ld,
                      1.0 if g in started else 0.0, 4 * offset[g], taps)
            started.add(g)
    idle = tuple((offset[g], k[g]) for g in range(len(plan)) if g not in started)
    return calls.table(), idle


def _blas_width() -> int:
    """OpenBLAS's threads when the convolutions leave their GEMMs to them (the `blas` family:
    the pool one thread wide, one chunk), else 1."""
    if POOL.width > 1 or POOL.max_chunks > 1 or _GET_THREADS is None:
        return 1
    return max(1, _GET_THREADS())


@contextlib.contextmanager
def _blas_threads(n):
    """OpenBLAS at n threads for the duration, then as it was."""
    before = _GET_THREADS()
    _SET_THREADS(n)
    try:
        yield
    finally:
        _SET_THREADS(before)


@functools.lru_cache(maxsize=256)
def _weight_grad_apart(plan, oh, ow, hp, wp, wq, n, ci, co, ld, base, width):
    """The weight gradient's GEMMs over all its pixels (`_weight_grad_calls`) dealt out to
    `width` threads, each to run its share with OpenBLAS single-threaded: ((table, ...), idle).
    The GEMMs that sum into one block of the result stay together, in their order, so every
    block is summed as OpenBLAS's own threads sum it, over the whole of its pixels; the blocks
    go, the largest first, to the thread with the least work so far. OpenBLAS's threads would
    instead share out each GEMM, and the weight gradient's are thin (64-256 columns, over
    17,000 pixels in a 64x64 DCGAN's 32 x 32 layers): each thread then packs pieces too small
    to keep its multiply-adds busy. A fixed deal: the same geometry, the same tables."""
    table, idle = _weight_grad_calls(plan, oh, ow, hp, wp, wq, n, ci, co, ld, base, 0,
                                     oh * wq)
    blocks = {}                                  # C's offset -> its GEMMs' rows, in order
    for i, row in enumerate(table):
        blocks.setdefault(int(row[10]), []).append(i)
    flops = table[:, 2] * table[:, 3] * table[:, 4]       # m * n * k of each GEMM
    work = [0] * width
    shares = [[] for _ in range(width)]
    for cost, rows in sorted(((int(flops[r].sum()), r) for r in blocks.values()),
                             key=lambda b: -b[0]):
        t = work.index(min(work))
        shares[t].extend(rows)
        work[t] += cost
    tables = []
    for rows in shares:
        if rows:
            part = table[sorted(rows)]
            part.flags.writeable = False
            tables.append(part)
    return tuple(tables), idle


def conv2d_input_grad(gy, w, sh, sw, ph, pw, h, wd, rows=None):
    """The adjoint of conv2d in x (= the transposed convolution): gy (Co, oh, ow, N) or its
    `on_grid`, w (Co, Ci, kh, kw) -> gx (Ci, h, wd, N); `rows` as conv2d's."""
    co, oh, ow, n = gy.shape
    _, ci, kh, kw = w.shape
    hp, wp = _phase_size(h, sh), _phase_size(wd, sw)
    plan = _plan(kh, kw, sh, sw, ph, pw)
    wq, _, _ = _layout(plan, wp, ow)
    g_grid = _gridded(gy, wq)
    rows = _rows_for(rows, w, plan)
    pieces = _pieces(plan, oh, ow, hp, wp, wq)
    ld = hp * wq * n                     # phase images without margins: writes outside are
    # padding, and are left out. When the first GEMM covers every phase and pixel (the centre
    # shift of a 'same' convolution or a DCGAN's 4x4 stride-2 one) it writes with beta = 0,
    # and the buffer need not be zeroed first
    fresh = (bool(pieces) and pieces[0][1:] == (0, hp * wq)         # all pixels, no shift,
             and plan[pieces[0][0]][:3] == (0, 0, 0)                  # from the first phase
             and rows.k[pieces[0][0]] == sh * sw * ci)                # through the last
    gs = (np.empty if fresh else np.zeros)((sh * sw * ci, ld), np.float32)
    g_ptr, s_ptr = g_grid.ctypes.data, gs.ctypes.data
    w_ptr, lda = rows.a.ctypes.data, rows.a.shape[1]

    def chunk(q0, q1):  # phase pixels q0 .. q1-1: each written by this chunk alone
        _Calls.placed(_input_grad_calls(plan, oh, ow, hp, wp, wq, n, ci, co, lda, fresh, q0,
                                        q1), w_ptr, g_ptr, s_ptr).run()

    with _timed(2.0 * co * ci * kh * kw * oh * ow * n):
        POOL.run(hp * wq, chunk)
    if sh == sw == 1:
        return _compact(gs, ci, hp, wq, wd, n)
    gx = np.empty((ci, h, wd, n), np.float32)
    _merge_cpu(gs, gx, sh, sw, wq, _order_array(kh, kw, sh, sw, ph, pw))
    return gx


def conv2d_weight_grad(x, gy, sh, sw, ph, pw, kh, kw):
    """d<conv2d(x, w), gy>/dw: x (Ci, H, W, N) or its `split`, gy (Co, oh, ow, N) or its
    `on_grid` -> (Co, Ci, kh, kw). The sums over output pixels are cut into the pool's chunks,
    each summing into its own buffer; the buffers are then added in a fixed order."""
    co, oh, ow, n = gy.shape
    xs = split(x, sh, sw, kh, kw, ph, pw, oh, ow)
    ci, wq, ld = xs.c, xs.wq, xs.buf.shape[1]
    plan = _plan(kh, kw, sh, sw, ph, pw)
    g_grid = _gridded(gy, wq)
    taps = kh * kw * ci
    x_ptr, g_ptr = xs.buf.ctypes.data, g_grid.ctypes.data

    def chunk(q0, q1):
        i = bounds.index(q0)
        table, idle = _weight_grad_calls(plan, oh, ow, xs.hp, xs.wp, wq, n, ci, co, ld,
                                         xs.base, q0, q1)
        for o, k in idle:  # shifts that only meet padding (in this chunk) add nothing
            parts[i, :, o:o + k] = 0
        _Calls.placed(table, g_ptr, x_ptr, p_ptr + 4 * i * co * taps).run()

    with _timed(2.0 * co * ci * kh * kw * oh * ow * n):
        # chunks (one buffer each) cut only now: the timer's start may switch the thread
        # family, and with it how the pool cuts the pixels
        bounds = POOL.bounds(oh * wq)
        parts = np.empty((len(bounds) - 1, co, taps), np.float32)  # as TapWeights.a, per chunk
        p_ptr = parts.ctypes.data
        width = _blas_width() if len(bounds) == 2 else 1
        if width > 1:   # OpenBLAS's threads, one chunk: its GEMMs shared out among threads
            tables, idle = _weight_grad_apart(plan, oh, ow, xs.hp, xs.wp, wq, n, ci, co, ld,
                                              xs.base, width)
            for o, k in idle:
                parts[0, :, o:o + k] = 0
            with _blas_threads(1):
                POOL.run_each([_Calls.placed(t, g_ptr, x_ptr, p_ptr).run for t in tables])
        else:
            POOL.run(oh * wq, chunk, bounds)
    total = parts[0] if len(parts) == 1 else parts.sum(axis=0)
    gw = np.empty((co, ci, kh * kw), np.float32)
    _from_taps_cpu(total, _positions(plan, kw), gw)
    return gw.reshape(co, ci, kh, kw)
