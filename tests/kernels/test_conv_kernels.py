"""im2col and col2im against plain NumPy, and col2im as the exact adjoint of im2col.

Images are (C, H, W, N); column matrices (C*kh*kw, oh*ow*N) (see kernels/conv.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan import backend
from minigan.kernels import conv as K
from minigan.kernels._dispatch import PARALLEL_MIN_SIZE
from minigan.testing import assert_close, devices


def im2col_np(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """Row (c, i, j), column (oy, ox, n) = padded x[c, oy*sh + i, ox*sw + j, n]."""
    c, n = x.shape[0], x.shape[3]
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    col = np.zeros((c, kh, kw, oh, ow, n), x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw][:, :oh, :ow]
            col[:, i, j, :patch.shape[1], :patch.shape[2]] = patch
    return col.reshape(c * kh * kw, oh * ow * n)


def col2im_np(col, shape, kh, kw, sh, sw, ph, pw, oh, ow):
    """Every column entry added back onto its pixel; entries on the padding are dropped."""
    c, h, w, n = shape
    xp = np.zeros((c, h + 2 * ph + sh * oh + kh, w + 2 * pw + sw * ow + kw, n), col.dtype)
    col = col.reshape(c, kh, kw, oh, ow, n)
    for i in range(kh):
        for j in range(kw):
            xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw] += col[:, i, j]
    return xp[:, ph:ph + h, pw:pw + w]


@st.composite
def geometries(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    shape = (draw(st.integers(1, 3)), h, w, draw(st.integers(1, 3)))  # (C, H, W, N)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return shape, (kh, kw, sh, sw, ph, pw, oh, ow)


@pytest.mark.parametrize("device", devices())
@settings(max_examples=40, deadline=None)
@given(geometries(), st.sampled_from([np.float32, np.float64]))
def test_im2col_col2im_against_numpy(device, geometry, dtype):
    shape, g = geometry
    gen = np.random.default_rng(0)
    x = gen.standard_normal(shape).astype(dtype)
    col = K.im2col(backend.to_device(x, device), *g)
    assert col.dtype == dtype
    assert_close(col, im2col_np(x, *g), 0, 0, f"im2col {shape} {g}")
    c = gen.standard_normal(col.shape).astype(dtype)
    back = K.col2im(backend.to_device(c, device), shape, *g)
    assert back.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14  # sums of up to kh*kw terms
    assert_close(back, col2im_np(c, shape, *g), tol, tol, f"col2im {shape} {g}")


@settings(max_examples=30, deadline=None)
@given(geometries())
def test_col2im_is_the_adjoint_of_im2col(geometry):
    """<im2col(x), c> == <x, col2im(c)> for every x and c (float64, to rounding)."""
    shape, g = geometry
    gen = np.random.default_rng(1)
    x, c = gen.standard_normal(shape), gen.standard_normal(K.im2col(np.zeros(shape), *g).shape)
    lhs, rhs = np.vdot(K.im2col(x, *g), c), np.vdot(x, K.col2im(c, shape, *g))
    assert_close(lhs, rhs, 1e-12, 1e-12, f"adjoint identity {shape} {g}")


def test_non_contiguous_input():
    x = np.random.default_rng(2).standard_normal((2, 5, 4, 3)).transpose(0, 2, 1, 3)  # (2,4,5,3)
    g = (3, 3, 1, 2, 1, 1, 4, 3)
    assert_close(K.im2col(x, *g), im2col_np(np.ascontiguousarray(x), *g), 0, 0, "im2col view")


@pytest.mark.parametrize("device", devices())
def test_large_arrays_take_the_parallel_path(device):
    """Above PARALLEL_MIN_SIZE the kernels run on the thread pool: same results."""
    shape, g = (8, 32, 32, 4), (4, 4, 2, 2, 1, 1, 16, 16)
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    assert x.size >= PARALLEL_MIN_SIZE
    col = K.im2col(backend.to_device(x, device), *g)
    assert_close(col, im2col_np(x, *g), 0, 0, "im2col, parallel")
    back = K.col2im(col, shape, *g)
    assert_close(back, col2im_np(backend.to_numpy(col), shape, *g), 1e-6, 1e-6,
                 "col2im, parallel")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (1, 1), (5, 3), (65, 33), (64, 1000), (130, 70),
                                   (1000, 64), (300, 129), (130, 300),
                                   (200, 1400)], ids=str)
def test_transpose2d_is_an_exact_copy_of_the_transpose(device, shape):
    """Tall arrays and wide ones of 128 rows or more go through the tiled kernel (64 x 64
    tiles, whole and ragged, serial and parallel), small wide ones through NumPy."""
    a = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    t = K.transpose2d(backend.to_device(a, device))
    assert t.shape == shape[::-1] and t.flags.c_contiguous
    assert_close(t, a.T, 0, 0, f"transpose {shape}")
