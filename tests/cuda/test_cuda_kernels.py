"""CUDA kernels against their CPU twins.

Under NUMBA_ENABLE_CUDASIM=1 the CUDA wrappers run on NumPy arrays in the simulator (one Python
thread per GPU thread, so tiny shapes and 16-thread blocks); on a machine with a GPU the same
cases run on CuPy arrays through the device dispatch, and the functional ops, optimizers and a
whole training step are compared with the CPU.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numba
import numpy as np
import pytest

import minigan
from minigan import backend, nn
from minigan import functional as F
from minigan.kernels import _cuda, activation, conv, dropout, layout, loss, norm, optim

pytestmark = [pytest.mark.cuda,  # the simulator's uint64 hash wraps around, as it should
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]

SIM = _cuda.SIMULATOR
GPU = _cuda.cuda is not None and not SIM and _cuda.cuda.is_available() and \
    backend.cuda_available()
MODES = [pytest.param("numpy", marks=pytest.mark.skipif(
             not SIM and not GPU, reason="CUDA kernels need the simulator "
             "(NUMBA_ENABLE_CUDASIM=1) or a GPU; neither is here")),
         pytest.param("cupy", marks=pytest.mark.skipif(
             not GPU, reason="needs a GPU with CuPy and numba-cuda: "
             f"{backend.cuda_unavailable_reason() or _cuda.missing_reason() or 'simulator on'}"))]
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a GPU with CuPy and numba-cuda (not the "
                               "simulator)")
DTYPES = [np.float64, np.float32]
KERNELS = {k.name: k for k in _cuda.all_kernels()}


def _argtype(a):
    """The numba type a kernel argument is launched as (NumPy or CuPy array, or scalar)."""
    if hasattr(a, "ndim") and not isinstance(a, np.generic):
        layout = "C" if a.flags.c_contiguous else "A"
        return numba.types.Array(numba.from_dtype(a.dtype), a.ndim, layout)
    return numba.typeof(a)


class Device:
    """Runs a kernel family's CUDA twin in one mode and records what was launched.

    mode 'numpy': the CUDA wrapper itself, on NumPy arrays (the simulator, or numba's copies
    on a GPU); mode 'cupy': the public dispatching function, on CuPy arrays.
    """

    def __init__(self, mode: str, monkeypatch):
        self.mode = mode
        self.launched: set[str] = set()
        by_id = {id(k.dispatcher): k for k in KERNELS.values()}
        real = _cuda.launch

        def launch(kern, blocks, threads, *args):
            info = by_id[id(kern)]
            got = tuple(_argtype(a) for a in args)
            assert got in _cuda.signatures(info), \
                f"{info.name} launched with {got}, not one of its declared signatures"
            self.launched.add(info.name)
            real(kern, blocks, threads, *args)

        monkeypatch.setattr(_cuda, "launch", launch)
        if mode == "numpy":  # few threads: grid-stride loops and block reductions still wrap
            monkeypatch.setattr(_cuda, "THREADS", 16)
            monkeypatch.setattr(_cuda, "MAX_BLOCKS", 2)

    def put(self, a):
        return backend.to_device(a, "cuda") if self.mode == "cupy" else a

    def run(self, fn, *args):
        """fn's CUDA twin on args; results come back as NumPy arrays."""
        impl = fn if self.mode == "cupy" else fn.impls["cuda"]
        out = impl(*(self.put(a) if isinstance(a, np.ndarray) else a for a in args))
        if isinstance(out, tuple):
            return tuple(backend.to_numpy(o) for o in out)
        return None if out is None else backend.to_numpy(out)


@pytest.fixture(params=MODES)
def dev(request, monkeypatch):
    return Device(request.param, monkeypatch)


