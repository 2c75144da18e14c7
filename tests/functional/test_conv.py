"""conv2d, conv_transpose2d and the conv weight gradient against naive float64 loops.

The references below are written straight from the definitions (one loop per index, no im2col):
  conv2d:           y[n, o, oy, ox] = sum_{c,i,j} x[n, c, oy*s - p + i, ox*s - p + j] w[o, c, i, j]
  conv_transpose2d: y[n, o, iy*s - p + i, ix*s - p + j] += x[n, c, iy, ix] w[c, o, i, j]
and their VJPs are the same sums read the other way round.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import functional as F
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
