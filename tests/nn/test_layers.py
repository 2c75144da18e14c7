"""Every layer, alone and in small DCGAN-shaped stacks: forward against compact float64 NumPy
references, gradcheck and gradgradcheck with respect to the input and every parameter.

The references here are written another way than the functional tests' loops: conv2d through
sliding_window_view + einsum, conv_transpose2d as a scatter of one kernel tap at a time.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import minigan as mg
from minigan import nn
from minigan.testing import OpTest, assert_close


def layer_test(name, layer, x, reference, **kw):
    """An OpTest of (x, *parameters) -> layer(x), with the parameters swapped in for the call."""
    layer.double()
    slots = [(m, n) for m in layer.modules() for n in m._parameters]

    def op(x, *ps):
        layer.to(x.device, x.dtype)  # buffers follow the input's device and dtype
        saved = [m._parameters[n] for m, n in slots]
        for (m, n), p in zip(slots, ps):
            m._parameters[n] = p
        try:
            return layer(x)
        finally:
            for (m, n), p in zip(slots, saved):
                m._parameters[n] = p
    arrays = [x] + [m._parameters[n].numpy() for m, n in slots]
    return OpTest(name, op, arrays, reference=reference, params={"layer": repr(layer)}, **kw)


def conv2d_np(x, w, b, stride, padding):
    (sh, sw), (ph, pw) = stride, padding
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, oH, oW, kH, kW)
    y = np.einsum("ncijkl,ockl->noij", win, w)
    return y if b is None else y + b[None, :, None, None]


def conv_transpose2d_np(x, w, b, stride, padding, output_padding):
    (sh, sw), (ph, pw), (eh, ew) = stride, padding, output_padding
    n, _, h, wd = x.shape
    _, co, kh, kw = w.shape
    full = np.zeros((n, co, (h - 1) * sh + kh + eh, (wd - 1) * sw + kw + ew))
    for i in range(kh):
        for j in range(kw):  # tap (i, j) sends input (iy, ix) to (iy*s + i, ix*s + j)
            full[:, :, i:i + (h - 1) * sh + 1:sh, j:j + (wd - 1) * sw + 1:sw] += np.einsum(
                "nchw,co->nohw", x, w[:, :, i, j])
    oh, ow = (h - 1) * sh - 2 * ph + kh + eh, (wd - 1) * sw - 2 * pw + kw + ew
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    return y if b is None else y + b[None, :, None, None]


def bn_np(x, g, b, mean=None, var=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if mean is None:
        mean, var = x.mean(axes), x.var(axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y if g is None else y * g.reshape(shape) + b.reshape(shape)


def leaky_np(x, slope):
    return np.where(x > 0, x, slope * x)


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.booleans())
def test_linear(n, fin, fout, bias):
    x = np.random.default_rng(0).standard_normal((n, fin))
    layer = nn.Linear(fin, fout, bias=bias)
    layer_test("Linear", layer, x,
               lambda x, w, b=None: x @ w.T + (0 if b is None else b)).check()


@st.composite
def conv_layer_args(draw, transposed=False):
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 2))
    p = draw(st.integers(0, k - 1))
    e = draw(st.integers(0, s - 1)) if transposed else 0
    lo = 1 if transposed else max(1, k - 2 * p)
    h = draw(st.integers(lo, lo + 2))
    if transposed and (h - 1) * s - 2 * p + k + e < 1:
        p = 0
    return {"n": draw(st.integers(1, 2)), "cin": draw(st.integers(1, 2)),
            "cout": draw(st.integers(1, 2)), "k": k, "s": s, "p": p, "e": e, "h": h,
            "bias": draw(st.booleans())}


@settings(max_examples=8, deadline=None)
@given(conv_layer_args())
def test_conv2d(a):
    x = np.random.default_rng(1).standard_normal((a["n"], a["cin"], a["h"], a["h"] + 1))
    layer = nn.Conv2d(a["cin"], a["cout"], a["k"], a["s"], a["p"], bias=a["bias"])
    layer_test("Conv2d", layer, x, lambda x, w, b=None: conv2d_np(
        x, w, b, (a["s"],) * 2, (a["p"],) * 2)).check()


@settings(max_examples=8, deadline=None)
@given(conv_layer_args(transposed=True))
def test_conv_transpose2d(a):
    x = np.random.default_rng(2).standard_normal((a["n"], a["cin"], a["h"], a["h"]))
    layer = nn.ConvTranspose2d(a["cin"], a["cout"], a["k"], a["s"], a["p"], a["e"],
                               bias=a["bias"])
    layer_test("ConvTranspose2d", layer, x, lambda x, w, b=None: conv_transpose2d_np(
        x, w, b, (a["s"],) * 2, (a["p"],) * 2, (a["e"],) * 2)).check()


BN_CASES = [(nn.BatchNorm1d, (4, 3)), (nn.BatchNorm1d, (2, 2, 3)), (nn.BatchNorm2d, (2, 2, 2, 2))]


@pytest.mark.parametrize("cls,shape", BN_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_training(cls, shape, affine):
    gen = np.random.default_rng(3)
    x = gen.standard_normal(shape) * 2 + 1
    layer = cls(shape[1], affine=affine)
    if affine:  # not the default 1 and 0, so that a mix-up between them shows
        layer.weight.data[...] = gen.uniform(0.5, 1.5, shape[1])
        layer.bias.data[...] = gen.standard_normal(shape[1])
    layer_test(cls.__name__, layer, x, lambda x, g=None, b=None: bn_np(x, g, b)).check()


@pytest.mark.parametrize("cls,shape", BN_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_batchnorm_eval_uses_running_statistics(cls, shape):
    gen = np.random.default_rng(4)
    c = shape[1]
    layer = cls(c, eps=1e-3)
    # float32-exact running statistics: the harness casts the buffers for its float32 pass
    mean, var = np.round(gen.standard_normal(c) * 8) / 8, np.round(gen.uniform(1, 3, c) * 8) / 8
    layer.running_mean[...], layer.running_var[...] = mean, var
    layer.eval()
    x = gen.standard_normal(shape)
    layer_test(cls.__name__, layer, x,
               lambda x, g, b: bn_np(x, g, b, mean, var, eps=1e-3)).check()
    plain = cls(c, track_running_stats=False).eval()  # no running stats: batch statistics
    layer_test(cls.__name__, plain, x, lambda x, g, b: bn_np(x, g, b)).check()


def away_from_zero(shape, seed):
    gen = np.random.default_rng(seed)
    return gen.choice([-1.0, 1.0], shape) * gen.uniform(0.1, 2.0, shape)


@pytest.mark.parametrize("layer,ref", [
    (nn.LeakyReLU(0.2), lambda x: leaky_np(x, 0.2)),
    (nn.LeakyReLU(), lambda x: leaky_np(x, 0.01)),
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Flatten(), lambda x: x.reshape(2, -1)),
    (nn.Unflatten(1, (3, 2, 2)), lambda x: x.reshape(2, 3, 2, 2)),
    (nn.Upsample(scale_factor=2), lambda x: x.repeat(2, axis=2).repeat(2, axis=3)),
], ids=lambda v: repr(v) if isinstance(v, nn.Module) else "ref")  # the same ids in every process
def test_parameter_free_layers(layer, ref):
    shape = (2, 12) if isinstance(layer, nn.Unflatten) else (2, 3, 2, 2)
    layer_test(type(layer).__name__, layer, away_from_zero(shape, 5), ref).check()


def test_dropout_layer():
    x = np.random.default_rng(6).standard_normal((3, 5))
    layer = nn.Dropout(0.4)

    def seeded(x):
        mg.manual_seed(0)
        return layer(x)
    OpTest("Dropout", seeded, [x]).check()  # gradcheck and gradgradcheck of a fixed mask
    y = seeded(mg.tensor(x)).data
    kept = y != 0
    assert_close(y[kept], x[kept] / 0.6, 1e-12, 0, "kept values are scaled by 1/(1-p)")
    layer.eval()
    t = mg.tensor(x)
    assert layer(t) is t
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\], got 1.2"):
        nn.Dropout(1.2)


def discriminator():
    """(N, 1, 4, 4) -> (N, 1): conv, LeakyReLU, conv, batchnorm, LeakyReLU, linear."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 4, 2, 1),    # (N, 2, 2, 2)
        nn.LeakyReLU(0.2),
        nn.Conv2d(2, 2, 3, 1, 1, bias=False),
        nn.BatchNorm2d(2),
        nn.LeakyReLU(0.2),
        nn.Flatten(),                # (N, 8)
        nn.Linear(8, 1),
    )


