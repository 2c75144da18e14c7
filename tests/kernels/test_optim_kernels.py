"""The fused optimizer kernels: one in-place step against the NumPy formulas."""

import re

import numpy as np
import pytest

from minigan import backend
from minigan.kernels import optim as K
from minigan.kernels._dispatch import PARALLEL_MIN_SIZE
from minigan.testing import assert_close, devices

TOL = {np.float32: 1e-6, np.float64: 1e-14}
SIZES = [(7,), (3, 4), (PARALLEL_MIN_SIZE + 5,)]


def arrays(shape, dtype, seed, n):
    gen = np.random.default_rng(seed)
    return [gen.standard_normal(shape).astype(dtype) for _ in range(n)]


def run(kernel, device, arrays_, *hyper):
    """Run the kernel on device copies; return host copies of the arrays it updated."""
    d = [backend.to_device(a.copy(), device) for a in arrays_]
    kernel(*d, *hyper)
    return [backend.to_numpy(a) for a in d]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_step(device, shape, dtype):
    p, g, m, v = arrays(shape, dtype, 0, 4)
    v = np.abs(v)
    lr, b1, b2, eps, wd, t = 1e-3, 0.9, 0.999, 1e-8, 0.01, 3
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    p1, _, m1, v1 = run(K.adam_update, device, [p, g, m, v], lr, b1, b2, eps, wd, bc1, bc2)
    gd = g.astype(np.float64) + wd * p
    m_ref = b1 * m + (1 - b1) * gd
    v_ref = b2 * v + (1 - b2) * gd ** 2
    p_ref = p - lr / bc1 * m_ref / (np.sqrt(v_ref) / np.sqrt(bc2) + eps)
    for got, want, what in ((m1, m_ref, "exp_avg"), (v1, v_ref, "exp_avg_sq"), (p1, p_ref, "p")):
        assert got.dtype == dtype
        assert_close(got, want, TOL[dtype], TOL[dtype], f"adam {what} {shape} {dtype.__name__}")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rmsprop_step(device, shape, dtype):
    p, g, sq = arrays(shape, dtype, 1, 3)
    sq = np.abs(sq)
    lr, alpha, eps, wd = 1e-2, 0.99, 1e-8, 0.1
    p1, _, sq1 = run(K.rmsprop_update, device, [p, g, sq], lr, alpha, eps, wd)
    gd = g.astype(np.float64) + wd * p
    sq_ref = alpha * sq + (1 - alpha) * gd ** 2
    p_ref = p - lr * gd / (np.sqrt(sq_ref) + eps)
    assert_close(sq1, sq_ref, TOL[dtype], TOL[dtype], f"rmsprop square_avg {shape}")
    assert_close(p1, p_ref, TOL[dtype], TOL[dtype], f"rmsprop p {shape}")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,dampening,nesterov,first", [
    (0.0, 0.0, False, False), (0.9, 0.0, False, True), (0.9, 0.0, False, False),
    (0.9, 0.0, True, False), (0.9, 0.5, False, False)])
def test_sgd_step(device, shape, dtype, momentum, dampening, nesterov, first):
    p, g, buf = arrays(shape, dtype, 2, 3)
    lr, wd = 0.1, 0.01
    p1, _, buf1 = run(K.sgd_update, device, [p, g, buf], lr, momentum, dampening, wd, nesterov,
                      first)
    d = g.astype(np.float64) + wd * p
    if momentum:
        b = d if first else momentum * buf + (1 - dampening) * d
        assert_close(buf1, b, TOL[dtype], TOL[dtype], f"sgd momentum_buffer {shape}")
        d = d + momentum * b if nesterov else b
    assert_close(p1, p - lr * d, TOL[dtype], TOL[dtype], f"sgd p {shape}")


def test_strided_gradient_is_read_correctly():
    p, m, v = np.zeros(12), np.zeros(12), np.zeros(12)
    g = np.arange(24.0)[::2]  # a strided view
    K.adam_update(p, g, m, v, 1.0, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001)
    assert_close(m, 0.1 * g, 1e-15, 0, "exp_avg from a strided gradient")


@pytest.mark.parametrize("kernel,arrays_,scalars", [
    (K._adam_cpu, 4, 7), (K._rmsprop_cpu, 3, 4), (K._sgd_cpu, 3, 4)])
def test_float32_updates_do_float32_arithmetic(kernel, arrays_, scalars):
    """A float32 update compiles to float32 arithmetic: a Python integer in the loop (`1 - b1`)
    would turn every operation after it into float64 (about 3x slower on a 2-core CPU, and
    rounded unlike the CUDA kernels). Compiled afresh, since numba's cache hides the IR."""
    from numba import njit, types

    f32 = types.float32
    sig = (types.Array(f32, 1, "C"),) * arrays_ + (f32,) * scalars
    if kernel is K._sgd_cpu:  # ... nesterov, first
        sig += (types.boolean,) * 2
    fresh = njit(parallel=True)(kernel.py_func)
    fresh.compile(sig)
    ir = fresh.inspect_llvm(sig)
    assert re.search(r"= f(add|sub|mul|div) (\w+ )*float", ir), "no float32 arithmetic found"
    doubles = re.findall(r"= ((?:fadd|fsub|fmul|fdiv) (?:\w+ )*double|fpext float \S+ to double)",
                         ir)
    assert not doubles, f"{kernel.__name__} does float64 arithmetic on float32 data: {doubles[:3]}"