def close(got, want, dtype, what, tol32=2e-6):
    tol = 1e-12 if dtype == np.float64 else tol32
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol,
                               err_msg=f"{what} ({np.dtype(dtype).name}, shape {np.shape(want)})")


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu(dev, dtype):
    x = np.random.default_rng(0).standard_normal(70).astype(dtype)  # 70 > 2 blocks x 16 threads
    x[:3] = 0.0
    gy = np.random.default_rng(1).standard_normal(70).astype(dtype)
    for slope in (0.2, 0.0):
        close(dev.run(activation.leaky_relu, x, slope), activation.leaky_relu(x, slope), dtype,
              f"leaky_relu slope {slope}")
        close(dev.run(activation.leaky_relu_grad, x, gy, slope),
              activation.leaky_relu_grad(x, gy, slope), dtype, f"leaky_relu_grad slope {slope}")
    assert dev.launched == {"_leaky_relu_cuda", "_leaky_relu_grad_cuda"}


def test_a_numba_cuda_that_does_not_know_this_numpy_says_what_to_install():
    """numba-cuda 0.30 overloads np.row_stack, which NumPy 2.5 removed: its first compilation
    (inside the first launch) then fails with a bare AttributeError. The launch says why."""
    if _cuda.cuda is None:
        pytest.skip(_cuda.missing_reason())

    class Kernel:
        def __getitem__(self, config):
            def compile_and_run(*args):
                raise AttributeError("module 'numpy' has no attribute 'row_stack'")
            return compile_and_run

    with pytest.raises(RuntimeError, match=r"cannot compile kernels with NumPy .*"
                       r"pip install 'numpy<2\.5'"):
        _cuda.launch(Kernel(), 1, 1, np.zeros(1))

    class Other(Kernel):
        def __getitem__(self, config):
            def run(*args):
                raise AttributeError("'NoneType' object has no attribute 'shape'")
            return run
    with pytest.raises(AttributeError, match="NoneType"):  # other errors pass through as they are
        _cuda.launch(Other(), 1, 1, np.zeros(1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_kernels_keep_a_0d_array_0d(dev, dtype):
    """A 0-d input gives a 0-d output, as on the CPU (ascontiguousarray alone makes it 1-d)."""
    x, gy = np.asarray(-1.5, dtype), np.asarray(2.0, dtype)
    for got, want, what in [
            (dev.run(activation.leaky_relu, x, 0.2), activation.leaky_relu(x, 0.2), "leaky_relu"),
            (dev.run(activation.leaky_relu_grad, x, gy, 0.2),
             activation.leaky_relu_grad(x, gy, 0.2), "leaky_relu_grad"),
            (dev.run(dropout.dropout, x, 0.3, 7)[0], dropout.dropout(x, 0.3, 7)[0], "dropout")]:
        assert np.shape(got) == np.shape(want) == (), f"{what}: shape {np.shape(got)}"
        np.testing.assert_array_equal(got, want, err_msg=what)


GEOMETRIES = [  # (C, H, W, N), (kh, kw), (sh, sw), (ph, pw)
    ((2, 5, 4, 2), (3, 2), (2, 1), (1, 0)),
    ((1, 3, 3, 1), (3, 3), (1, 1), (1, 1)),
    ((2, 4, 5, 1), (1, 1), (2, 3), (0, 0)),
    ((1, 2, 2, 1), (3, 3), (2, 2), (2, 1)),
    ((3, 3, 3, 5), (2, 2), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_im2col_col2im(dev, dtype, geometry):
    shape, (kh, kw), (sh, sw), (ph, pw) = geometry
    oh = (shape[1] + 2 * ph - kh) // sh + 1
    ow = (shape[2] + 2 * pw - kw) // sw + 1
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    args = (kh, kw, sh, sw, ph, pw, oh, ow)
    close(dev.run(conv.im2col, x, *args), conv.im2col(x, *args), dtype, f"im2col {geometry}")
    col = rng.standard_normal((shape[0] * kh * kw, oh * ow * shape[3])).astype(dtype)
    close(dev.run(conv.col2im, col, shape, *args), conv.col2im(col, shape, *args), dtype,
          f"col2im {geometry}")
    assert dev.launched == {"_im2col_cuda", "_col2im_cuda"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 70), (37, 5), (33, 65)], ids=str)
def test_transpose2d(dev, dtype, shape):
    a = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(dev.run(conv.transpose2d, a), a.T)
    assert dev.launched == {"_transpose_cuda"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_same_mask_as_cpu(dev, dtype):
    x = np.random.default_rng(3).standard_normal((5, 13)).astype(dtype)
    for p, key in ((0.3, 12345), (0.9, 2**62 + 7)):
        y, mask = dev.run(dropout.dropout, x, p, key)
        y_cpu, mask_cpu = dropout.dropout(x, p, key)
        np.testing.assert_array_equal(mask, mask_cpu, err_msg=f"dropout mask p={p}")
        np.testing.assert_array_equal(y, y_cpu, err_msg=f"dropout output p={p}")
    assert dev.launched == {"_dropout_cuda"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_batch_last_same_mask_as_cpu(dev, dtype):
    """A batch-last x (a convolution's output) keeps its layout and gets the mask a contiguous
    copy of it gets: each element's fate is drawn by its (N, ...) index on both devices."""
    mem = np.random.default_rng(5).standard_normal((3, 4, 37)).astype(dtype)  # (C, L, N)
    x = dev.put(mem).transpose(2, 0, 1)  # (N, C, L) view
    assert layout.batch_last(x)
    for p, key in ((0.3, 99), (0.7, 2**61 + 3)):
        y, mask = dev.run(dropout.dropout, x, p, key)
        y_ref, mask_ref = dropout.dropout(np.ascontiguousarray(mem.transpose(2, 0, 1)), p, key)
        np.testing.assert_array_equal(mask, mask_ref, err_msg=f"batch-last dropout mask p={p}")
        np.testing.assert_array_equal(y, y_ref, err_msg=f"batch-last dropout output p={p}")
    assert dev.launched == {"_dropout_batch_last_cuda"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 2, 13), (40, 3, 1), (2, 1, 1)], ids=str)
def test_batch_norm(dev, dtype, shape):
    rng = np.random.default_rng(4)
    x = (10.0 + rng.standard_normal(shape)).astype(dtype)  # 3*13 > 16 threads: loops wrap
    gamma = rng.standard_normal(shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    got = dev.run(norm.batch_norm_forward, x, gamma, beta, 1e-5)
    want = norm.batch_norm_forward(x, gamma, beta, 1e-5)
    for g, w, name in zip(got, want, ("y", "mean", "invstd")):
        close(g, w, dtype, f"batch_norm_forward {name}", tol32=2e-5)
    mean, invstd = want[1], want[2]
    got = dev.run(norm.batch_norm_backward, x, gy, mean, invstd, gamma)
    want = norm.batch_norm_backward(x, gy, mean, invstd, gamma)
    for g, w, name in zip(got, want, ("gx", "ggamma", "gbeta")):
        close(g, w, dtype, f"batch_norm_backward {name}", tol32=5e-5)
    assert dev.launched == {"_bn_forward_cuda", "_bn_backward_cuda"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_batch_norm_with_leaky_relu(dev, dtype, slope):
    """The fused CPU kernels' interface on the GPU (batchnorm, then the activation's kernel):
    the same values as the CPU's fused kernels."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 13)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 2).astype(dtype), rng.standard_normal(2).astype(dtype)
    gz = rng.standard_normal(x.shape).astype(dtype)
    got = dev.run(norm.batch_norm_forward, x, gamma, beta, 1e-5, slope)
    want = norm.batch_norm_forward(x, gamma, beta, 1e-5, slope)
    assert (want[0] < 0).any() == (slope > 0) and (want[0] == 0).any() == (slope == 0)
    for g, w, name in zip(got, want, ("z", "mean", "invstd")):
        close(g, w, dtype, f"batch_norm_forward(slope={slope}) {name}", tol32=2e-5)
    z, mean, invstd = want
    got = dev.run(norm.batch_norm_backward, x, gz, mean, invstd, gamma, z, slope)
    want = norm.batch_norm_backward(x, gz, mean, invstd, gamma, z, slope)
    for g, w, name in zip(got, want, ("gx", "ggamma", "gbeta")):
        close(g, w, dtype, f"batch_norm_backward(slope={slope}) {name}", tol32=5e-5)
    assert dev.launched == {"_bn_forward_cuda", "_bn_backward_cuda", "_leaky_relu_cuda",
                            "_leaky_relu_grad_cuda"}


def test_batch_norm_variance_is_sound(dev):
    """A large mean and a small spread: one-pass E[x^2] - E[x]^2 would lose every digit."""
    x = 1e8 + np.random.default_rng(5).standard_normal((4, 2, 9))
    _, mean, invstd = dev.run(norm.batch_norm_forward, x, np.ones(2), np.zeros(2), 0.0)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-15)
    np.testing.assert_allclose(1 / invstd**2, x.var(axis=(0, 2)), rtol=1e-7)


OPTIMIZERS = {
    "adam": (optim.adam_update, 2, lambda t: (1e-2, 0.9, 0.999, 1e-8, 0.01, 1 - 0.9**t,
                                               1 - 0.999**t)),
    "rmsprop": (optim.rmsprop_update, 1, lambda t: (1e-2, 0.99, 1e-8, 0.01)),
    "sgd": (optim.sgd_update, 1, lambda t: (1e-2, 0.9, 0.1, 0.01, False, t == 1)),
    "sgd_nesterov": (optim.sgd_update, 1, lambda t: (1e-2, 0.9, 0.0, 0.0, True, t == 1)),
    "sgd_plain": (optim.sgd_update, 1, lambda t: (1e-2, 0.0, 0.0, 0.0, False, t == 1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_update(dev, dtype, name):
    fn, n_state, hyper = OPTIMIZERS[name]
    rng = np.random.default_rng(6)
    p = rng.standard_normal((7, 5)).astype(dtype)
    state = [np.zeros_like(p) for _ in range(n_state)]
    p_cpu, state_cpu = p.copy(), [s.copy() for s in state]
    p_dev, state_dev = dev.put(p.copy()), [dev.put(s.copy()) for s in state]
    for t in (1, 2, 3):
        g = rng.standard_normal(p.shape).astype(dtype)
        fn(p_cpu, g, *state_cpu, *hyper(t))
        impl = fn if dev.mode == "cupy" else fn.impls["cuda"]
        impl(p_dev, dev.put(g.T.copy().T), *state_dev, *hyper(t))  # a non-contiguous gradient
    close(backend.to_numpy(p_dev), p_cpu, dtype, f"{name} parameter", tol32=1e-6)
    for s_dev, s_cpu in zip(state_dev, state_cpu):
        close(backend.to_numpy(s_dev), s_cpu, dtype, f"{name} state", tol32=1e-6)
    assert dev.launched == {"adam": {"_adam_cuda"}, "rmsprop": {"_rmsprop_cuda"}}.get(
        name, {"_sgd_cuda"})


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits(dev, dtype):
    rng = np.random.default_rng(7)
    z = np.concatenate([[-80.0, -30.0, 0.0, 30.0, 80.0], rng.standard_normal(40) * 4])
    z = z.astype(dtype).reshape(5, 9)
    t = rng.uniform(size=z.shape).astype(dtype)
    gl = rng.standard_normal(z.shape).astype(dtype)
    close(dev.run(loss.bce_with_logits, z, t), loss.bce_with_logits(z, t), dtype, "bce")
    close(dev.run(loss.bce_with_logits_grad, z, t, gl), loss.bce_with_logits_grad(z, t, gl),
          dtype, "bce grad")
    assert dev.launched == {"_bce_with_logits_cuda", "_bce_with_logits_grad_cuda"}


def test_every_kernel_has_a_case():
    """Each test above asserts which kernels it launched; together they cover all of them."""
    covered = {"_leaky_relu_cuda", "_leaky_relu_grad_cuda", "_im2col_cuda", "_col2im_cuda",
               "_dropout_cuda", "_bn_forward_cuda", "_bn_backward_cuda", "_adam_cuda",
               "_rmsprop_cuda", "_sgd_cuda", "_bce_with_logits_cuda",
               "_bce_with_logits_grad_cuda", "_transpose_cuda", "_dropout_batch_last_cuda"}
    assert covered == set(KERNELS), f"kernels without a test: {set(KERNELS) - covered}"


def test_launch_without_numba_cuda_says_how_to_install(monkeypatch):
    monkeypatch.setattr(_cuda, "cuda", None)
    monkeypatch.setattr(_cuda, "_IMPORT_ERROR", "ImportError: no module named numba.cuda")
    with pytest.raises(RuntimeError, match=r"pip install 'minigan\[cuda13\]'"):
        _cuda.launch(KERNELS["_leaky_relu_cuda"].dispatcher, 1, 1, np.zeros(1))


def test_minigan_imports_and_runs_on_cpu_without_numba_cuda():
    code = textwrap.dedent("""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "numba.cuda" or name.startswith("numba.cuda.") \\
                        or name.startswith("numba_cuda"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np, minigan
        from minigan import functional as F
        from minigan.kernels import _cuda
        y = F.leaky_relu(minigan.tensor(np.array([-1.0, 2.0])), 0.5)
        assert y.numpy().tolist() == [-0.5, 2.0]
        kernels = _cuda.all_kernels()
        assert _cuda.cuda is None and kernels
        assert all(isinstance(k.dispatcher, _cuda._Missing) for k in kernels)
        print(_cuda.missing_reason())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "pip install 'minigan[cuda13]'" in out.stdout


@pytest.mark.skipif(backend.cuda_available(), reason="CUDA works here")
def test_asking_for_cuda_without_it_gives_one_line_reason():
    for make in (lambda: minigan.tensor([1.0], device="cuda"),
                 lambda: minigan.randn(2, 3, device="cuda"),
                 lambda: nn.Linear(2, 3, device="cuda"),
                 lambda: nn.Linear(2, 3).to("cuda"),
                 lambda: minigan.tensor([1.0]).to("cuda")):
        with pytest.raises(RuntimeError) as e:
            make()
        msg = str(e.value)
        assert "\n" not in msg and "cuda" in msg and backend.cuda_unavailable_reason() in msg


def test_cuda_needs_numba_cuda_and_not_the_simulator(monkeypatch):
    """With a working cupy, cuda is still refused (with the reason) when kernels cannot run."""
    import types

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    fake.zeros = lambda n: None
    monkeypatch.setitem(sys.modules, "cupy", fake)
    for cuda_mod, sim, expect in ((None, False, "numba-cuda is not installed"),
                                  (_cuda.cuda, True, "NUMBA_ENABLE_CUDASIM=1")):
        monkeypatch.setattr(backend, "_cupy", None)
        monkeypatch.setattr(backend, "_cupy_error", None)
        monkeypatch.setattr(_cuda, "cuda", cuda_mod)
        monkeypatch.setattr(_cuda, "SIMULATOR", sim)
        assert not backend.cuda_available()
        with pytest.raises(RuntimeError, match=expect):
            minigan.tensor([1.0], device="cuda")


# ---- on a GPU: the functional ops, optimizers and a training step, through CuPy


def _pair_of(shape, seed, requires_grad=True):
    x = np.random.default_rng(seed).standard_normal(shape)
    return (minigan.tensor(x, dtype=np.float64, requires_grad=requires_grad),
            minigan.tensor(x, dtype=np.float64, device="cuda", requires_grad=requires_grad))


OPS = {
    "conv2d": (lambda x, w: F.conv2d(x, w, None, 2, 1), [(2, 3, 7, 6), (4, 3, 3, 3)]),
    "conv_transpose2d": (lambda x, w: F.conv_transpose2d(x, w, None, 2, 1, (1, 0)),
                         [(2, 3, 4, 5), (3, 2, 4, 3)]),
    "batch_norm": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                   [(4, 3, 5, 5), (3,), (3,)]),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), [(3, 50)]),
    "bce_logits": (lambda z, t: F.binary_cross_entropy_with_logits(z, t), [(6, 7), (6, 7)]),
    "getitem": (lambda x: x[[0, 2, 0]] * x[1:3].sum(), [(4, 5)]),
    "upsample": (lambda x: F.upsample_nearest2d(x, 2), [(1, 2, 3, 3)]),
}


@needs_gpu
@pytest.mark.parametrize("name", list(OPS))
def test_functional_op_matches_cpu(name):
    """Forward, gradient and second-order gradient of each op on CuPy against the CPU."""
    fn, shapes = OPS[name]
    pairs = [_pair_of(s, i) for i, s in enumerate(shapes)]
    results = []
    for side in (0, 1):
        xs = [p[side] for p in pairs]
        y = fn(*xs)
        s = (y * y).sum()
        gs = minigan.grad(s, xs, create_graph=True, allow_unused=True)
        gg = sum((g * g).sum() for g in gs if g is not None)
        ggs = minigan.grad(gg, xs, allow_unused=True)
        results.append([y.numpy()] + [g.numpy() for g in gs if g is not None]
                       + [g.numpy() for g in ggs if g is not None])
    for k, (a, b) in enumerate(zip(*results)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10, err_msg=f"{name} output {k}")


@needs_gpu
def test_dropout_same_mask_on_both_devices():
    x_cpu, x_gpu = _pair_of((8, 9), 0, requires_grad=False)
    minigan.manual_seed(3)
    a = F.dropout(x_cpu, 0.4).numpy()
    minigan.manual_seed(3)
    b = F.dropout(x_gpu, 0.4).numpy()
    np.testing.assert_array_equal(a, b)


def _dcgan_pair(device):
    minigan.manual_seed(0)
    g = nn.Sequential(nn.ConvTranspose2d(4, 8, 4, 1, 0), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
                      nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Tanh())
    d = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(0.3),
                      nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    return g.to(device, np.float64), d.to(device, np.float64)


def _train(device, steps, opt_cls):
    g, d = _dcgan_pair(device)
    opt_g, opt_d = opt_cls(g.parameters(), lr=1e-3), opt_cls(d.parameters(), lr=1e-3)
    minigan.manual_seed(1)
    ones = minigan.tensor(np.ones((6, 1)), dtype=np.float64, device=device)
    zeros = minigan.tensor(np.zeros((6, 1)), dtype=np.float64, device=device)
    z_all = [minigan.tensor(np.random.default_rng(s).standard_normal((6, 4, 1, 1)),
                            dtype=np.float64, device=device) for s in range(steps)]
    real = minigan.tensor(np.random.default_rng(99).uniform(-1, 1, (6, 1, 8, 8)),
                          dtype=np.float64, device=device)
    losses = []

    def step(z):
        fake = g(z)
        loss_d = F.binary_cross_entropy_with_logits(d(real), ones) + \
            F.binary_cross_entropy_with_logits(d(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_d, loss_g

    for z in z_all:
        losses.append(step(z))
    return g, [(a.item(), b.item()) for a, b in losses], step, z_all


@needs_gpu
@pytest.mark.parametrize("opt", ["Adam", "RMSprop", "SGD"])
def test_training_steps_match_cpu(opt):
    import minigan.optim as O
    g_cpu, l_cpu, _, _ = _train("cpu", 3, getattr(O, opt))
    g_gpu, l_gpu, _, _ = _train("cuda", 3, getattr(O, opt))
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-9, atol=1e-12)
    # The two devices sum in different orders (cuBLAS, OpenBLAS), so a gradient differs by
    # ~1e-17 in absolute terms (float64 rounding of its terms). Adam and RMSprop divide by
    # sqrt(v) + eps: for a gradient near zero that amplifies by up to lr / eps = 1e5, so a
    # parameter may move by ~1e-12 more on one device (seen: 2.1e-12 on RMSprop, H200).
    # atol 1e-10 covers that with room; a wrong kernel moves parameters by ~lr = 1e-3.
    for (k, a), b in zip(g_cpu.state_dict().items(), g_gpu.state_dict().values()):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10, err_msg=k)


@needs_gpu
def test_training_step_makes_no_host_synchronisation():
    """A whole GAN step (forward, backward, Adam) on the GPU never waits for the device."""
    cupyx = pytest.importorskip("cupyx")
    import minigan.optim as O
    _, _, step, z_all = _train("cuda", 1, O.Adam)  # compiles every kernel first
    with cupyx.allow_synchronize(False):
        loss_d, loss_g = step(z_all[0])
    assert np.isfinite(loss_d.item()) and np.isfinite(loss_g.item())


@needs_gpu
def test_kernels_run_on_cupys_current_stream():
    cupy = pytest.importorskip("cupy")
    x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    want = activation.leaky_relu(x, 0.1)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        xg = cupy.asarray(x)
        y = activation.leaky_relu(xg * 1, 0.1)  # queued behind the multiply on s
        z = y + 0  # and the add behind the kernel
    s.synchronize()
    np.testing.assert_array_equal(backend.to_numpy(z), want)


@needs_gpu
def test_trainer_steps_between_host_reads_make_no_host_synchronisation(tmp_path):
    """The Trainer's own step (D and G updates, the logged scalars, the progress bar) keeps its
    statistics on the device until the read every `host_every` steps."""
    cupyx = pytest.importorskip("cupyx")
    from minigan.gan import TrainConfig, Trainer
    config = TrainConfig(dataset="ellipses", limit=64, image_size=8, arch="dcgan", width=4,
                         z_dim=8, batch_size=8, steps=2, out=str(tmp_path / "run"),
                         progress=False, device="cuda", log_every=100, fd_every=0)
    trainer = Trainer(config)
    trainer.fit()                               # compiles every kernel, writes the first files
    assert trainer.host_every == 100
    batches = iter(trainer.loader)
    reals = [next(batches) for _ in range(3)]
    with cupyx.allow_synchronize(False):
        for real in reals:
            stats = trainer.train_step(real)
            trainer.step += 1
            trainer._after_step(stats, trainer._bar or _NoBar())
    trainer._read_pending()
    assert trainer._window_n == 3 and np.isfinite(trainer._window["loss_d"])


@needs_gpu
def test_top_k_picks_the_cpus_samples_on_the_gpu_without_waiting_for_it():
    """Top-k training's choice (argsort of D's scores, ties to the earlier sample) and its
    gradient (a scatter) on CuPy arrays: the CPU's rows, and no host synchronisation."""
    cupy = pytest.importorskip("cupy")
    cupyx = pytest.importorskip("cupyx")
    from minigan.autograd import Tensor
    from minigan.gan.steps import top_k
    s = np.random.default_rng(0).standard_normal((32, 1)).astype(np.float32)
    s[5] = s[20] = s[7]                                   # a three-way tie
    want = top_k(Tensor(s, requires_grad=True), 11)
    x = Tensor(cupy.asarray(s), requires_grad=True)
    with cupyx.allow_synchronize(False):
        kept = top_k(x, 11)
        kept.sum().backward()
    np.testing.assert_array_equal(backend.to_numpy(kept.data), want.data)
    grad = backend.to_numpy(x.grad.data).ravel()
    assert sorted(np.flatnonzero(grad).tolist()) == sorted(
        np.argsort(-s.ravel(), kind="stable")[:11].tolist())


class _NoBar:
    def update(self, n):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass


def test_direct_launch_tells_apart_what_numba_types_apart():
    """The direct path's cache key (`_cuda._kind`) separates arguments that numba compiles
    different overloads for: an int that needs uint64, float32 and float64 scalars."""
    k = _cuda._kind
    assert k(1) == k(2**63 - 1) != k(2**63)
    assert k(0.5) != k(np.float32(0.5)) != k(np.float64(0.5))
    assert k(np.uint64(3)) != k(np.int64(3)) and k(True) != k(1)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_launch_builds_numbas_parameter_list(dtype):
    """The direct path's parameters for a CuPy launch are the ones numba's own launch builds
    (`_Kernel._prepare_args`), for arrays (a strided 2-D view too) and scalars."""
    cupy = pytest.importorskip("cupy")
    base = cupy.arange(60, dtype=dtype).reshape(6, 10)
    cases = [(base.reshape(-1), dtype(0.2), cupy.empty(60, dtype)),
             (base[::2, 1:7], np.uint64(2**63 + 5), 3, True, 0.25)]
    kern = KERNELS["_leaky_relu_cuda"].dispatcher
    _cuda.launch(kern, 1, 32, cupy.zeros(4, dtype), dtype(0.1), cupy.zeros(4, dtype))
    overload = next(iter(kern.overloads.values()))  # its _prepare_args depends on no overload
    for args in cases:
        tys = tuple(kern.typeof_pyval(a) for a in args)
        ours, numbas = [], []
        for ty, a in zip(tys, args):
            _cuda._packer(ty)(a, ours)
            overload._prepare_args(ty, a, 0, [], numbas)
        assert [(type(v), getattr(v, "value", v)) for v in ours] == \
               [(type(v), getattr(v, "value", v)) for v in numbas]


@needs_gpu
def test_direct_launch_trains_bit_for_bit_as_the_dispatcher(monkeypatch):
    """Three GAN steps with every launch through numba's dispatcher, then with the direct
    path: the same losses and weights to the bit, and once the kernels are compiled, the
    direct path's steps launch nothing through the dispatcher."""
    import minigan.optim as O
    monkeypatch.setattr(_cuda, "DIRECT", False)
    g_a, l_a, _, _ = _train("cuda", 3, O.Adam)
    monkeypatch.setattr(_cuda, "DIRECT", True)
    monkeypatch.setattr(_cuda, "_direct", {})
    g_b, l_b, step, z_all = _train("cuda", 3, O.Adam)
    assert l_a == l_b
    for (k, a), b in zip(g_a.state_dict().items(), g_b.state_dict().values()):
        np.testing.assert_array_equal(backend.to_numpy(b), backend.to_numpy(a), err_msg=k)
    built = _cuda._direct
    assert built and all(built.values()), \
        f"no direct launcher for {[key for key, d in built.items() if not d]}"
    through = []
    dispatcher = type(next(iter(built))[0])
    real = dispatcher.__getitem__
    monkeypatch.setattr(dispatcher, "__getitem__",
                        lambda self, config: through.append(self) or real(self, config))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # e.g. cuda.core on its stream
        step(z_all[0])
    assert through == [], f"{len(through)} launches still went through the dispatcher"


def test_direct_launch_stands_aside_where_it_cannot_stand_in(monkeypatch):
    """No direct launcher for host arrays (numba copies those), for argument types it does not
    pack, or where this numba-cuda lacks what it needs: those launches keep the dispatcher."""
    class Kern:  # a dispatcher as far as `_Direct.make` looks at one
        overloads = {}

        def __init__(self, typeof):
            self.typeof_pyval = typeof
    if _cuda.cuda is not None:
        assert _cuda._Direct.make(Kern(numba.typeof), (np.zeros(3, np.float32),)) is None
        assert _cuda._packer(numba.types.complex64) is None

    def broken(a):
        raise AttributeError("no typeof_pyval in this numba-cuda")
    monkeypatch.setattr(_cuda.backend, "current_stream_ptr", lambda: 0)
    assert _cuda._Direct.make(Kern(broken), (np.float32(1.0),)) is None