def discriminator_np(x, w1, b1, w2, g, b, wl, bl):
    h = leaky_np(conv2d_np(x, w1, b1, (2, 2), (1, 1)), 0.2)
    h = leaky_np(bn_np(conv2d_np(h, w2, None, (1, 1), (1, 1)), g, b), 0.2)
    return h.reshape(len(x), -1) @ wl.T + bl


def generator():
    """(N, 3) -> (N, 1, 4, 4): linear, unflatten, batchnorm, ReLU, transposed conv, tanh."""
    return nn.Sequential(
        nn.Linear(3, 8),
        nn.Unflatten(1, (2, 2, 2)),  # (N, 2, 2, 2)
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.ConvTranspose2d(2, 1, 4, 2, 1),  # (N, 1, 4, 4)
        nn.Tanh(),
    )


def generator_np(z, wl, bl, g, b, wt, bt):
    h = (z @ wl.T + bl).reshape(len(z), 2, 2, 2)
    h = np.maximum(bn_np(h, g, b), 0)
    return np.tanh(conv_transpose2d_np(h, wt, bt, (2, 2), (1, 1), (0, 0)))


def test_dcgan_shaped_discriminator_second_order():
    """A gradient penalty differentiates D's input gradient again, through conv and batchnorm:
    gradgradcheck with respect to the input and every parameter at once."""
    mg.manual_seed(0)
    x = np.random.default_rng(7).standard_normal((3, 1, 4, 4))
    layer_test("discriminator", discriminator(), x, discriminator_np, float32_tol=1e-3).check()


