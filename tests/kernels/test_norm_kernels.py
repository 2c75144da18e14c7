"""The batchnorm kernels against NumPy two-pass statistics and the closed-form backward."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan import backend
from minigan.kernels import norm as K
from minigan.kernels._dispatch import PARALLEL_MIN_SIZE
from minigan.testing import assert_close, devices


def forward_np(x, gamma, beta, eps):
    """Two passes in float64: the mean, then the mean squared deviation."""
    x = x.astype(np.float64)
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
    invstd = 1 / np.sqrt(var + eps)
    y = (x - mean[None, :, None]) * (gamma * invstd)[None, :, None] + beta[None, :, None]
    return y, mean, invstd


def backward_np(x, gy, gamma, eps):
    _, mean, invstd = forward_np(x, gamma, np.zeros_like(gamma), eps)
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    m = x.shape[0] * x.shape[2]
    gbeta, ggamma = gy.sum(axis=(0, 2)), (gy * xhat).sum(axis=(0, 2))
    gx = (gamma * invstd)[None, :, None] / m * (m * gy - gbeta[None, :, None]
                                                - xhat * ggamma[None, :, None])
    return gx, ggamma, gbeta


TOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("device", devices())
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 5),
       st.sampled_from([np.float32, np.float64]), st.sampled_from([1e-5, 0.1]))
def test_forward_and_backward_against_numpy(device, n, c, length, dtype, eps):
    if n * length < 2:
        n = 2
    gen = np.random.default_rng(0)
    x = (gen.standard_normal((n, c, length)) * 2 + 3).astype(dtype)
    gamma, beta = gen.standard_normal(c).astype(dtype), gen.standard_normal(c).astype(dtype)
    gy = gen.standard_normal(x.shape).astype(dtype)
    d = [backend.to_device(a, device) for a in (x, gamma, beta, gy)]
    y, mean, invstd = K.batch_norm_forward(d[0], d[1], d[2], eps)
    assert y.dtype == mean.dtype == invstd.dtype == dtype
    for got, want, what in zip((y, mean, invstd), forward_np(x, gamma, beta, eps),
                               ("y", "mean", "invstd")):
        assert_close(got, want, TOL[dtype], TOL[dtype], f"batch_norm_forward {what} {x.shape}")
    grads = K.batch_norm_backward(d[0], d[3], mean, invstd, d[1])
    for got, want, what in zip(grads, backward_np(x, gy, gamma, eps), ("gx", "ggamma", "gbeta")):
        tol = TOL[dtype] * 10  # sums over the batch of O(1) products
        assert_close(got, want, tol, tol, f"batch_norm_backward {what} {x.shape}")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("shape", [(4, 3, 50), (1, 5, 3000), (300, 7, 1)], ids=str)
def test_fused_leaky_relu_against_numpy(device, dtype, slope, shape):
    """batch_norm_forward(..., slope) is leaky_relu(batchnorm(x)); batch_norm_backward with its
    output z is batchnorm's backward at the ReLU's input gradient (gz where the batchnorm's
    output is positive, slope * gz elsewhere), against float64 NumPy. The data keep every
    normalised value away from 0, where the ReLU's kink makes float32 and float64 disagree."""
    gen = np.random.default_rng(3)
    x = (gen.standard_normal(shape) * 2 + 3).astype(dtype)
    gamma = gen.uniform(0.5, 2, shape[1]).astype(dtype)
    beta = gen.standard_normal(shape[1]).astype(dtype)
    gz = gen.standard_normal(shape).astype(dtype)
    for _ in range(5):  # nudge the few values at the kink off it (moving the statistics a bit)
        y_ref, mean_ref, invstd_ref = forward_np(x, gamma, beta, 1e-5)
        near = np.abs(y_ref) < 1e-3
        x = (x + near * 5e-3 / (gamma * invstd_ref)[None, :, None]).astype(dtype)
    assert not near.any() and (y_ref < 0).mean() > 0.2
    d = [backend.to_device(a, device) for a in (x, gamma, beta, gz)]
    z, mean, invstd = K.batch_norm_forward(d[0], d[1], d[2], 1e-5, slope)
    z_ref = np.where(y_ref > 0, y_ref, slope * y_ref)
    tol = TOL[dtype] * 10
    for got, want, what in ((z, z_ref, "z"), (mean, mean_ref, "mean"),
                            (invstd, invstd_ref, "invstd")):
        assert_close(got, want, tol, tol, f"fused forward {what}, slope {slope}, {shape}")
    if slope == 0:
        assert (backend.to_numpy(z)[y_ref < 0] == 0).all()
    grads = K.batch_norm_backward(d[0], d[3], mean, invstd, d[1], z, slope)
    gy = np.where(y_ref > 0, gz, slope * gz.astype(np.float64))
    for got, want, what in zip(grads, backward_np(x.astype(np.float64), gy, gamma, 1e-5),
                               ("gx", "ggamma", "gbeta")):
        tol = TOL[dtype] * 100  # sums over the batch of O(1) products
        assert_close(got, want, tol, tol, f"fused backward {what}, slope {slope}, {shape}")


def test_two_pass_variance_survives_a_large_mean_in_float32():
    """mean 1e4, spread 1e-2: E[x^2] - E[x]^2 in float32 loses every digit; two passes do not."""
    gen = np.random.default_rng(1)
    x = (1e4 + 1e-2 * gen.standard_normal((64, 2, 16))).astype(np.float32)
    _, mean, invstd = K.batch_norm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32),
                                           0.0)
    _, mean_ref, invstd_ref = forward_np(x, np.ones(2), np.zeros(2), 0.0)
    assert_close(mean, mean_ref, 1e-6, 0, "mean")
    assert_close(invstd, invstd_ref, 1e-3, 0, "1/std with a mean 1e6 times the spread")


