"""conv2d, conv_transpose2d and the conv weight gradient against naive float64 loops.

The references below are written straight from the definitions (one loop per index, no im2col):
  conv2d:           y[n, o, oy, ox] = sum_{c,i,j} x[n, c, oy*s - p + i, ox*s - p + j] w[o, c, i, j]
  conv_transpose2d: y[n, o, iy*s - p + i, ix*s - p + j] += x[n, c, iy, ix] w[c, o, i, j]
and their VJPs are the same sums read the other way round.
"""

import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import functional as F
from minigan import nn
from minigan.functional.conv import Conv2dGradWeight
from minigan.testing import OpTest, assert_close


def taps(h, w, oh, ow, kh, kw, stride, padding):
    """Every (oy, ox, i, j, iy, ix) where output (oy, ox) sees input (iy, ix) through tap (i, j)."""
    (sh, sw), (ph, pw) = stride, padding
    for oy in range(oh):
        for ox in range(ow):
            for i in range(kh):
                for j in range(kw):
                    iy, ix = oy * sh - ph + i, ox * sw - pw + j
                    if 0 <= iy < h and 0 <= ix < w:
                        yield oy, ox, i, j, iy, ix


def conv_out(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def conv2d_ref(x, w, stride, padding):
    n, _c, h, wd = x.shape
    co, _, kh, kw = w.shape
    oh, ow = conv_out(h, kh, stride[0], padding[0]), conv_out(wd, kw, stride[1], padding[1])
    y = np.zeros((n, co, oh, ow))
    for oy, ox, i, j, iy, ix in taps(h, wd, oh, ow, kh, kw, stride, padding):
        y[:, :, oy, ox] += x[:, :, iy, ix] @ w[:, :, i, j].T  # (N, Cin) @ (Cin, Cout)
    return y


def conv2d_vjp_ref(x, w, gy, stride, padding):
    """(d<y, gy>/dx, d<y, gy>/dw) for y = conv2d(x, w): the same sum read the other way."""
    h, wd = x.shape[2:]
    kh, kw = w.shape[2:]
    oh, ow = gy.shape[2:]
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for oy, ox, i, j, iy, ix in taps(h, wd, oh, ow, kh, kw, stride, padding):
        gx[:, :, iy, ix] += gy[:, :, oy, ox] @ w[:, :, i, j]
        gw[:, :, i, j] += gy[:, :, oy, ox].T @ x[:, :, iy, ix]
    return gx, gw


def convt_out(h, k, s, p, e):
    return (h - 1) * s - 2 * p + k + e


def conv_transpose2d_ref(x, w, stride, padding, output_padding):
    n, _c, h, wd = x.shape
    _, co, kh, kw = w.shape
    oh = convt_out(h, kh, stride[0], padding[0], output_padding[0])
    ow = convt_out(wd, kw, stride[1], padding[1], output_padding[1])
    y = np.zeros((n, co, oh, ow))
    # input pixel (iy, ix) lands on output (oy, ox) = (iy*s - p + i, ix*s - p + j)
    for iy, ix, i, j, oy, ox in taps(oh, ow, h, wd, kh, kw, stride, padding):
        y[:, :, oy, ox] += x[:, :, iy, ix] @ w[:, :, i, j]  # (N, Cin) @ (Cin, Cout)
    return y


def conv_transpose2d_vjp_ref(x, w, gy, stride, padding):
    h, wd = x.shape[2:]
    kh, kw = w.shape[2:]
    oh, ow = gy.shape[2:]
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for iy, ix, i, j, oy, ox in taps(oh, ow, h, wd, kh, kw, stride, padding):
        gx[:, :, iy, ix] += gy[:, :, oy, ox] @ w[:, :, i, j].T
        gw[:, :, i, j] += x[:, :, iy, ix].T @ gy[:, :, oy, ox]
    return gx, gw


@st.composite
def conv_geometry(draw, transposed=False):
    """Tiny N, C, H, W and per-axis kernel, stride, padding (and output_padding < stride)."""
    g = {"n": draw(st.integers(1, 2)), "cin": draw(st.integers(1, 2)),
             "cout": draw(st.integers(1, 2))}
    g["stride"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    g["kernel"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    g["padding"] = tuple(draw(st.integers(0, k - 1)) for k in g["kernel"])
    if transposed:
        g["output_padding"] = tuple(draw(st.integers(0, s - 1)) for s in g["stride"])
        g["hw"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        for h, k, s, p, e in zip(g["hw"], g["kernel"], g["stride"], g["padding"],
                                 g["output_padding"]):
            if convt_out(h, k, s, p, e) < 1:
                g["padding"] = (0, 0)
    else:
        lo = [max(1, k - 2 * p) for k, p in zip(g["kernel"], g["padding"])]
        g["hw"] = (draw(st.integers(lo[0], 5)), draw(st.integers(lo[1], 5)))
    return g


def _with_bias(y, b):
    return y + b.reshape(1, -1, 1, 1)


def conv2d_test(g, seed=0, bias=True):
    gen = np.random.default_rng(seed)
    kh, kw = g["kernel"]
    x = gen.standard_normal((g["n"], g["cin"], *g["hw"]))
    w = gen.standard_normal((g["cout"], g["cin"], kh, kw))
    b = gen.standard_normal(g["cout"])
    s, p = g["stride"], g["padding"]
    if not bias:
        return OpTest("conv2d", lambda x, w: F.conv2d(x, w, None, s, p), [x, w],
                      reference=lambda x, w: conv2d_ref(x, w, s, p),
                      vjp_reference=lambda x, w, gy: conv2d_vjp_ref(x, w, gy, s, p),
                      params={"stride": s, "padding": p})
    return OpTest(
        "conv2d", lambda x, w, b: F.conv2d(x, w, b, s, p), [x, w, b],
        reference=lambda x, w, b: _with_bias(conv2d_ref(x, w, s, p), b),
        vjp_reference=lambda x, w, b, gy: (*conv2d_vjp_ref(x, w, gy, s, p), gy.sum((0, 2, 3))),
        params={"stride": s, "padding": p})


def conv_transpose2d_test(g, seed=0, bias=True):
    gen = np.random.default_rng(seed)
    kh, kw = g["kernel"]
    x = gen.standard_normal((g["n"], g["cin"], *g["hw"]))
    w = gen.standard_normal((g["cin"], g["cout"], kh, kw))
    b = gen.standard_normal(g["cout"])
    s, p, e = g["stride"], g["padding"], g["output_padding"]
    params = {"stride": s, "padding": p, "output_padding": e}
    if not bias:
        return OpTest("conv_transpose2d", lambda x, w: F.conv_transpose2d(x, w, None, s, p, e),
                      [x, w], reference=lambda x, w: conv_transpose2d_ref(x, w, s, p, e),
                      vjp_reference=lambda x, w, gy: conv_transpose2d_vjp_ref(x, w, gy, s, p),
                      params=params)
    return OpTest(
        "conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, e), [x, w, b],
        reference=lambda x, w, b: _with_bias(conv_transpose2d_ref(x, w, s, p, e), b),
        vjp_reference=lambda x, w, b, gy: (*conv_transpose2d_vjp_ref(x, w, gy, s, p),
                                           gy.sum((0, 2, 3))),
        params=params)


@settings(max_examples=25, deadline=None)
@given(conv_geometry(), st.booleans())
def test_conv2d(g, bias):
    conv2d_test(g, bias=bias).check()


@settings(max_examples=25, deadline=None)
@given(conv_geometry(transposed=True), st.booleans())
def test_conv_transpose2d(g, bias):
    conv_transpose2d_test(g, bias=bias).check()


@settings(max_examples=10, deadline=None)
@given(conv_geometry())
def test_conv2d_grad_weight_is_a_function_with_its_own_derivatives(g):
    """The weight gradient (x, gy) -> dW is an op of its own: forward, gradcheck, gradgradcheck."""
    gen = np.random.default_rng(1)
    kh, kw = g["kernel"]
    x = gen.standard_normal((g["n"], g["cin"], *g["hw"]))
    w_shape = (g["cout"], g["cin"], kh, kw)
    s, p = g["stride"], g["padding"]
    oh, ow = (conv_out(h, k, a, b) for h, k, a, b in zip(g["hw"], g["kernel"], s, p))
    gy = gen.standard_normal((g["n"], g["cout"], oh, ow))
    OpTest("conv2d_grad_weight", lambda x, gy: Conv2dGradWeight(s, p, w_shape)(x, gy), [x, gy],
           reference=lambda x, gy: conv2d_vjp_ref(x, np.zeros(w_shape), gy, s, p)[1],
           params={"stride": s, "padding": p}).check()


# DCGAN-like geometries (k=4, s=2, p=1 up and down), odd sizes, asymmetric strides, 1x1 kernels.
def geometry(n, cin, cout, hw, kernel, stride, padding, output_padding=(0, 0)):
    return {"n": n, "cin": cin, "cout": cout, "hw": hw, "kernel": kernel, "stride": stride,
            "padding": padding, "output_padding": output_padding}


ACCEPTANCE = [
    geometry(2, 2, 3, (6, 6), (4, 4), (2, 2), (1, 1)),
    geometry(2, 3, 2, (5, 4), (3, 2), (2, 1), (1, 0)),
    geometry(1, 2, 2, (3, 3), (1, 1), (1, 1), (0, 0)),
]


@pytest.mark.parametrize("g", ACCEPTANCE, ids=lambda g: f"k{g['kernel']}s{g['stride']}")
def test_acceptance_conv2d_float64_first_and_second_order(g):
    """Forward, first-order VJP (rtol 1e-6) and second-order VJP (rtol 1e-6 vs central
    differences of the naive VJP) against the naive loops; see OpTest._vjps."""
    t = conv2d_test(g, seed=3)
    assert t.rtol == 1e-6 and t.vjp_reference is not None and t.second_order
    t.check()


@pytest.mark.parametrize("g", ACCEPTANCE, ids=lambda g: f"k{g['kernel']}s{g['stride']}")
def test_acceptance_conv_transpose2d_float64_first_and_second_order(g):
    g = dict(g, hw=(3, 2), output_padding=tuple(s - 1 for s in g["stride"]))
    t = conv_transpose2d_test(g, seed=4)
    assert t.rtol == 1e-6 and t.vjp_reference is not None and t.second_order
    t.check()


def test_conv2d_one_by_one_inputs():
    x = np.array([[[[2.0]]]])
    for k, p in ((1, 0), (3, 1)):
        w = np.arange(1.0, 1.0 + k * k).reshape(1, 1, k, k)
        y = F.conv2d(mg.tensor(x), mg.tensor(w), None, 1, p)
        assert y.shape == (1, 1, 1, 1) and y.item() == 2.0 * w[0, 0, k // 2, k // 2]
    g = geometry(1, 1, 2, (1, 1), (3, 3), (2, 2), (1, 1))
    conv2d_test(g).check()
    conv_transpose2d_test(dict(g, output_padding=(1, 0))).check()


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)> with the output_padding that restores x."""
    gen = np.random.default_rng(5)
    x, w = gen.standard_normal((2, 3, 7, 6)), gen.standard_normal((4, 3, 3, 3))
    y = gen.standard_normal((2, 4, 4, 3))
    lhs = np.vdot(F.conv2d(mg.tensor(x), mg.tensor(w), None, 2, 1).data, y)
    back = F.conv_transpose2d(mg.tensor(y), mg.tensor(w), None, 2, 1, (0, 1)).data
    assert back.shape == x.shape
    assert_close(lhs, np.vdot(x, back), 1e-12, 1e-12, "adjoint identity")


def test_kernel_larger_than_padded_input_raises():
    x, w = mg.tensor(np.zeros((1, 1, 3, 3))), mg.tensor(np.zeros((1, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"conv2d: kernel size 6 is larger than the padded "
                                         r"input \(3 \+ 2\*1 = 5\)"):
        F.conv2d(x, w, None, 1, 1)
    assert F.conv2d(x, w, None, 1, (2, 2)).shape == (1, 1, 2, 2)  # 3 + 2*2 = 7 >= 6 is fine


@pytest.mark.parametrize("stride,output_padding", [(1, 1), (2, 2), ((2, 1), (0, 1)), (2, -1)])
def test_output_padding_must_be_smaller_than_stride(stride, output_padding):
    x, w = mg.tensor(np.zeros((1, 1, 2, 2))), mg.tensor(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding .* must be smaller "
                                         r"than stride"):
        F.conv_transpose2d(x, w, None, stride, 0, output_padding)


def test_conv_transpose2d_nonpositive_output_raises():
    x, w = mg.tensor(np.zeros((1, 1, 1, 1))), mg.tensor(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"output size \(-1, -1\) is not positive"):
        F.conv_transpose2d(x, w, None, 1, 1)


@pytest.mark.parametrize("bad", ["stride", "padding"])
def test_bad_stride_or_padding_spec(bad):
    x, w = mg.tensor(np.zeros((1, 1, 4, 4))), mg.tensor(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=f"{bad} must be an int or a pair of ints"):
        F.conv2d(x, w, None, **{bad: (1, 2, 3)})


def test_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(6)
    x, w = gen.standard_normal((2, 3, 7, 7)), gen.standard_normal((4, 3, 4, 4))
    gy = gen.standard_normal((2, 4, 3, 3))
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (x, w))
    yt = torch.nn.functional.conv2d(xt, wt, None, 2, 1)
    gxt, gwt = torch.autograd.grad(yt, (xt, wt), torch.tensor(gy))
    xm, wm = mg.tensor(x, requires_grad=True), mg.tensor(w, requires_grad=True)
    ym = F.conv2d(xm, wm, None, 2, 1)
    gxm, gwm = mg.grad(ym, [xm, wm], mg.tensor(gy))
    for a, b, what in ((ym, yt, "y"), (gxm, gxt, "gx"), (gwm, gwt, "gw")):
        assert_close(a.data, b.detach().numpy(), 1e-10, 1e-12, f"conv2d vs torch: {what}")
    wt2 = gen.standard_normal((3, 2, 4, 4))
    yt = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(wt2), None, 2, 1, 1)
    ym = F.conv_transpose2d(mg.tensor(x), mg.tensor(wt2), None, 2, 1, 1)
    assert_close(ym.data, yt.numpy(), 1e-10, 1e-12, "conv_transpose2d vs torch")


@pytest.mark.parametrize("stride,output_padding", [(1, 0), (2, 1)])
def test_float32_wide_layers_take_the_shifted_gemm_path(stride, output_padding):
    """Float32 layers with >= MIN_CHANNELS channels (the DCGAN's) run as shifted GEMMs
    on the CPU: forward and both gradients of conv2d and conv_transpose2d match the naive
    float64 loops to float32 rounding (sums of at most 16*25 products of O(1) terms)."""
    from minigan.functional import conv as C

    if not C.S.available(np.float32):
        pytest.skip("no CBLAS sgemm found in NumPy's BLAS")
    gen = np.random.default_rng(7)
    c = C.S.MIN_CHANNELS
    x = gen.standard_normal((3, c, 7, 7)).astype(np.float32)
    w = gen.standard_normal((c + 2, c, 5, 5)).astype(np.float32)
    assert C.S.suits(x, w, (c, c + 2))
    assert not C.S.suits(x.astype(np.float64), w.astype(np.float64), (c, c + 2))  # im2col
    assert not C.S.suits(x, w, (1, c + 2))  # a one-channel image layer: im2col
    s, p = (stride, stride), (2, 2)
    xm, wm = mg.tensor(x, requires_grad=True), mg.tensor(w, requires_grad=True)
    y = F.conv2d(xm, wm, None, s, p)
    gy = gen.standard_normal(y.shape).astype(np.float32)
    gx, gw = mg.grad(y, [xm, wm], mg.tensor(gy))
    x64, w64, gy64 = (a.astype(np.float64) for a in (x, w, gy))
    for got, ref, what in ((y, conv2d_ref(x64, w64, s, p), "y"),
                           *zip((gx, gw), conv2d_vjp_ref(x64, w64, gy64, s, p), ("gx", "gw"))):
        assert got.dtype == np.float32
        assert_close(got.data, ref, 2e-5, 2e-5 * np.abs(ref).max(), f"conv2d {what}")
    # the transposed convolution with the same weight, as (Cin, Cout) = (c + 2, c)
    e = (output_padding, output_padding)
    ym = mg.tensor(gy, requires_grad=True)
    wt = mg.tensor(w, requires_grad=True)
    z = F.conv_transpose2d(ym, wt, None, s, p, e)
    gz = gen.standard_normal(z.shape).astype(np.float32)
    gyt, gwt = mg.grad(z, [ym, wt], mg.tensor(gz))
    gz64 = gz.astype(np.float64)
    for got, ref, what in ((z, conv_transpose2d_ref(gy64, w64, s, p, e), "y"),
                           *zip((gyt, gwt), conv_transpose2d_vjp_ref(gy64, w64, gz64, s, p),
                                ("gx", "gw"))):
        assert_close(got.data, ref, 2e-5, 2e-5 * np.abs(ref).max(), f"conv_transpose2d {what}")


@pytest.mark.parametrize("transposed", [False, True])
def test_a_layer_rearranges_its_weight_once_per_forward_and_backward(transposed):
    """The input gradient reads the weight in the forward pass's tap order: the Function hands
    its rows on instead of transposing the weight again (on 256 -> 512-channel 4x4 layers that
    copy costs as much as a small GEMM). The gradient is the one without the hand-on."""
    from minigan.functional import conv as C

    if not C.S.available(np.float32):
        pytest.skip("no CBLAS sgemm found in NumPy's BLAS")
    gen = np.random.default_rng(3)
    c = C.S.MIN_CHANNELS
    x = mg.tensor(gen.standard_normal((2, c, 6, 6)).astype(np.float32), requires_grad=True)
    w = mg.tensor(gen.standard_normal((c, c, 3, 3)).astype(np.float32), requires_grad=True)
    f = F.conv_transpose2d if transposed else F.conv2d
    real = C.S._tap_rows
    with mock.patch.object(C.S, "_tap_rows", side_effect=real) as spy:
        gx, gw = mg.grad(f(x, w, None, 2, 1).sum(), [x, w])
    assert spy.call_count == 1
    with mock.patch.object(C.S, "tap_rows", return_value=None):   # every call makes its own
        gx2, gw2 = mg.grad(f(x, w, None, 2, 1).sum(), [x, w])
    np.testing.assert_array_equal(gx.data, gx2.data)
    np.testing.assert_array_equal(gw.data, gw2.data)


# The float32 fast path with unequal geometry along the two axes. On the CPU, float32 layers with
# at least S.MIN_CHANNELS channels each way run as shifted GEMMs (kernels/shifted.py); the float64
# tests above take im2col, so only these see how conv.py hands stride and padding to that path.
# A sum of K float32 products is within gamma_K * (the same sum of |products|) of the exact one,
# gamma_K = K u / (1 - K u), u = 2^-24 (Higham, Accuracy and Stability, 3.1), whatever order the
# GEMMs add the terms in: each element is checked against that bound, the sum of |products|
# computed by the naive loops on |inputs|. Inputs are float32 values, exact in float64.
U32 = 2.0 ** -24


def assert_float32_sum(got, exact, abs_sum, terms, what):
    """Elementwise |got - exact| <= gamma_terms * abs_sum, with the worst element named."""
    got = np.asarray(got.data if isinstance(got, mg.Tensor) else got)
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}, expected float32"
    assert got.shape == exact.shape, f"{what}: shape {got.shape}, expected {exact.shape}"
    err = np.abs(got.astype(np.float64) - exact)
    limit = terms * U32 / (1 - terms * U32) * abs_sum + 1e-30
    if not (err <= limit).all():
        k = np.unravel_index(np.argmax(err - limit), err.shape)
        raise AssertionError(f"{what}, shape {exact.shape}: max abs error {err.max():.3g}; worst "
                             f"at {tuple(int(i) for i in k)}: error {err[k]:.3g} > bound "
                             f"{limit[k]:.3g} ({terms} float32 terms), got {got[k]:.7g}, "
                             f"expected {exact[k]:.7g}")


@contextlib.contextmanager
def shifted_gemm_calls():
    """Count the calls conv.py makes to the shifted-GEMM kernels and to im2col / col2im, so that
    a test can insist it ran the fast path (a silent fall-back to im2col would test nothing)."""
    from minigan.functional import conv as C

    calls = dict.fromkeys(("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "im2col",
                           "col2im"), 0)

    def spy(module, name):
        real = getattr(module, name)

        def counted(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return mock.patch.object(module, name, counted)

    with contextlib.ExitStack() as stack:
        for name in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad"):
            stack.enter_context(spy(C.S, name))
        for name in ("im2col", "col2im"):
            stack.enter_context(spy(C.K, name))
        yield calls


def assert_fast_path(calls, what):
    assert calls["im2col"] == calls["col2im"] == 0, f"{what} fell back to im2col: {calls}"
    for name in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad"):
        assert calls[name] >= 1, f"{what} never called shifted.{name}: {calls}"


def _needs_sgemm():
    from minigan.kernels import shifted as S

    if not S.available(np.float32):
        pytest.skip("no CBLAS sgemm found in NumPy's BLAS: float32 takes im2col")
    return S


@st.composite
def fast_path_geometry(draw, transposed=False):
    """A layer on the shifted-GEMM path (16-22 channels each way: at or just above the threshold,
    cheap for the naive loops) whose two axes differ: kernel (3, 5) or (5, 3), stride (1, 2),
    (2, 1) or (2, 3), padding (1, 2)-like pairs, H != W, and output_padding < stride per axis."""
    c = 16  # S.MIN_CHANNELS today; test_fast_path_threshold_is_what_these_tests_assume checks
    g = {"n": draw(st.integers(1, 2)), "cin": draw(st.integers(c, c + 6)),
         "cout": draw(st.integers(c, c + 6))}
    g["kernel"] = draw(st.sampled_from([(3, 5), (5, 3)]))
    g["stride"] = draw(st.sampled_from([(1, 2), (2, 1), (2, 3)]))
    pad = draw(st.sampled_from([(1, 2), (2, 1), (0, 2), (2, 0), (1, 0)]))
    g["padding"] = tuple(min(p, k - 1) for p, k in zip(pad, g["kernel"]))
    h = draw(st.integers(5, 8))
    g["hw"] = (h, draw(st.integers(5, 8).filter(lambda w: w != h)))
    g["output_padding"] = (tuple(draw(st.integers(0, s - 1)) for s in g["stride"])
                           if transposed else (0, 0))
    return g


# the layer of issue 11, and a transposed one with output_padding (1, 0)
ISSUE_CONV = geometry(2, 16, 16, (6, 7), (3, 5), (1, 2), (1, 2))
ISSUE_CONV_T = geometry(2, 16, 17, (5, 6), (3, 5), (2, 1), (1, 2), (1, 0))


def _float32_data(g, transposed, seed):
    gen = np.random.default_rng(seed)
    w_shape = ((g["cin"], g["cout"]) if transposed else (g["cout"], g["cin"])) + g["kernel"]
    x = gen.standard_normal((g["n"], g["cin"], *g["hw"])).astype(np.float32)
    return x, gen.standard_normal(w_shape).astype(np.float32), \
        gen.standard_normal(g["cout"]).astype(np.float32), gen


def _exact(g, transposed, x, w, b, gy):
    """(y, gx, gw, gb) from the naive loops in float64, and the same sums of |products| with
    the number of terms in each, for the float32 bound."""
    s, p, e = g["stride"], g["padding"], g["output_padding"]
    f64 = [a.astype(np.float64) for a in (x, w, b, gy)]
    abs64 = [np.abs(a) for a in f64]
    kh, kw = g["kernel"]
    if transposed:
        def ref(x, w, b, gy):
            y = _with_bias(conv_transpose2d_ref(x, w, s, p, e), b)
            return (y, *conv_transpose2d_vjp_ref(x, w, gy, s, p), gy.sum((0, 2, 3)))
        terms = (g["cin"] * kh * kw + 1, g["cout"] * kh * kw, g["n"] * np.prod(g["hw"]))
    else:
        def ref(x, w, b, gy):
            return (_with_bias(conv2d_ref(x, w, s, p), b), *conv2d_vjp_ref(x, w, gy, s, p),
                    gy.sum((0, 2, 3)))
        terms = (g["cin"] * kh * kw + 1, g["cout"] * kh * kw, g["n"] * np.prod(gy.shape[2:]))
    terms += (g["n"] * np.prod(gy.shape[2:]),)  # the bias gradient: a sum over (N, oH, oW)
    return ref(*f64), ref(*abs64), terms


def _check_fast_path(g, transposed, got, x, w, b, gy, calls):
    op = "conv_transpose2d" if transposed else "conv2d"
    what = (f"float32 {op}(stride={g['stride']}, padding={g['padding']}, kernel={g['kernel']}"
            + (f", output_padding={g['output_padding']}" if transposed else "")
            + f") on x {x.shape}, w {w.shape}")
    assert_fast_path(calls, what)
    exact, abs_sums, terms = _exact(g, transposed, x, w, b, gy)
    for t, ref, bound, k, name in zip(got, exact, abs_sums, terms, ("y", "gx", "gw", "gb")):
        assert_float32_sum(t, ref, bound, k, f"{what}: {name}")


def _run_functional(g, transposed, seed):
    x, w, b, gen = _float32_data(g, transposed, seed)
    s, p, e = g["stride"], g["padding"], g["output_padding"]
    xm, wm, bm = (mg.tensor(a, requires_grad=True) for a in (x, w, b))
    with shifted_gemm_calls() as calls:
        y = (F.conv_transpose2d(xm, wm, bm, s, p, e) if transposed
             else F.conv2d(xm, wm, bm, s, p))
        gy = gen.standard_normal(y.shape).astype(np.float32)
        grads = mg.grad(y, [xm, wm, bm], mg.tensor(gy))
    _check_fast_path(g, transposed, (y, *grads), x, w, b, gy, calls)


@settings(max_examples=6, deadline=None)
@given(fast_path_geometry())
@example(ISSUE_CONV)
def test_conv2d_float32_fast_path_unequal_geometry(g):
    """F.conv2d in float32 on the shifted-GEMM path: y, gx, gw and gb against the naive loops."""
    _needs_sgemm()
    _run_functional(g, False, 11)


@settings(max_examples=6, deadline=None)
@given(fast_path_geometry(transposed=True))
@example(ISSUE_CONV_T)
def test_conv_transpose2d_float32_fast_path_unequal_geometry(g):
    """F.conv_transpose2d in float32 on the shifted-GEMM path, output_padding included."""
    _needs_sgemm()
    _run_functional(g, True, 12)


@pytest.mark.parametrize("transposed", [False, True], ids=["Conv2d", "ConvTranspose2d"])
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_conv_layers_float32_fast_path_unequal_geometry(transposed, data):
    """nn.Conv2d / nn.ConvTranspose2d in float32, weight and bias set to the drawn ones,
    gradients through .backward() into x.grad, weight.grad and bias.grad."""
    _needs_sgemm()
    g = data.draw(fast_path_geometry(transposed), label="geometry")
    x, w, b, gen = _float32_data(g, transposed, 13)
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    extra = {"output_padding": g["output_padding"]} if transposed else {}
    layer = cls(g["cin"], g["cout"], g["kernel"], g["stride"], g["padding"], **extra)
    layer.weight.data[...] = w
    layer.bias.data[...] = b
    xm = mg.tensor(x, requires_grad=True)
    with shifted_gemm_calls() as calls:
        y = layer(xm)
        gy = gen.standard_normal(y.shape).astype(np.float32)
        y.backward(mg.tensor(gy))
    got = (y, xm.grad, layer.weight.grad, layer.bias.grad)
    _check_fast_path(g, transposed, got, x, w, b, gy, calls)


@settings(max_examples=4, deadline=None)
@given(fast_path_geometry())
def test_conv2d_grad_weight_float32_fast_path_on_its_own(g):
    """Conv2dGradWeight called directly (as in a second-order backward), so that it splits x
    into phase images itself rather than reusing the forward pass's."""
    _needs_sgemm()
    x, w, _, gen = _float32_data(g, False, 14)
    s, p = g["stride"], g["padding"]
    oh, ow = (conv_out(h, k, a, b) for h, k, a, b in zip(g["hw"], g["kernel"], s, p))
    gy = gen.standard_normal((g["n"], g["cout"], oh, ow)).astype(np.float32)
    with shifted_gemm_calls() as calls:
        gw = Conv2dGradWeight(s, p, w.shape)(mg.tensor(x), mg.tensor(gy))
    assert calls["conv2d_weight_grad"] == 1 and calls["im2col"] == 0, calls
    exact = conv2d_vjp_ref(x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64),
                           s, p)[1]
    bound = conv2d_vjp_ref(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                           np.abs(gy).astype(np.float64), s, p)[1]
    assert_float32_sum(gw, exact, bound, g["n"] * oh * ow,
                       f"float32 conv2d_grad_weight(stride={s}, padding={p}) on x {x.shape}")


def test_fast_path_threshold_is_what_these_tests_assume():
    """The geometries above pin 16-22 channels: at or above S.MIN_CHANNELS, so on the fast path;
    and a layer just below the threshold does fall back to im2col (the spy sees it)."""
    S = _needs_sgemm()
    assert S.MIN_CHANNELS <= 16
    g = dict(ISSUE_CONV, cin=S.MIN_CHANNELS - 1)
    x, w, _, _ = _float32_data(g, False, 15)
    with shifted_gemm_calls() as calls:
        F.conv2d(mg.tensor(x), mg.tensor(w), None, g["stride"], g["padding"])
    assert calls["conv2d"] == 0 and calls["im2col"] == 1, calls
