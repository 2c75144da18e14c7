"""Arithmetic, reductions, shape ops and linear against float64 NumPy, first and second order.

Broadcast gradients are summed back with np.bincount over broadcast index arrays, a different
route from minigan's sum_to.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minigan as mg
from minigan import functional as F
from minigan.testing import OpTest, assert_close


def unbroadcast(g, shape):
    """Sum g (broadcast from `shape`) back to `shape`: every output cell adds to its source."""
    src = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), g.shape)
    return np.bincount(src.ravel(), g.ravel(), minlength=int(np.prod(shape))).reshape(shape)


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b, g: (g, g)),
    "sub": (lambda a, b: a - b, lambda a, b, g: (g, -g)),
    "mul": (lambda a, b: a * b, lambda a, b, g: (g * b, g * a)),
    "div": (lambda a, b: a / b, lambda a, b, g: (g / b, -g * a / b ** 2)),
}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(BINARY)),
       mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
def test_broadcasting_arithmetic(name, shapes):
    f, vjp = BINARY[name]
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    gen = np.random.default_rng(0)
    a = gen.standard_normal(sa)
    b = gen.uniform(0.5, 2.0, sb) * gen.choice([-1, 1], sb)  # away from 0 for div

    def vjp_ref(a, b, gy):
        ga, gb = vjp(np.broadcast_to(a, out), np.broadcast_to(b, out), gy)
        return unbroadcast(ga, sa), unbroadcast(gb, sb)
    OpTest(name, f, [a, b], reference=f, vjp_reference=vjp_ref,
           params={"shapes": (sa, sb)}).check()


UNARY = {  # name: (minigan op, reference, derivative, positive inputs only)
    "neg": (lambda x: -x, np.negative, lambda x: -np.ones_like(x), False),
    "exp": (F.exp, np.exp, np.exp, False),
    "log": (F.log, np.log, lambda x: 1 / x, True),
    "sqrt": (F.sqrt, np.sqrt, lambda x: 0.5 / np.sqrt(x), True),
    "pow2": (lambda x: x ** 2, np.square, lambda x: 2 * x, False),
    "pow3": (lambda x: x ** 3, lambda x: x ** 3, lambda x: 3 * x ** 2, False),
    "pow-1": (lambda x: x ** -1, np.reciprocal, lambda x: -(x ** -2.0), True),
    "pow1.5": (lambda x: x ** 1.5, lambda x: x ** 1.5, lambda x: 1.5 * np.sqrt(x), True),
    "rsub": (lambda x: 2 - x, lambda x: 2 - x, lambda x: -np.ones_like(x), False),
    "rdiv": (lambda x: 1 / x, lambda x: 1 / x, lambda x: -1 / x ** 2, True),
    "scale": (lambda x: x * 3 + 1, lambda x: 3 * x + 1, lambda x: 3 * np.ones_like(x), False),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name):
    op, ref, deriv, positive = UNARY[name]
    gen = np.random.default_rng(1)
    x = gen.uniform(0.3, 2.0, (2, 3)) if positive else gen.standard_normal((2, 3))
    OpTest(name, op, [x], reference=ref,
           vjp_reference=lambda x, gy: (gy * deriv(x),)).check()


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_matmul(n, k, m):
    gen = np.random.default_rng(2)
    a, b = gen.standard_normal((n, k)), gen.standard_normal((k, m))
    OpTest("matmul", F.matmul, [a, b], reference=lambda a, b: a @ b,
           vjp_reference=lambda a, b, gy: (gy @ b.T, a.T @ gy),
           params={"n": n, "k": k, "m": m}).check()


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([None, 0, 1, -1, (0, 2), (1, 2)]), st.booleans(), st.booleans())
def test_sum_and_mean(axis, keepdims, mean):
    x = np.random.default_rng(3).standard_normal((2, 3, 2))
    red = np.mean if mean else np.sum
    axes = range(3) if axis is None else (axis,) if isinstance(axis, int) else axis
    n = int(np.prod([x.shape[a] for a in axes])) if mean else 1

    def vjp_ref(x, gy):
        g = np.expand_dims(gy, tuple(a % 3 for a in axes)) if not keepdims else gy
        return (np.broadcast_to(g, x.shape) / n,)
    op = F.mean if mean else F.sum
    OpTest("mean" if mean else "sum", lambda x: op(x, axis, keepdims), [x],
           reference=lambda x: red(x, axis=axis, keepdims=keepdims), vjp_reference=vjp_ref,
           params={"axis": axis, "keepdims": keepdims}).check()


def test_shape_ops():
    x = np.random.default_rng(4).standard_normal((2, 3, 4))
    cases = [
        ("reshape", lambda x: x.reshape(6, 4), lambda x: x.reshape(6, 4),
         lambda x, gy: (gy.reshape(x.shape),)),
        ("reshape -1", lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1),
         lambda x, gy: (gy.reshape(x.shape),)),
        ("permute", lambda x: x.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1),
         lambda x, gy: (gy.transpose(1, 2, 0),)),
        ("transpose", lambda x: x.transpose(0, 2), lambda x: x.swapaxes(0, 2),
         lambda x, gy: (gy.swapaxes(0, 2),)),
        ("T", lambda x: x.T, lambda x: x.T, lambda x, gy: (gy.T,)),
    ]
    for name, op, ref, vjp in cases:
        OpTest(name, op, [x], reference=ref, vjp_reference=vjp).check()


@pytest.mark.parametrize("index", [(slice(None), 1), (0, slice(1, 3)), (np.array([0, 2, 2, 1]),),
                                   (Ellipsis, np.array([1, 1]))],
                         ids=["column", "row slice", "fancy with repeats", "ellipsis fancy"])
def test_getitem(index):
    x = np.random.default_rng(5).standard_normal((3, 4))

    def vjp_ref(x, gy):
        g = np.zeros_like(x)
        np.add.at(g, index, gy)  # a repeated index collects every gradient
        return (g,)
    OpTest("getitem", lambda x: x[index], [x], reference=lambda x: x[index],
           vjp_reference=vjp_ref, params={"index": index}).check()


def linear_ref(x, w, b):
    n, k = x.shape
    y = np.zeros((n, w.shape[0]))
    for i in range(n):
        for o in range(w.shape[0]):
            y[i, o] = b[o] + sum(x[i, j] * w[o, j] for j in range(k))
    return y


def linear_vjp_ref(x, w, b, gy):
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for i in range(x.shape[0]):
        for o in range(w.shape[0]):
            for j in range(x.shape[1]):
                gx[i, j] += gy[i, o] * w[o, j]
                gw[o, j] += gy[i, o] * x[i, j]
    return gx, gw, gy.sum(0)


def linear_test(n, k, m, seed=0):
    gen = np.random.default_rng(seed)
    x, w, b = gen.standard_normal((n, k)), gen.standard_normal((m, k)), gen.standard_normal(m)
    return OpTest("linear", F.linear, [x, w, b], reference=linear_ref,
                  vjp_reference=linear_vjp_ref, params={"in": k, "out": m})


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3))
def test_linear(n, k, m):
    linear_test(n, k, m).check()


def test_acceptance_linear_float64_first_and_second_order():
    """Forward and first-order VJP at rtol 1e-6 against naive loops; second order against
    central differences of the loop VJP."""
    t = linear_test(3, 5, 4, seed=13)
    assert t.rtol == 1e-6 and t.second_order
    t.check()
    x = np.random.default_rng(6).standard_normal((2, 3))
    w = np.random.default_rng(7).standard_normal((4, 3))
    y = F.linear(mg.tensor(x), mg.tensor(w))  # without bias
    assert_close(y.data, linear_ref(x, w, np.zeros(4)), 1e-12, 1e-14, "linear without bias")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_scalars_keep_the_dtype(dtype):
    x = mg.tensor(np.ones(3, dtype))
    for y in (x + 1, 1 + x, x - 0.5, 2 - x, x * 3, 3 * x, x / 2, 2 / x, -x, x ** 2, x.mean()):
        assert y.dtype == dtype


def test_linear_is_one_function_with_the_composition_values_and_layout():
    """F.linear (one Function) against transpose(matmul(W, transpose(x))) + b: the same bits
    forward and backward, and the output and input gradient in batch-last memory."""
    rng = np.random.default_rng(3)
    x0, w0, b0 = (rng.standard_normal(s).astype(np.float32) for s in [(9, 6), (4, 6), (4,)])
    gy = rng.standard_normal((9, 4)).astype(np.float32)
    got = []
    for f in (F.linear, lambda x, w, b: F.transpose(F.matmul(w, F.transpose(x))) + b):
        x, w, b = (mg.tensor(a.copy(), requires_grad=True) for a in (x0, w0, b0))
        y = f(x, w, b)
        y.backward(mg.tensor(gy))
        got.append((y.data, x.grad.data, w.grad.data, b.grad.data))
    assert type(F.linear(x, w, b).creator).__name__ == "Linear"
    for a, b_ in zip(*got):
        assert np.array_equal(a, b_) and a.flags.f_contiguous == b_.flags.f_contiguous
    assert got[0][0].flags.f_contiguous and got[0][1].flags.f_contiguous     # batch-last
