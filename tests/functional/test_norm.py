"""batch_norm (training and evaluation) against float64 NumPy, first and second order.

The training-mode reference backward is the closed form, written independently of minigan's:
  dx = gamma * invstd / m * (m * gy - sum(gy) - xhat * sum(gy * xhat))
Its second derivative, where 1/std depends on x, is checked against central differences of it.
"""

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import backend, nn
from minigan import functional as F
from minigan.functional import norm as N
from minigan.functional.norm import BatchNormGrad
from minigan.kernels import norm as K
from minigan.testing import OpTest, assert_close
from tests.kernels.test_norm_kernels import WIDE, WIDE_TOL, wide_batch, wide_reference


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(a, x):
    return a.reshape((1, -1) + (1,) * (x.ndim - 2))


def bn_train_ref(x, gamma, beta, eps):
    mean = x.mean(_axes(x), keepdims=True)
    var = ((x - mean) ** 2).mean(_axes(x), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * _per_channel(gamma, x) + _per_channel(beta, x)


def bn_train_vjp_ref(x, gamma, gy, eps):
    """(dx, dgamma, dbeta) of training-mode batchnorm, in closed form."""
    ax = _axes(x)
    m = x.size // x.shape[1]
    mean = x.mean(ax, keepdims=True)
    invstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(ax, keepdims=True) + eps)
    xhat = (x - mean) * invstd
    dbeta, dgamma = gy.sum(ax), (gy * xhat).sum(ax)
    dx = _per_channel(gamma, x) * invstd / m * (
        m * gy - _per_channel(dbeta, x) - xhat * _per_channel(dgamma, x))
    return dx, dgamma, dbeta


def bn_eval_ref(x, gamma, beta, rm, rv, eps):
    return ((x - _per_channel(rm, x)) / np.sqrt(_per_channel(rv, x) + eps) * _per_channel(gamma, x)
            + _per_channel(beta, x))


rests = st.sampled_from([(), (1,), (3,), (1, 2), (2, 2)])  # (N, C), (N, C, L), (N, C, H, W)
eps_values = st.sampled_from([1e-5, 1e-3, 0.1])


def bn_train_test(n, c, rest, eps, seed=0, affine=True):
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((n, c, *rest)) * 1.5 + gen.standard_normal((1, c) + (1,) * len(rest))
    gamma, beta = gen.standard_normal(c), gen.standard_normal(c)
    params = {"eps": eps, "training": True}
    if not affine:
        return OpTest("batch_norm", lambda x: F.batch_norm(x, None, None, training=True, eps=eps),
                      [x], reference=lambda x: bn_train_ref(x, np.ones(c), np.zeros(c), eps),
                      vjp_reference=lambda x, gy: bn_train_vjp_ref(x, np.ones(c), gy, eps)[:1],
                      params=dict(params, affine=False))
    return OpTest(
        "batch_norm", lambda x, g, b: F.batch_norm(x, None, None, g, b, True, eps=eps),
        [x, gamma, beta], reference=lambda x, g, b: bn_train_ref(x, g, b, eps),
        vjp_reference=lambda x, g, b, gy: bn_train_vjp_ref(x, g, gy, eps), params=params)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), rests, eps_values, st.booleans())
def test_batch_norm_training(n, c, rest, eps, affine):
    n = max(n, 2) if np.prod(rest) < 2 else n  # at least 2 values per channel
    bn_train_test(n, c, rest, eps, affine=affine).check()


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([(), (2,), (2, 1)]), eps_values)
def test_batch_norm_eval(n, c, rest, eps):
    gen = np.random.default_rng(1)
    x = gen.standard_normal((n, c, *rest))
    gamma, beta, rm = gen.standard_normal(c), gen.standard_normal(c), gen.standard_normal(c)
    rv = gen.uniform(0.5, 2.0, c)

    def op(x, g, b):  # running statistics in the input's dtype, on its device
        r_m, r_v = (backend.to_device(a.astype(x.dtype), x.device) for a in (rm, rv))
        return F.batch_norm(x, r_m, r_v, g, b, False, eps=eps)

    scale = 1 / np.sqrt(rv + eps)
    OpTest("batch_norm", op, [x, gamma, beta],
           reference=lambda x, g, b: bn_eval_ref(x, g, b, rm, rv, eps),
           vjp_reference=lambda x, g, b, gy: (
               gy * _per_channel(g * scale, x), (gy * (x - _per_channel(rm, x))).sum(_axes(x))
               * scale, gy.sum(_axes(x))),
           params={"eps": eps, "training": False}).check()