def test_dcgan_shaped_generator_second_order():
    mg.manual_seed(1)
    z = np.random.default_rng(8).standard_normal((3, 3))
    net = generator()
    for p in net.parameters():  # larger weights, so that the ReLU sees both signs
        p.data *= 3
    layer_test("generator", net, z, generator_np, float32_tol=1e-3).check()


def test_sequential_container():
    net = discriminator()
    assert len(net) == 7 and isinstance(net[3], nn.BatchNorm2d)
    assert [type(m).__name__ for m in net][:2] == ["Conv2d", "LeakyReLU"]
    assert "(0): Conv2d(1, 2, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))" in repr(net)


def _fusion_net(dtype):
    """Batch-last activations (a float32 convolution with 16 channels takes the shifted-GEMM
    path) into BatchNorm2d + LeakyReLU, then BatchNorm1d + ReLU on a (N, C) batch."""
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                        nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(16 * 5 * 5, 8),
                        nn.BatchNorm1d(8), nn.ReLU())
    gen = np.random.default_rng(0)
    for p in net.parameters():
        p.data[...] = gen.standard_normal(p.shape).astype(dtype) * 0.5
    return net.to_dtype(dtype) if hasattr(net, "to_dtype") else net


class _Spy:
    """Counts the fused batchnorm passes and the separate LeakyReLU kernels a forward makes."""

    def __init__(self, monkeypatch):
        from minigan.kernels import activation, norm
        self.fused = self.leaky = 0
        real_bn, real_leaky = norm.batch_norm_forward, activation.leaky_relu

        def bn(x, g, b, eps, slope=None):
            self.fused += slope is not None
            return real_bn(x, g, b, eps, slope)

        def leaky(x, slope):
            self.leaky += 1
            return real_leaky(x, slope)

        monkeypatch.setattr(norm, "batch_norm_forward", bn)
        monkeypatch.setattr(activation, "leaky_relu", leaky)


