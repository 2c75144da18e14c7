"""Losses against float64 NumPy, first and second order, in every reduction.

The BCE-with-logits reference is written as -(t log s + (1 - t) log(1 - s)), s = sigmoid(z),
with log s = -logaddexp(0, -z): a different formula from minigan's max(z, 0) - z t + log1p(..).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import functional as F
from minigan.testing import OpTest, assert_close

REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}


def _scale(reduction, n):
    return 1.0 / n if reduction == "mean" else 1.0


def bce_logits_ref(z, t, reduction):
    log_s, log_1ms = -np.logaddexp(0, -z), -np.logaddexp(0, z)
    return REDUCE[reduction](-(t * log_s + (1 - t) * log_1ms))


def bce_logits_vjp_ref(z, t, gy, reduction):
    g = gy * _scale(reduction, z.size)
    return g * (1 / (1 + np.exp(-z)) - t), -g * z


def bce_logits_test(shape, reduction, seed=0, spread=3.0):
    gen = np.random.default_rng(seed)
    z, t = gen.standard_normal(shape) * spread, gen.uniform(0, 1, shape)
    return OpTest("binary_cross_entropy_with_logits",
                  lambda z, t: F.binary_cross_entropy_with_logits(z, t, reduction), [z, t],
                  reference=lambda z, t: bce_logits_ref(z, t, reduction),
                  vjp_reference=lambda z, t, gy: bce_logits_vjp_ref(z, t, gy, reduction),
                  params={"reduction": reduction})


shapes = st.sampled_from([(1,), (4,), (2, 3), (2, 1, 2)])
reductions = st.sampled_from(["mean", "sum", "none"])


@settings(max_examples=15, deadline=None)
@given(shapes, reductions, st.sampled_from([1.0, 5.0]))
def test_bce_with_logits(shape, reduction, spread):
    bce_logits_test(shape, reduction, spread=spread).check()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_acceptance_bce_with_logits_float64_first_and_second_order(reduction):
    """Forward and first-order VJP (logits and soft targets) at rtol 1e-6; second order against
    central differences of the reference VJP."""
    t = bce_logits_test((3, 4), reduction, seed=12)
    assert t.rtol == 1e-6 and t.second_order
    t.check()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_stable_for_huge_logits(dtype):
    z = mg.tensor(np.array([-1000.0, -60.0, 60.0, 1000.0], dtype), requires_grad=True)
    t = mg.tensor(np.array([1.0, 0.0, 1.0, 0.0], dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.binary_cross_entropy_with_logits(z, t, "none")
        (g,) = mg.grad(loss.sum(), [z])
    assert loss.dtype == dtype
    assert_close(loss.data, [1000.0, 8.75651076e-27, 8.75651076e-27, 1000.0], 1e-6, 0, "loss")
    # the gradient sigmoid(z) - t is a difference with an O(1) target: it is judged to the
    # dtype's resolution of that scale (a sigmoid tail of 1e-26 may round to 0)
    atol = np.finfo(dtype).eps
    assert_close(g.data, [-1.0, 8.75651076e-27, -8.75651076e-27, 1.0], 1e-6, atol, "gradient")


def bce_ref(p, t, reduction):
    return REDUCE[reduction](-(t * np.log(p) + (1 - t) * np.log(1 - p)))


@settings(max_examples=10, deadline=None)
@given(shapes, reductions)
def test_bce_on_probabilities(shape, reduction):
    gen = np.random.default_rng(1)
    p, t = gen.uniform(0.05, 0.95, shape), gen.uniform(0, 1, shape)

    def vjp(p, t, gy):
        g = gy * _scale(reduction, p.size)
        return g * (p - t) / (p * (1 - p)), g * (np.log(1 - p) - np.log(p))
    OpTest("binary_cross_entropy", lambda p, t: F.binary_cross_entropy(p, t, reduction), [p, t],
           reference=lambda p, t: bce_ref(p, t, reduction), vjp_reference=vjp,
           params={"reduction": reduction}).check()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_on_saturated_probabilities_is_finite(dtype):
    """log is clamped at -100 and the gradient is (p - t) / max(p (1 - p), 1e-12), as PyTorch."""
    p = mg.tensor(np.array([0.0, 1.0, 0.0, 1.0], dtype), requires_grad=True)
    t = mg.tensor(np.array([1.0, 0.0, 0.0, 1.0], dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no log(0) or 0/0 warnings
        loss = F.binary_cross_entropy(p, t, "none")
        (g,) = mg.grad(loss.sum(), [p])
    assert_close(loss.data, [100.0, 100.0, 0.0, 0.0], 1e-6, 0, "clamped loss")
    assert_close(g.data, [-1e12, 1e12, 1.0, -1.0], 1e-6, 0, "saturated gradient")


@settings(max_examples=10, deadline=None)
@given(shapes, reductions)
def test_mse_loss(shape, reduction):
    gen = np.random.default_rng(2)
    a, b = gen.standard_normal(shape), gen.standard_normal(shape)

    def vjp(a, b, gy):
        g = 2 * gy * _scale(reduction, a.size) * (a - b)
        return g, -g
    OpTest("mse_loss", lambda a, b: F.mse_loss(a, b, reduction), [a, b],
           reference=lambda a, b: REDUCE[reduction]((a - b) ** 2), vjp_reference=vjp,
           params={"reduction": reduction}).check()


def test_target_as_plain_array_and_bad_reduction():
    z = mg.tensor(np.array([0.5, -0.5]), requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(z, np.array([1.0, 0.0]))
    assert_close(loss.data, bce_logits_ref(z.data, np.array([1.0, 0.0]), "mean"), 1e-12, 0, "")
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.mse_loss(z, z, "avg")


def test_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(3)
    z, t = gen.standard_normal((4, 3)) * 3, gen.uniform(0, 1, (4, 3))
    zt = torch.tensor(z, requires_grad=True)
    lt = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(t))
    (gt,) = torch.autograd.grad(lt, zt, create_graph=True)
    (ggt,) = torch.autograd.grad((gt ** 2).sum(), zt)
    zm = mg.tensor(z, requires_grad=True)
    lm = F.binary_cross_entropy_with_logits(zm, t)
    (gm,) = mg.grad(lm, [zm], create_graph=True)
    (ggm,) = mg.grad((gm ** 2).sum(), [zm])
    for a, b, what in ((lm, lt, "loss"), (gm, gt, "grad"), (ggm, ggt, "2nd order")):
        assert_close(a.data, b.detach().numpy(), 1e-10, 1e-14, f"bce_with_logits vs torch: {what}")