@pytest.mark.parametrize("shape", [(4, 2), (3, 2, 5), (2, 3, 2, 2)])
def test_acceptance_batch_norm_float64_first_and_second_order(shape):
    """Training mode: forward, first-order VJP at rtol 1e-6 against the closed form, and the
    second-order VJP (x, gamma and gy) at rtol 1e-6 against central differences of the closed
    form; 1/std is a function of x there, so a constant-1/std second derivative fails."""
    t = bn_train_test(shape[0], shape[1], shape[2:], 1e-5, seed=7)
    assert t.rtol == 1e-6 and t.second_order
    t.check()


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 3), st.integers(1, 2), st.integers(1, 2), eps_values)
def test_batch_norm_grad_is_a_function_with_its_own_derivatives(n, c, length, eps):
    """(x, gamma, gy) -> (dx, dgamma, dbeta): forward against the closed form, then gradcheck
    and gradgradcheck of it (batchnorm's second and third derivatives)."""
    gen = np.random.default_rng(2)
    x, gamma = gen.standard_normal((n, c, length)), gen.standard_normal(c)
    gy = gen.standard_normal((n, c, length))

    def op(x, g, gy):
        _, mean, invstd = K.batch_norm_forward(x.data, g.data, np.zeros_like(g.data), eps)
        return BatchNormGrad(eps, mean, invstd)(x, g, gy)

    OpTest("batch_norm_grad", op, [x, gamma, gy],
           reference=lambda x, g, gy: bn_train_vjp_ref(x, g, gy, eps),
           params={"eps": eps}).check()


@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0])
def test_running_statistics_follow_the_formula(momentum):
    """r <- (1 - momentum) r + momentum * stat, with the unbiased variance (m / (m - 1))."""
    gen = np.random.default_rng(3)
    rm, rv = gen.standard_normal(3), gen.uniform(0.5, 2, 3)
    want_m, want_v = rm.copy(), rv.copy()
    for step in range(3):
        x = gen.standard_normal((4, 3, 2, 2)) * (step + 1) + step
        F.batch_norm(mg.tensor(x), rm, rv, None, None, True, momentum, 1e-5)
        m = x.size // 3
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3)) * m / (m - 1)
        want_m = (1 - momentum) * want_m + momentum * mean
        want_v = (1 - momentum) * want_v + momentum * var
        assert_close(rm, want_m, 1e-10, 1e-12, f"running_mean after step {step}")
        # the variance is recovered from 1/sqrt(var + eps): relative error ~1e-16 * (var + eps)
        assert_close(rv, want_v, 1e-9, 1e-12, f"running_var after step {step}")


def test_running_statistics_float32_stay_float32():
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    x = np.random.default_rng(4).standard_normal((5, 2)).astype(np.float32)
    F.batch_norm(mg.tensor(x), rm, rv, None, None, True)
    assert rm.dtype == rv.dtype == np.float32
    assert_close(rm, 0.1 * x.mean(0), 1e-5, 1e-7, "running_mean")
    assert_close(rv, 0.9 + 0.1 * x.var(0, ddof=1), 1e-5, 1e-6, "running_var")