def _run(net, x, by_module):
    """Output, input gradient and parameter gradients of sum(out * w), through the Sequential
    or its modules called one by one."""
    for p in net.parameters():
        p.grad = None
    xt = mg.tensor(x, requires_grad=True)
    h = xt
    if by_module:
        for m in net:
            h = m(h)
    else:
        h = net(xt)
    w = np.random.default_rng(1).standard_normal(h.shape).astype(x.dtype)
    (h * mg.tensor(w)).sum().backward()
    return [h.data.copy(), xt.grad.data.copy()] + [p.grad.data.copy() for p in net.parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_fuses_batchnorm_and_activation(monkeypatch, dtype):
    """In training mode a Sequential runs BatchNorm + LeakyReLU (or ReLU) as one pass, with the
    same output and running statistics, bit for bit, as the modules called one by one, and the
    same gradients to the last bits of a sum: the backward's per-channel sums accumulate in
    float64 with reassociation allowed, and the compiler may vectorise the fused loop (which
    applies the ReLU's gradient inside it) in another order than the plain one. On AVX-512
    machines the two have matched bit for bit; on an AVX2 Zen 3 the input gradient differed by
    1.4e-17 (float64). rtol 1e-12 is ten thousand times that, and a wrong formula moves a
    gradient by its own size."""
    x = np.random.default_rng(2).standard_normal((6, 3, 5, 5)).astype(dtype)
    fused_net, plain_net = _fusion_net(dtype), _fusion_net(dtype)
    spy = _Spy(monkeypatch)
    fused = _run(fused_net, x, by_module=False)
    assert (spy.fused, spy.leaky) == (2, 0)
    plain = _run(plain_net, x, by_module=True)
    assert (spy.fused, spy.leaky) == (2, 2)
    np.testing.assert_array_equal(fused[0], plain[0], err_msg="fused and unfused outputs differ")
    rtol = 1e-12 if dtype == np.float64 else 1e-6      # float32: a float64 sum rounded, 1 ulp
    for i, (a, b) in enumerate(zip(fused[1:], plain[1:], strict=True), start=1):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(),
                                   err_msg=f"fused and unfused differ in gradient {i}")
    for name, buf in fused_net.state_dict().items():
        np.testing.assert_array_equal(buf, plain_net.state_dict()[name], err_msg=name)
    assert int(fused_net[1].num_batches_tracked) == 1


def test_sequential_fusion_gives_way(monkeypatch):
    """No fusion where it would change what a user sees or gets: a forward hook on either
    module (the hook must see the BatchNorm's own output), evaluation mode, a negative slope,
    a subclass of either layer."""
    x = mg.tensor(np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32))
    spy = _Spy(monkeypatch)

    class MyReLU(nn.ReLU):
        pass

    seen = []
    bn = nn.BatchNorm1d(5)
    hooked = nn.Sequential(bn, nn.LeakyReLU(0.2))
    handle = bn.register_forward_hook(lambda m, a, out: seen.append(out.data.copy()))
    hooked(x)
    assert spy.fused == 0 and spy.leaky == 1 and len(seen) == 1 and (seen[0] < 0).any()
    handle.remove()
    hooked(x)
    assert spy.fused == 1 and spy.leaky == 1                 # hook gone: fused again
    for net in (nn.Sequential(nn.BatchNorm1d(5), nn.LeakyReLU(-0.5)),
                nn.Sequential(nn.BatchNorm1d(5), MyReLU()),
                nn.Sequential(nn.BatchNorm1d(5), nn.ReLU()).eval()):
        before = spy.leaky
        y = net(x)
        assert spy.fused == 1 and spy.leaky == before + 1, repr(net)
        assert y.shape == x.shape


def test_sequential_fusion_second_order_matches_unfused():
    """Gradients of gradients (create_graph, as a gradient penalty takes them) through the fused
    pass equal those through the separate modules."""
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.LeakyReLU(0.2), nn.Linear(6, 1))
    x0 = np.random.default_rng(4).standard_normal((5, 4))
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    out = []
    for by_module in (False, True):
        for p in net.parameters():
            p.grad = None
        x = mg.tensor(x0, requires_grad=True)
        y = x
        if by_module:
            for m in net:
                y = m(y)
        else:
            y = net(x)
        (gx,) = mg.autograd.grad([y.sum()], [x], create_graph=True)
        (gx * gx).sum().backward()
        out.append([x.grad] + [p.grad for p in net.parameters()])
    for i, (a, b) in enumerate(zip(*out, strict=True)):
        assert (a is None) == (b is None), f"item {i}: a gradient on one side only"
        if a is not None:
            np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)
    # x, W1, b1, gamma and W2 are in the input gradient's graph; beta and the last bias are not
    assert [g is not None for g in out[0]] == [True, True, True, True, False, True, False]
