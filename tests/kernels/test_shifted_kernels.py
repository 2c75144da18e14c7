"""Shifted-GEMM convolution (kernels/shifted.py) against the naive float64 loops.

Images are (C, H, W, N) as in the kernels; the references are tests/functional/test_conv.py's
loops written from the definitions, on (N, C, H, W). Tolerance: a float32 sum of K products
is within K * 2^-24 * sum(|products|) of the exact one (Higham, Accuracy and Stability, 3.1), so
each element is checked against that bound, computed with the same loops on |x| and |w|.
"""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan.kernels import shifted as S
from minigan.kernels import threads as T
from tests.functional.test_conv import conv2d_ref, conv2d_vjp_ref, conv_out

pytestmark = pytest.mark.skipif(not S.available(np.float32),
                                reason="no CBLAS sgemm found in NumPy's BLAS")

U = 2.0 ** -24


@st.composite
def geometries(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh)), draw(st.integers(0, kw))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    n, ci, co = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return n, ci, co, (h, w), (kh, kw), (sh, sw), (ph, pw)


def _chwn(a):
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0))


def _nchw(a):
    return a.transpose(3, 0, 1, 2)


def _check(got, exact, bound, k, what):
    err = np.abs(got - exact)
    limit = k * U * bound + 1e-30
    assert got.dtype == np.float32
    assert np.all(err <= limit), f"{what}: worst error {err.max()} > bound {limit.max()}"


def _data(g, seed):
    n, ci, co, hw, k, s, p = g
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((n, ci, *hw)).astype(np.float32)
    w = gen.standard_normal((co, ci, *k)).astype(np.float32)
    oh, ow = (conv_out(a, b, c, d) for a, b, c, d in zip(hw, k, s, p))
    gy = gen.standard_normal((n, co, oh, ow)).astype(np.float32)
    return x, w, gy, (oh, ow)


@contextlib.contextmanager
def layout(waste):
    """Rows with zero gap columns always (waste 0: every shift one GEMM over its rows) or only
    where no gap is needed (a huge waste: shifts with dx != 0 go row by row)."""
    old, S.GAP_WASTE = S.GAP_WASTE, waste
    try:
        yield
    finally:
        S.GAP_WASTE = old


LAYOUTS = pytest.mark.parametrize("waste", [0, 10 ** 9], ids=["gap-rows", "row-by-row"])


@LAYOUTS
@settings(max_examples=60, deadline=None)
@given(g=geometries())
def test_forward_against_naive_loops(waste, g):
    n, ci, co, hw, k, s, p = g
    x, w, _, (oh, ow) = _data(g, 0)
    with layout(waste):
        got = _nchw(S.conv2d(_chwn(x), w, *s, *p, oh, ow))
    exact = conv2d_ref(x.astype(np.float64), w.astype(np.float64), s, p)
    bound = conv2d_ref(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), s, p)
    _check(got, exact, bound, ci * k[0] * k[1], f"conv2d {g}")


@LAYOUTS
@settings(max_examples=60, deadline=None)
@given(g=geometries())
def test_input_and_weight_gradients_against_naive_loops(waste, g):
    n, ci, co, hw, k, s, p = g
    x, w, gy, (oh, ow) = _data(g, 1)
    with layout(waste):
        gx = _nchw(S.conv2d_input_grad(_chwn(gy), w, *s, *p, *hw))
        gw = S.conv2d_weight_grad(_chwn(x), _chwn(gy), *s, *p, *k)
    f64 = [a.astype(np.float64) for a in (x, w, gy)]
    gx_ref, gw_ref = conv2d_vjp_ref(*f64, s, p)
    gx_abs, gw_abs = conv2d_vjp_ref(*[np.abs(a) for a in f64], s, p)
    _check(gx, gx_ref, gx_abs, co * k[0] * k[1], f"input grad {g}")
    _check(gw, gw_ref, gw_abs, n * oh * ow, f"weight grad {g}")


