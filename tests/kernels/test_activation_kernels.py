"""The leaky ReLU kernels against np.where."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from minigan import backend
from minigan.kernels import activation as K
from minigan.kernels._dispatch import PARALLEL_MIN_SIZE
from minigan.testing import assert_close, devices


@pytest.mark.parametrize("device", devices())
@settings(max_examples=30, deadline=None)
@given(array_shapes(min_dims=0, max_dims=4, max_side=5), st.floats(0, 1),
       st.sampled_from([np.float32, np.float64]))
def test_leaky_relu_and_grad_against_numpy(device, shape, slope, dtype):
    gen = np.random.default_rng(0)
    x, gy = gen.standard_normal(shape).astype(dtype), gen.standard_normal(shape).astype(dtype)
    x.reshape(-1)[:1] = 0  # the kink itself takes the slope side
    y = K.leaky_relu(backend.to_device(x, device), slope)
    gx = K.leaky_relu_grad(backend.to_device(x, device), backend.to_device(gy, device), slope)
    s = dtype(slope)
    assert y.dtype == gx.dtype == dtype and y.shape == gx.shape == shape
    assert_close(y, np.where(x > 0, x, x * s), 0, 0, f"leaky_relu {shape} slope {slope}")
    assert_close(gx, np.where(x > 0, gy, gy * s), 0, 0, f"leaky_relu_grad {shape} slope {slope}")


def test_non_contiguous_and_parallel_path():
    gen = np.random.default_rng(1)
    x = gen.standard_normal((300, 400)).astype(np.float32).T  # a transposed view
    assert x.size >= PARALLEL_MIN_SIZE and not x.flags.c_contiguous
    y = K.leaky_relu(x, 0.2)
    assert_close(y, np.where(x > 0, x, np.float32(0.2) * x), 0, 0, "leaky_relu, parallel")
    gy = gen.standard_normal(x.shape).astype(np.float32)
    assert_close(K.leaky_relu_grad(x, gy, 0.2), np.where(x > 0, gy, np.float32(0.2) * gy), 0, 0,
                 "leaky_relu_grad, parallel")
    assert not np.shares_memory(y, x)  # the input is not overwritten
