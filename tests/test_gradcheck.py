"""gradcheck, gradgradcheck and the OpTest harness catch what they must, and say where."""

import os

import numpy as np
import pytest

import minigan as mg
from minigan import Function, Tensor
from minigan import functional as F
from minigan.functional import norm
from minigan.gradcheck import GradcheckError
from minigan.testing import OpTest, assert_close, devices, numeric_grad


def leaf(shape, seed=0):
    return mg.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


class WrongFirstOrder(Function):
    """x^2 with a backward that is off by a factor on one element."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        scale = np.ones(self.inputs[0].shape)
        scale.reshape(-1)[-1] = 1.5
        return gy * self.inputs[0] * 2.0 * Tensor(scale)


class ConstantSecondOrder(Function):
    """x^3 whose backward treats 3x^2 as a constant array: right first order, wrong second."""

    def forward(self, x):
        return x ** 3

    def backward(self, gy):
        return gy * Tensor(3 * self.inputs[0].data ** 2)


def test_gradcheck_passes_a_correct_op():
    assert mg.gradcheck(lambda x: F.tanh(x) * x, [leaf((2, 3))])
    assert mg.gradgradcheck(lambda x: F.tanh(x) * x, [leaf((2, 3))])


def test_gradcheck_names_the_input_element_and_values():
    x = leaf((2, 2))
    with pytest.raises(GradcheckError, match=r"square: gradient of input 0 \(shape \(2, 2\)\) at "
                                             r"\(1, 1\): analytic .* vs numeric .* \(diff"):
        mg.gradcheck(lambda x: WrongFirstOrder()(x), [x], name="square")


def test_gradcheck_perturbs_non_contiguous_inputs_in_place():
    """A transposed or batch-last input (where reshape(-1) would be a copy) is still perturbed:
    a right gradient passes and a wrong one is caught at the right element."""
    x = mg.tensor(np.random.default_rng(2).standard_normal((4, 3)).T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert mg.gradcheck(lambda x: F.tanh(x) * x, [x])
    assert mg.gradgradcheck(lambda x: F.tanh(x) * x, [x])
    with pytest.raises(GradcheckError, match=r"at \(2, 3\)"):
        mg.gradcheck(lambda x: WrongFirstOrder()(x), [x])


def test_gradgradcheck_catches_a_constant_in_backward():
    x = leaf((3,), seed=1)
    assert mg.gradcheck(lambda x: ConstantSecondOrder()(x), [x])
    with pytest.raises(GradcheckError, match=r"cube \(2nd order\): gradient of input 0"):
        mg.gradgradcheck(lambda x: ConstantSecondOrder()(x), [x], name="cube")


def test_gradcheck_wants_float64():
    with pytest.raises(TypeError, match="input 0 is float32; use float64 inputs"):
        mg.gradcheck(F.tanh, [mg.tensor(np.ones(2, np.float32), requires_grad=True)])


def test_batchnorm_with_a_constant_inverse_std_is_caught(monkeypatch):
    """DeZero's bug, planted on purpose: 1/std treated as a constant in the second derivative.
    The first order stays right; the harness must fail on the second order."""
    real = norm.batch_norm_grad_reference

    def buggy(x, gamma, gy, eps):
        xc = x - x.mean(axis=(0, 2), keepdims=True)
        inv = Tensor((((xc * xc).mean(axis=(0, 2), keepdims=True) + eps) ** -0.5).data)
        m, c = x.shape[0] * x.shape[2], x.shape[1]
        xhat = xc * inv
        gbeta, ggamma = gy.sum(axis=(0, 2)), (gy * xhat).sum(axis=(0, 2))
        corr = (gbeta.reshape(1, c, 1) + xhat * ggamma.reshape(1, c, 1)) * (1.0 / m)
        return (gamma.reshape(1, c, 1) * inv) * (gy - corr), ggamma, gbeta

    x = np.random.default_rng(2).standard_normal((4, 2)) * 2
    g, b = np.array([1.5, 0.5]), np.array([0.1, -0.2])

    def make():
        return OpTest("batch_norm", lambda x, g, b: F.batch_norm(x, None, None, g, b, True),
                      [x, g, b], params={"training": True})
    make().check()  # the real one passes
    monkeypatch.setattr(norm, "batch_norm_grad_reference", buggy)
    with pytest.raises(AssertionError, match=r"batch_norm\(training=True\) on cpu, input shapes "
                                             r"\[\(4, 2\), \(2,\), \(2,\)\].*2nd order"):
        make().check()
    monkeypatch.setattr(norm, "batch_norm_grad_reference", real)


def test_harness_failure_names_op_params_shapes_and_error():
    x = np.random.default_rng(3).standard_normal((1, 1, 3, 3))
    w = np.ones((1, 1, 2, 2))
    t = OpTest("conv2d", lambda x, w: F.conv2d(x, w, None, 1, 0), [x, w],
               reference=lambda x, w: np.zeros((1, 1, 2, 2)), params={"stride": 1})
    with pytest.raises(AssertionError) as e:
        t.check()
    msg = str(e.value)
    assert "conv2d(stride=1) on cpu, input shapes [(1, 1, 3, 3), (1, 1, 2, 2)]" in msg
    assert "forward output 0: max abs error" in msg and "worst at" in msg


def test_harness_checks_the_vjp_reference():
    x = np.random.default_rng(4).standard_normal(4)
    t = OpTest("tanh", F.tanh, [x], reference=np.tanh,
               vjp_reference=lambda x, gy: (gy * (1 - np.tanh(x) ** 2) * 1.001,))
    with pytest.raises(AssertionError, match=r"tanh\(\) on cpu.*gradient of input 0: max abs"):
        t.check()


def test_harness_checks_the_second_order_against_the_reference():
    """A reference VJP that is right at x0 but flat around it: the first orders agree, the
    second order (6 x gy u for x^3) disagrees with the reference's central differences."""
    x0 = np.array([0.5, -1.0, 2.0])
    t = OpTest("cube", lambda x: x ** 3, [x0], reference=lambda x: x ** 3,
               vjp_reference=lambda x, gy: (gy * 3 * x0 ** 2,))
    with pytest.raises(AssertionError, match=r"cube\(\) on cpu.*second-order gradient wrt "
                                             r"input 0 \(vs central differences"):
        t.check()