def test_dcgan_layers_and_the_adjoint_identity():
    """The DCGAN's shapes (5x5 kernels, stride 1 and 2 with padding 2) at batch 8; the input
    gradient is the adjoint: <conv(x), gy> == <x, conv^T(gy)> to float32 rounding."""
    for ci, co, h, s in ((32, 16, 7, 1), (16, 32, 14, 2)):
        g = (8, ci, co, (h, h), (5, 5), (s, s), (2, 2))
        x, w, gy, (oh, ow) = _data(g, 3)
        y = S.conv2d(_chwn(x), w, s, s, 2, 2, oh, ow)
        exact = conv2d_ref(x.astype(np.float64), w.astype(np.float64), (s, s), (2, 2))
        np.testing.assert_allclose(_nchw(y), exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
        gx = S.conv2d_input_grad(_chwn(gy), w, s, s, 2, 2, h, h)
        lhs = np.vdot(_nchw(y).astype(np.float64), gy.astype(np.float64))
        rhs = np.vdot(x.astype(np.float64), _nchw(gx).astype(np.float64))
        assert abs(lhs - rhs) <= 1e-5 * np.sqrt(np.vdot(exact, exact) * np.vdot(gy, gy))


@LAYOUTS
def test_gemm_tables_made_once_serve_other_arrays(waste):
    """A chunk's GEMMs are made once per geometry with the arrays at address 0, and each call
    places them at its own arrays (`_Calls.placed`): calls of one geometry on fresh arrays,
    with another geometry's between them, all match the naive loops, and the second round
    finds every table made."""
    geoms = [(2, 3, 4, (7, 7), (5, 5), (2, 2), (2, 2)), (3, 2, 3, (8, 6), (4, 4), (2, 2), (1, 1))]
    kinds = (S._conv_calls, S._input_grad_calls, S._weight_grad_calls)
    with layout(waste):
        for kind in kinds:
            kind.cache_clear()
        for round_ in range(2):
            before = [kind.cache_info().misses for kind in kinds]
            for j, g in enumerate(geoms):
                n, ci, co, hw, k, s, p = g
                x, w, gy, (oh, ow) = _data(g, 10 * round_ + j)
                y = _nchw(S.conv2d(_chwn(x), w, *s, *p, oh, ow))
                gx = _nchw(S.conv2d_input_grad(_chwn(gy), w, *s, *p, *hw))
                gw = S.conv2d_weight_grad(_chwn(x), _chwn(gy), *s, *p, *k)
                f64 = [a.astype(np.float64) for a in (x, w, gy)]
                a64 = [np.abs(a) for a in f64]
                _check(y, conv2d_ref(*f64[:2], s, p), conv2d_ref(*a64[:2], s, p),
                       ci * k[0] * k[1], f"conv2d {g}, round {round_}")
                for got, exact, bound, kk, what in zip(
                        (gx, gw), conv2d_vjp_ref(*f64, s, p), conv2d_vjp_ref(*a64, s, p),
                        (co * k[0] * k[1], n * oh * ow), ("input grad", "weight grad")):
                    _check(got, exact, bound, kk, f"{what} {g}, round {round_}")
            made = [kind.cache_info().misses - b for kind, b in zip(kinds, before)]
            assert (min(made) > 0) if round_ == 0 else (made == [0, 0, 0]), made


def test_float64_is_left_to_im2col():
    assert not S.available(np.float64)


class _Switching:
    """A thread controller whose start() switches the pool from whole GEMMs to chunks, as the
    default's load detection does when another process starts (kernels/threads.py)."""

    def __init__(self, max_chunks):
        self.max_chunks = max_chunks

    def start(self):
        S.POOL.max_chunks = self.max_chunks
        return 0.0

    def done(self, t0, flops):
        pass


@pytest.mark.parametrize("before, after", [(1, 8), (8, 1)])
def test_weight_gradient_survives_a_thread_family_switch_at_its_start(monkeypatch, before,
                                                                      after):
    """A switch of the thread family as a call starts changes how the pool cuts the pixels;
    the weight gradient, whose per-chunk buffers follow that cut, must follow it too (it
    once cut before the switch and failed with "... is not in list")."""
    g = (4, 16, 16, (32, 32), (4, 4), (2, 2), (1, 1))      # 16 x 17 output pixels: 8 chunks
    x, w, gy, (oh, ow) = _data(g, 5)
    monkeypatch.setattr(S.POOL, "max_chunks", before)
    monkeypatch.setattr(S, "THREADS", _Switching(after))
    gw = S.conv2d_weight_grad(_chwn(x), _chwn(gy), 2, 2, 1, 1, 4, 4)
    wq = S._layout(S._plan(4, 4, 2, 2, 1, 1), 16, ow)[0]
    cuts = [len(T.RowPool(max_chunks=m).bounds(oh * wq)) - 1 for m in (before, after)]
    assert cuts[0] != cuts[1] and S.POOL.max_chunks == after   # the switch changed the cut
    f64 = [a.astype(np.float64) for a in (x, w, gy)]
    _, gw_ref = conv2d_vjp_ref(*f64, (2, 2), (1, 1))
    _, gw_abs = conv2d_vjp_ref(*[np.abs(a) for a in f64], (2, 2), (1, 1))
    _check(gw, gw_ref, gw_abs, 4 * oh * ow, "weight grad across a switch")


def test_the_phase_order_makes_fewer_gemms_and_every_tap_once():
    """`phase_order` stacks the phases so that those sharing a shift lie next to one another:
    never more GEMMs than the natural order, every tap in exactly one GEMM at the position of
    its own phase, and for the DCGANs' stride-2 layers fewer GEMMs (5x5, padding 2: 9, not 11;
    4x4, padding 1: 10, not 11). The natural-order count is made here from the definitions."""
    def natural_gemms(kh, kw, sh, sw, ph, pw):
        shifts = {}
        for i in range(kh):
            for j in range(kw):
                py, px = (i - ph) % sh, (j - pw) % sw
                key = ((i - ph - py) // sh, (j - pw - px) // sw)
                shifts.setdefault(key, []).append(py * sw + px)
        return sum(1 + sum(b != a + 1 for a, b in zip(sorted(p), sorted(p)[1:]))
                   for p in shifts.values())

    for kh, kw, sh, sw in ((5, 5, 2, 2), (4, 4, 2, 2), (3, 3, 2, 2), (5, 3, 2, 1), (3, 3, 1, 2),
                           (5, 5, 1, 1), (3, 3, 3, 3)):
        for ph in range(kh):
            for pw in range(kw):
                args = (kh, kw, sh, sw, ph, pw)
                order, plan = S.phase_order(*args), S._plan(*args)
                assert sorted(order) == list(range(sh * sw))
                assert len(plan) <= natural_gemms(*args), args
                taps = [(i, j) for _, _, _, t in plan for i, j in t]
                assert sorted(taps) == [(i, j) for i in range(kh) for j in range(kw)]
                for dy, dx, p0, t in plan:
                    for k, (i, j) in enumerate(t):   # tap at position p0 + k reads its phase
                        py, px = (i - ph) % sh, (j - pw) % sw
                        assert order[p0 + k] == py * sw + px
                        assert ((i - ph - py) // sh, (j - pw - px) // sw) == (dy, dx)
    assert (len(S._plan(5, 5, 2, 2, 2, 2)), natural_gemms(5, 5, 2, 2, 2, 2)) == (9, 11)
    assert (len(S._plan(4, 4, 2, 2, 1, 1)), natural_gemms(4, 4, 2, 2, 1, 1)) == (10, 11)