def test_non_contiguous_input_and_parallel_path():
    gen = np.random.default_rng(2)
    x = gen.standard_normal((16, 3, 1024))[:, :, ::2]  # a strided view
    assert not x.flags.c_contiguous
    gamma, beta = gen.standard_normal(3), gen.standard_normal(3)
    y, mean, invstd = K.batch_norm_forward(x, gamma, beta, 1e-5)
    for got, want in zip((y, mean, invstd), forward_np(x, gamma, beta, 1e-5)):
        assert_close(got, want, 1e-12, 1e-12, "strided input")
    big = gen.standard_normal((32, 4, 512))
    assert big.size >= PARALLEL_MIN_SIZE
    gy = gen.standard_normal(big.shape)
    y, mean, invstd = K.batch_norm_forward(big, np.ones(4), np.zeros(4), 1e-5)
    assert_close(y, forward_np(big, np.ones(4), np.zeros(4), 1e-5)[0], 1e-12, 1e-12, "parallel")
    gx = K.batch_norm_backward(big, gy, mean, invstd, np.ones(4))[0]
    assert_close(gx, backward_np(big, gy, np.ones(4), 1e-5)[0], 1e-10, 1e-12, "parallel grad")


# Contiguous (N, C) inputs (L == 1) take their own branch: work items of K._COLS channels each,
# read as contiguous rows of C. The sizes below need several work items and end in a partial one
# (700 = 512 + 188, 1300 = 2 * 512 + 276); every channel gets its own mean, spread, gamma and
# beta, so a work item reading or writing another item's channels cannot pass by accident.
WIDE = [(8, 700), (32, 1300)]  # the second is above PARALLEL_MIN_SIZE: the threaded path


def wide_reference(x, gamma, beta, gy, eps):
    """Training-mode batchnorm of a (N, C) float64 batch from the textbook formulas: mean,
    biased variance, xhat = (x - mean) / sqrt(var + eps), y = gamma xhat + beta, and the
    backward gx = gamma invstd (gy - mean(gy) - xhat mean(gy xhat)), ggamma = sum(gy xhat),
    gbeta = sum(gy). Returns y, mean, invstd, gx, ggamma, gbeta."""
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    gx = gamma * invstd * (gy - gy.mean(axis=0) - xhat * (gy * xhat).mean(axis=0))
    return gamma * xhat + beta, mean, invstd, gx, (gy * xhat).sum(axis=0), gy.sum(axis=0)


def wide_batch(n, c, dtype, seed=0):
    """x (N, C) with channel means c * 0.1 + N(0, 1) and spreads in [0.5, 2]; gamma, beta, gy
    standard normal; all exactly representable in `dtype`."""
    gen = np.random.default_rng(seed)
    mean = np.arange(c) * 0.1 + gen.standard_normal(c)
    x = mean + gen.uniform(0.5, 2.0, c) * gen.standard_normal((n, c))
    return tuple(a.astype(dtype) for a in (x, gen.standard_normal(c), gen.standard_normal(c),
                                           gen.standard_normal((n, c))))


# Tolerances, (rtol, atol as a fraction of the largest expected value). Float64: sums of <= 32
# terms of size <= 2e2, errors near 1e-13. Float32: x, gamma, beta are float32 values (exact in
# the reference) and the kernels sum in float64, so y, mean, invstd and gbeta are rounded once
# (relative error 2^-24 ~ 6e-8). The backward, though, reads the mean back from its float32
# copy: an error up to 2^-24 |mean| <= 7.8e-6 in x - mean, i.e. up to 1.6e-5 in xhat (spread
# >= 0.5), which gx and ggamma carry amplified by |gamma| invstd (|xhat| + 1) <~ 30: 1e-3 of
# their largest value. Any indexing slip moves values by O(1).
WIDE_TOL = {np.float64: {"forward": (1e-10, 1e-12), "backward": (1e-10, 1e-12)},
            np.float32: {"forward": (1e-6, 1e-7), "backward": (1e-5, 1e-3)}}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,c", WIDE)
def test_wide_contiguous_rows_over_several_work_items(n, c, dtype):
    """The L == 1 branch on (N, C, 1) arrays with C over K._COLS: forward and backward of every
    channel against the float64 textbook formulas."""
    assert c > K._COLS and c % K._COLS, "the test needs several work items, the last partial"
    x, gamma, beta, gy = wide_batch(n, c, dtype)
    eps = 1e-5
    want = wide_reference(*(a.astype(np.float64) for a in (x, gamma, beta, gy)), eps)
    y, mean, invstd = K.batch_norm_forward(x[:, :, None], gamma, beta, eps)
    gx, ggamma, gbeta = K.batch_norm_backward(x[:, :, None], gy[:, :, None], mean, invstd, gamma)
    got = (y[:, :, 0], mean, invstd, gx[:, :, 0], ggamma, gbeta)
    kinds = ("forward",) * 3 + ("backward",) * 2 + ("forward",)
    for g, w, kind, what in zip(got, want, kinds, ("y", "mean", "invstd", "gx", "ggamma",
                                                   "gbeta")):
        assert g.dtype == dtype, f"batch_norm {what} on (N, C, 1) = {x.shape}: {g.dtype}"
        rtol, atol = WIDE_TOL[dtype][kind]
        assert_close(g, w, rtol, atol * np.abs(w).max(),
                     f"batch_norm {what} on contiguous (N, C, 1) = {(n, c, 1)}, {dtype.__name__}")