def test_harness_float32_forward_must_stay_float32():
    x = np.random.default_rng(6).standard_normal(3)
    t = OpTest("upcast", lambda x: x * mg.tensor(np.ones(3)), [x], reference=lambda x: x)
    with pytest.raises(AssertionError, match="float32 inputs gave float64 output 0"):
        t.check()


def test_numeric_grad_and_assert_close():
    a = np.array([1.0, 2.0, 3.0])
    g = numeric_grad(lambda: float((a ** 2).sum()), a, 1e-5)
    assert_close(g, 2 * a, 1e-9, 0, "central differences of a quadratic")
    assert_close(a, [1.0, 2.0, 3.0], 0, 0, "a is restored")
    with pytest.raises(AssertionError, match="got shape"):
        assert_close(a, a[:2], 0, 0, "shapes")
    with pytest.raises(AssertionError, match="max abs error nan"):
        assert_close(np.array([np.nan]), [0.0], 1, 1, "nan")


def test_devices_follow_the_environment(monkeypatch):
    monkeypatch.delenv("MINIGAN_TEST_CUDA", raising=False)
    monkeypatch.setenv("MINIGAN_DEVICE", "cuda")
    assert devices() == ["cpu", "cuda"]
    monkeypatch.setenv("MINIGAN_DEVICE", "cpu")
    assert devices() == (["cpu", "cuda"] if mg.cuda_available() else ["cpu"])
    monkeypatch.setenv("MINIGAN_TEST_CUDA", "1")  # the suite's form of MINIGAN_DEVICE=cuda
    assert devices() == ["cpu", "cuda"]


def test_the_suite_asked_for_the_gpu_keeps_the_cpu_as_default_device():
    """tests/conftest.py: MINIGAN_DEVICE=cuda python -m pytest adds the GPU to the OpTests and
    leaves new tensors on the CPU (run with it set, this checks the hand-over itself)."""
    assert os.environ["MINIGAN_DEVICE"] == "cpu"
    assert mg.randn(2).device == "cpu"
    if os.environ.get("MINIGAN_TEST_CUDA") == "1":
        assert devices() == ["cpu", "cuda"]
