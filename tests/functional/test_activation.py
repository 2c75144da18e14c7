"""leaky_relu, relu, tanh and sigmoid against float64 NumPy, first and second order."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import functional as F
from minigan.functional.activation import LeakyReLUGrad
from minigan.testing import OpTest, assert_close

small_shapes = st.sampled_from([(1,), (3,), (2, 3), (2, 1, 2, 2)])


def away_from_zero(shape, seed):
    """Values in +-[0.1, 2]: the kink at 0 stays far outside the finite-difference steps."""
    gen = np.random.default_rng(seed)
    return gen.choice([-1.0, 1.0], shape) * gen.uniform(0.1, 2.0, shape)


def leaky_relu_test(shape, slope, seed=0):
    x = away_from_zero(shape, seed)
    return OpTest("leaky_relu", lambda x: F.leaky_relu(x, slope), [x],
                  reference=lambda x: np.where(x > 0, x, slope * x),
                  vjp_reference=lambda x, gy: (gy * np.where(x > 0, 1.0, slope),),
                  params={"negative_slope": slope})


@settings(max_examples=20, deadline=None)
@given(small_shapes, st.one_of(st.just(0.0), st.just(0.2), st.floats(0.0, 1.0)))
def test_leaky_relu(shape, slope):
    leaky_relu_test(shape, slope).check()


@pytest.mark.parametrize("slope", [0.2, 0.01])
def test_acceptance_leaky_relu_float64_first_and_second_order(slope):
    """Forward and first-order VJP at rtol 1e-6; second order (zero in x, the slope mask in gy)
    against central differences of the reference VJP."""
    t = leaky_relu_test((3, 4), slope, seed=11)
    assert t.rtol == 1e-6 and t.second_order
    t.check()


@settings(max_examples=8, deadline=None)
@given(small_shapes, st.floats(0.0, 1.0))
def test_leaky_relu_grad_is_a_function_with_its_own_derivatives(shape, slope):
    x, gy = away_from_zero(shape, 1), np.random.default_rng(2).standard_normal(shape)
    OpTest("leaky_relu_grad", lambda x, gy: LeakyReLUGrad(slope)(x, gy), [x, gy],
           reference=lambda x, gy: gy * np.where(x > 0, 1.0, slope),
           params={"negative_slope": slope}).check()


def test_relu_is_leaky_relu_with_slope_zero():
    x = away_from_zero((2, 5), 3)
    OpTest("relu", F.relu, [x], reference=lambda x: np.maximum(x, 0),
           vjp_reference=lambda x, gy: (gy * (x > 0),)).check()


@settings(max_examples=10, deadline=None)
@given(small_shapes, st.sampled_from([1.0, 4.0]))
def test_tanh_and_sigmoid(shape, spread):
    x = np.random.default_rng(4).standard_normal(shape) * spread
    OpTest("tanh", F.tanh, [x], reference=np.tanh,
           vjp_reference=lambda x, gy: (gy * (1 - np.tanh(x) ** 2),),
           params={"spread": spread}).check()

    def sig(x):
        return 1 / (1 + np.exp(-x))
    OpTest("sigmoid", F.sigmoid, [x], reference=sig,
           vjp_reference=lambda x, gy: (gy * sig(x) * (1 - sig(x)),),
           params={"spread": spread}).check()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_saturate_without_overflow(dtype):
    x = mg.tensor(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings
        s = F.sigmoid(x)
        (g,) = mg.grad(s.sum(), [x])
        t = F.tanh(x)
    assert s.dtype == dtype and t.dtype == dtype
    assert_close(s.data, [0.0, 1.9287498479639178e-22, 0.5, 1.0, 1.0], 1e-6, 0, "sigmoid")
    assert_close(t.data, [-1.0, -1.0, 0.0, 1.0, 1.0], 0, 0, "tanh")
    assert np.isfinite(g.data).all() and g.data[2] == 0.25


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    x = mg.tensor(np.linspace(-1, 1, 6).astype(dtype))
    for f in (F.relu, F.tanh, F.sigmoid, lambda x: F.leaky_relu(x, 0.2)):
        assert f(x).dtype == dtype


def test_leaky_relu_at_zero_takes_the_slope_side():
    """Derivative at exactly 0 is the slope (x > 0 is the positive branch), as PyTorch."""
    x = mg.tensor(np.zeros(3), requires_grad=True)
    (g,) = mg.grad(F.leaky_relu(x, 0.3).sum(), [x])
    assert_close(g.data, np.full(3, 0.3), 0, 0, "leaky_relu'(0)")


def test_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((3, 4))
    for mine, theirs in ((lambda t: F.leaky_relu(t, 0.2),
                          lambda t: torch.nn.functional.leaky_relu(t, 0.2)),
                         (F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh)):
        xt = torch.tensor(x, requires_grad=True)
        (gt,) = torch.autograd.grad(theirs(xt).pow(3).sum(), xt)
        xm = mg.tensor(x, requires_grad=True)
        (gm,) = mg.grad((mine(xm) ** 3).sum(), [xm])
        assert_close(gm.data, gt.numpy(), 1e-12, 1e-14, "activation vs torch")