def test_training_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        F.batch_norm(mg.tensor(np.zeros((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match="evaluation mode needs running_mean and running_var"):
        F.batch_norm(mg.tensor(np.zeros((2, 3))), None, None, training=False)


def test_constant_channel_is_finite():
    """Zero variance: y = beta, gradients finite (eps keeps 1/std bounded)."""
    x = mg.tensor(np.full((4, 2), 3.0), requires_grad=True)
    b = mg.tensor(np.array([0.5, -1.0]), requires_grad=True)
    y = F.batch_norm(x, None, None, None, b, True)
    assert_close(y.data, np.broadcast_to(b.data, (4, 2)), 0, 1e-12, "constant channel")
    (gx,) = mg.grad((y * y).sum(), [x])
    assert np.isfinite(gx.data).all()


def test_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(5)
    x, g, b = gen.standard_normal((3, 2, 2, 2)), gen.standard_normal(2), gen.standard_normal(2)
    u = gen.standard_normal(x.shape)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, g, b))
    yt = torch.nn.functional.batch_norm(xt, None, None, gt, bt, True)
    (gxt,) = torch.autograd.grad((yt * torch.tensor(u)).sum(), xt, create_graph=True)
    (ggt,) = torch.autograd.grad((gxt ** 2).sum(), xt)
    xm, gm, bm = (mg.tensor(a, requires_grad=True) for a in (x, g, b))
    ym = F.batch_norm(xm, None, None, gm, bm, True)
    (gxm,) = mg.grad((ym * mg.tensor(u)).sum(), [xm], create_graph=True)
    (ggm,) = mg.grad((gxm ** 2).sum(), [xm])
    assert_close(ym.data, yt.detach().numpy(), 1e-10, 1e-12, "batch_norm vs torch: y")
    assert_close(gxm.data, gxt.detach().numpy(), 1e-10, 1e-12, "batch_norm vs torch: dx")
    assert_close(ggm.data, ggt.numpy(), 1e-9, 1e-12, "batch_norm vs torch: 2nd order")


# Wide contiguous batches: (N, C) and (N, C, 1, 1) arrays reach the kernels as (N, C, 1), whose
# L == 1 branch splits C into work items of K._COLS channels (tests/kernels/test_norm_kernels.py
# has the reference, the sizes and the tolerances). A Linear layer's output is batch-last and
# takes the other branch, so these come straight from contiguous arrays.
WIDE_SHAPES = [(n, c) for n, c in WIDE] + [(n, c, 1, 1) for n, c in WIDE]


def _spy_kernels():
    """Patch the two batchnorm kernels with recording wrappers (mock's `wraps`)."""
    return (mock.patch.object(N.K, "batch_norm_forward", wraps=N.K.batch_norm_forward),
            mock.patch.object(N.K, "batch_norm_backward", wraps=N.K.batch_norm_backward))


def _assert_rows_branch(fwd, bwd, shape):
    """Both kernels got contiguous (N, C, 1) arrays: the L == 1 branch, several work items."""
    for spy in (fwd, bwd):
        x3 = spy.call_args.args[0]
        assert spy.call_count == 1 and x3.shape == (shape[0], shape[1], 1), \
            f"batch_norm on {shape}: {spy} called {spy.call_count}x with {x3.shape}"
        assert x3.flags.c_contiguous and shape[1] > K._COLS


def _wide_check(got, want, dtype, shape, where):
    names = ("y", "mean", "invstd", "gx", "ggamma", "gbeta")
    kinds = dict(zip(names, ("forward",) * 3 + ("backward",) * 2 + ("forward",)))
    for name, g in got.items():
        w = want[names.index(name)]
        rtol, atol = WIDE_TOL[dtype][kinds[name]]
        assert_close(np.asarray(g).reshape(w.shape), w, rtol, atol * np.abs(w).max(),
                     f"{where} {name} on contiguous {shape}, {np.dtype(dtype).name}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", WIDE_SHAPES, ids=str)
def test_batch_norm_training_on_wide_contiguous_batches(shape, dtype):
    """F.batch_norm in training mode with C in the hundreds and over a thousand: y, gx, ggamma,
    gbeta and the running statistics against the float64 textbook formulas."""
    n, c = shape[:2]
    x, gamma, beta, gy = wide_batch(n, c, dtype, seed=1)
    eps, momentum = 1e-5, 0.1
    want = wide_reference(*(a.astype(np.float64) for a in (x, gamma, beta, gy)), eps)
    xm = mg.tensor(x.reshape(shape), requires_grad=True)
    gm, bm = mg.tensor(gamma, requires_grad=True), mg.tensor(beta, requires_grad=True)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    fwd, bwd = _spy_kernels()
    with fwd as f, bwd as b:
        y = F.batch_norm(xm, rm, rv, gm, bm, True, momentum, eps)
        gx, gg, gb = mg.grad(y, [xm, gm, bm], mg.tensor(gy.reshape(shape)))
        _assert_rows_branch(f, b, shape)
    assert y.shape == gx.shape == shape and y.dtype == gx.dtype == dtype
    _wide_check({"y": y.data, "gx": gx.data, "ggamma": gg.data, "gbeta": gb.data}, want, dtype,
                shape, "batch_norm")
    _assert_running_stats(rm, rv, want, n, momentum, dtype, shape)


def _assert_running_stats(rm, rv, want, n, momentum, dtype, shape):
    """r <- (1 - momentum) r + momentum * stat from r = (0, 1), with the unbiased variance; the
    variance comes back from 1/invstd^2 (float32: two roundings of invstd and r's own)."""
    mean, invstd = want[1], want[2]
    var = (1 / invstd ** 2 - 1e-5) * n / (n - 1)
    tol = 1e-10 if dtype == np.float64 else 1e-6
    assert_close(rm, momentum * mean, tol, tol, f"running_mean after batch_norm on {shape}")
    assert_close(rv, 1 - momentum + momentum * var, tol, tol,
                 f"running_var after batch_norm on {shape}")


@pytest.mark.parametrize("shape", WIDE_SHAPES, ids=str)
def test_batchnorm_layers_on_wide_contiguous_batches(shape):
    """nn.BatchNorm1d on (N, C) and nn.BatchNorm2d on (N, C, 1, 1), float32 training mode, the
    gradients through .backward() into x.grad, weight.grad and bias.grad."""
    n, c = shape[:2]
    x, gamma, beta, gy = wide_batch(n, c, np.float32, seed=2)
    want = wide_reference(*(a.astype(np.float64) for a in (x, gamma, beta, gy)), 1e-5)
    layer = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(c)
    layer.weight.data[...] = gamma
    layer.bias.data[...] = beta
    xm = mg.tensor(x.reshape(shape), requires_grad=True)
    fwd, bwd = _spy_kernels()
    with fwd as f, bwd as b:
        y = layer(xm)
        y.backward(mg.tensor(gy.reshape(shape)))
        _assert_rows_branch(f, b, shape)
    _wide_check({"y": y.data, "gx": xm.grad.data, "ggamma": layer.weight.grad.data,
                 "gbeta": layer.bias.grad.data}, want, np.float32, shape, repr(layer))
    assert int(layer.num_batches_tracked) == 1
    _assert_running_stats(layer.running_mean, layer.running_var, want, n, 0.1, np.float32,
                          shape)


def _kink_free_batch(n, c, rest, seed):
    """(x, gamma, beta) whose normalised values all keep 0.05 away from the ReLU's kink, where a
    central difference would straddle it."""
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((n, c, *rest))
    gamma, beta = gen.uniform(0.5, 2, c), gen.standard_normal(c) * 0.5
    for _ in range(8):
        y = bn_train_ref(x, gamma, beta, 1e-5)
        near = np.abs(y) < 0.05
        if not near.any():
            return x, gamma, beta
        x = x + near * 0.2 * np.sign(y + 1e-12) / _per_channel(gamma, x)
    raise AssertionError("could not move the data off the kink")


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(4, 2), (3, 2, 5), (2, 3, 2, 2)], ids=str)
def test_batch_norm_fused_with_leaky_relu_first_and_second_order(slope, shape):
    """batch_norm(..., _slope=s), the pass nn.Sequential fuses a BatchNorm and its LeakyReLU or
    ReLU into: forward and first-order VJP against leaky_relu of the float64 closed forms,
    gradcheck and gradgradcheck (the second order goes through the unfused Functions)."""
    x, gamma, beta = _kink_free_batch(shape[0], shape[1], shape[2:], seed=11)
    eps = 1e-5

    def reference(x, g, b):
        y = bn_train_ref(x, g, b, eps)
        return np.where(y > 0, y, slope * y)

    def vjp_reference(x, g, b, gz):
        y = bn_train_ref(x, g, b, eps)
        return bn_train_vjp_ref(x, g, np.where(y > 0, gz, slope * gz), eps)

    OpTest("batch_norm+leaky_relu",
           lambda x, g, b: F.batch_norm(x, None, None, g, b, True, eps=eps, _slope=slope),
           [x, gamma, beta], reference=reference, vjp_reference=vjp_reference,
           params={"slope": slope, "training": True}).check()


def test_batch_norm_fused_refuses_a_negative_slope():
    with pytest.raises(ValueError, match="_slope must be >= 0"):
        F.batch_norm(mg.tensor(np.ones((2, 3))), None, None, training=True, _slope=-0.1)


def test_batch_norm_fused_eval_mode_applies_the_activation():
    """Evaluation mode has no fused kernel; the slope still applies after the normalisation."""
    gen = np.random.default_rng(12)
    x, rm, rv = gen.standard_normal((5, 3)), gen.standard_normal(3), gen.uniform(0.5, 2, 3)
    y = F.batch_norm(mg.tensor(x), rm, rv, training=False, _slope=0.1).data
    want = bn_eval_ref(x, np.ones(3), np.zeros(3), rm, rv, 1e-5)
    assert_close(y, np.where(want > 0, want, 0.1 * want), 1e-12, 1e-12, "eval batch_norm + slope")
