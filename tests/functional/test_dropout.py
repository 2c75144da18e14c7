"""dropout and upsample_nearest2d against float64 NumPy, first and second order.

Dropout's reference mask is the documented counter-based generator, splitmix64 of (key, i),
rewritten in NumPy; the key is the first draw after minigan.manual_seed(seed).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import functional as F
from minigan.functional.dropout import BlockSum
from minigan.testing import OpTest, assert_close, splitmix_uniform


def dropout_mask_ref(shape, p, seed):
    key = int(np.random.Generator(np.random.PCG64(seed)).integers(2**63))
    keep = splitmix_uniform(key, int(np.prod(shape))).reshape(shape) >= p
    return keep / (1 - p)


def seeded_dropout(p, seed):
    def op(x):
        mg.manual_seed(seed)  # the same mask on every call, as gradcheck needs
        return F.dropout(x, p)
    return op


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([(1,), (7,), (2, 3), (2, 2, 2, 2)]), st.floats(0.05, 0.95),
       st.integers(0, 2**32))
def test_dropout(shape, p, seed):
    x = np.random.default_rng(0).standard_normal(shape)
    mask = dropout_mask_ref(shape, p, seed)
    OpTest("dropout", seeded_dropout(p, seed), [x], reference=lambda x: x * mask,
           vjp_reference=lambda x, gy: (gy * mask,), params={"p": p, "seed": seed}).check()


def test_dropout_eval_and_trivial_p_are_exact():
    x = mg.tensor(np.random.default_rng(1).standard_normal((3, 4)), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    assert (y.data == 0).all()
    (g,) = mg.grad(y.sum(), [x])
    assert (g.data == 0).all()


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_p_out_of_range(p):
    with pytest.raises(ValueError, match=rf"dropout: p must be in \[0, 1\], got {p}"):
        F.dropout(mg.tensor(np.zeros(3)), p)


def test_dropout_gradient_is_the_mask_and_seed_repeats():
    x = mg.tensor(np.ones((50, 40)), requires_grad=True)
    mg.manual_seed(3)
    y1 = F.dropout(x, 0.3)
    (g,) = mg.grad(y1.sum(), [x])
    assert_close(g.data, y1.data, 0, 0, "dropout gradient vs mask")
    mg.manual_seed(3)
    assert_close(F.dropout(x, 0.3).data, y1.data, 0, 0, "same seed, same mask")
    assert not np.array_equal(F.dropout(x, 0.3).data, y1.data)  # next draw, new mask


def upsample_ref(x, s):
    n, c, h, w = x.shape
    y = np.zeros((n, c, h * s, w * s))
    for i in range(h * s):
        for j in range(w * s):
            y[:, :, i, j] = x[:, :, i // s, j // s]
    return y


def block_sum_ref(g, s):
    n, c, hs, ws = g.shape
    out = np.zeros((n, c, hs // s, ws // s))
    for i in range(hs):
        for j in range(ws):
            out[:, :, i // s, j // s] += g[:, :, i, j]
    return out


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 2), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 3))
def test_upsample_nearest2d(n, c, h, w, s):
    x = np.random.default_rng(2).standard_normal((n, c, h, w))
    OpTest("upsample_nearest2d", lambda x: F.upsample_nearest2d(x, s), [x],
           reference=lambda x: upsample_ref(x, s),
           vjp_reference=lambda x, gy: (block_sum_ref(gy, s),), params={"scale_factor": s}).check()
    g = np.random.default_rng(3).standard_normal((n, c, h * s, w * s))
    OpTest("block_sum", lambda g: BlockSum(s)(g), [g], reference=lambda g: block_sum_ref(g, s),
           vjp_reference=lambda g, gy: (upsample_ref(gy, s),), params={"s": s}).check()


@pytest.mark.parametrize("scale", [0, 1.5, -2])
def test_upsample_bad_scale(scale):
    with pytest.raises(ValueError, match="scale_factor must be a positive integer"):
        F.upsample_nearest2d(mg.tensor(np.zeros((1, 1, 2, 2))), scale)
