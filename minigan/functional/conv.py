"""2-D convolution and transposed convolution (PyTorch layouts), as GEMMs.

On the CPU, float32 layers with at least S.MIN_CHANNELS channels in and out run as one
GEMM per kernel tap on shifted views (kernels/shifted.py: no padding multiplied, no column
matrix); everything else (the GPU, float64, one-channel image layers, where a tap's GEMM would
be a thin rank-1 update) runs as im2col + one GEMM. Both work on (C, H, W, N) images and hand
their outputs back as (N, C, H, W)-shaped views of that memory, so the next convolution, and
the pointwise layers between (which keep their input's memory order), need no transpose.

The three pieces are adjoint to one another, so each one's backward is made of the others:
  conv2d(x, w)             grad x: conv_transpose2d(gy, w)   grad w: conv2d_grad_weight(x, gy)
  conv_transpose2d(x, w)   grad x: conv2d(gy, w)             grad w: conv2d_grad_weight(gy, x)
  conv2d_grad_weight(x, g) grad x: conv_transpose2d(g, gw)   grad g: conv2d(x, gw)
"""

from __future__ import annotations

from ..autograd import Function, Tensor, as_tensor, is_grad_enabled
from ..kernels import conv as K
from ..kernels import shifted as S
from ..kernels.layout import last_memory


def _pair(v, name: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or any(int(a) != a for a in t):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def _out_size(h, k, s, p, name, what="input"):
    o = (h + 2 * p - k) // s + 1
    if h + 2 * p < k:
        raise ValueError(f"{name}: kernel size {k} is larger than the padded {what} "
                         f"({h} + 2*{p} = {h + 2 * p}); use a smaller kernel or more padding")
    return o


def _chwn(a):
    """(N, C, H, W) -> contiguous (C, H, W, N); free when a is a batch-last view of such memory
    (what the convolutions return)."""
    return last_memory(a)


def _rows(a):
    """(N, C, H, W) -> (C, H*W*N): one row per channel, columns in the column matrices' order."""
    return _chwn(a).reshape(a.shape[1], -1)


def _nchw(y, n, h, w):
    """(C, H*W*N) or (C, H, W, N) memory -> an (N, C, H, W) view of it (no copy)."""
    return y.reshape(-1, h, w, n).transpose(3, 0, 1, 2)


class Conv2d(Function):
    """conv2d; `pre` may hand in what the caller already made of x: the phase images of its
    (C, H, W, N) form (shifted path, S.split) or its column matrix (im2col path); `rows` the
    weight's S.tap_rows. The forward pass keeps the rows it used for the input gradient."""

    def __init__(self, stride, padding, pre=None, rows=None):
        self.stride, self.padding, self.pre, self.rows = stride, padding, pre, rows

    def forward(self, x, w):
        (sh, sw), (ph, pw) = self.stride, self.padding
        n, ci, h, wd = x.shape
        co, _, kh, kw = w.shape
        oh = _out_size(h, kh, sh, ph, "conv2d")
        ow = _out_size(wd, kw, sw, pw, "conv2d")
        if S.suits(x, w, (ci, co)):
            pre = (self.pre if self.pre is not None
                   else S.split(_chwn(x), sh, sw, kh, kw, ph, pw, oh, ow))
            rows = self.rows if self.rows is not None else S.tap_rows(w, sh, sw, ph, pw)
            y = S.conv2d(pre, w, sh, sw, ph, pw, oh, ow, rows)
            self.rows = rows if is_grad_enabled() else None
        else:
            pre = (self.pre if self.pre is not None
                   else K.im2col(_chwn(x), kh, kw, sh, sw, ph, pw, oh, ow))
            y = w.reshape(co, -1) @ pre
        self.pre = pre if is_grad_enabled() else None  # kept for the weight gradient
        return _nchw(y, n, oh, ow)

    def backward(self, gy):
        x, w = self.inputs
        gx = gw = None
        grid = None  # gy as both shifted-GEMM gradients read it, made once for the two
        if all(self.needs_input_grad) and S.suits(gy.data, w.data, w.shape[:2]):
            (sh, sw), (ph, pw) = self.stride, self.padding
            grid = S.on_grid(_chwn(gy.data), sh, sw, ph, pw, *w.shape[2:], *x.shape[2:])
        if self.needs_input_grad[0]:
            gx = ConvTranspose2d(self.stride, self.padding,
                                 _output_padding(x.shape, gy.shape, w.shape, self.stride,
                                                 self.padding), self.rows, grid)(gy, w)
        if self.needs_input_grad[1]:
            gw = Conv2dGradWeight(self.stride, self.padding, w.shape,
                                  self.__dict__.pop("pre", None), grid)(x, gy)
        return gx, gw

    def release(self):
        super().release()
        self.__dict__.pop("pre", None)
        self.rows = None


def _output_padding(x_shape, y_shape, w_shape, stride, padding):
    """The output_padding that makes conv_transpose2d give back the spatial size of x."""
    return tuple(x_shape[2 + i] - ((y_shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                   + w_shape[2 + i]) for i in range(2))


class ConvTranspose2d(Function):
    """conv_transpose2d; `rows` as Conv2d's (the adjoint reads the weight the same way), `grid`
    x as S.on_grid made it (Conv2d's backward, for this and the weight gradient)."""

    def __init__(self, stride, padding, output_padding, rows=None, grid=None):
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.rows, self.grid = rows, grid

    def forward(self, x, w):
        (sh, sw), (ph, pw), (eh, ew) = self.stride, self.padding, self.output_padding
        n, ci, h, wd = x.shape
        _, co, kh, kw = w.shape
        oh = (h - 1) * sh - 2 * ph + kh + eh
        ow = (wd - 1) * sw - 2 * pw + kw + ew
        if oh < 1 or ow < 1:
            raise ValueError(f"conv_transpose2d: output size ({oh}, {ow}) is not positive for "
                             f"input {tuple(x.shape)}, kernel {(kh, kw)}, padding {(ph, pw)}")
        if S.suits(x, w, (ci, co)):  # the adjoint of conv2d(., w) from (co, oh, ow) to x
            rows = self.rows if self.rows is not None else S.tap_rows(w, sh, sw, ph, pw)
            self.rows = rows if is_grad_enabled() else None
            gy, self.grid = (self.grid if self.grid is not None else _chwn(x)), None
            return _nchw(S.conv2d_input_grad(gy, w, sh, sw, ph, pw, oh, ow, rows), n, oh, ow)
        col = w.reshape(ci, -1).T @ _rows(x)  # (Cout*kh*kw, H*W*N)
        return _nchw(K.col2im(col, (co, oh, ow, n), kh, kw, sh, sw, ph, pw, h, wd), n, oh, ow)

    def backward(self, gy):
        x, w = self.inputs
        (sh, sw), (ph, pw) = self.stride, self.padding
        kh, kw = w.shape[2:]
        if S.suits(gy.data, w.data, w.shape[:2]):
            pre = S.split(_chwn(gy.data), sh, sw, kh, kw, ph, pw, *x.shape[2:])  # both grads
        else:
            pre = K.im2col(_chwn(gy.data), kh, kw, sh, sw, ph, pw, *x.shape[2:])
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = Conv2d(self.stride, self.padding, pre, self.rows)(gy, w)
        if self.needs_input_grad[1]:
            gw = Conv2dGradWeight(self.stride, self.padding, w.shape, pre)(gy, x)
        return gx, gw

    def release(self):
        super().release()
        self.rows = self.grid = None


class Conv2dGradWeight(Function):
    """d<conv2d(x, W), gy>/dW: a Function of (x, gy) with its own backward; `pre` as Conv2d's."""

    def __init__(self, stride, padding, w_shape, pre=None, grid=None):
        self.stride, self.padding, self.w_shape, self.pre = stride, padding, w_shape, pre
        self.grid = grid  # gy as S.on_grid made it

    def forward(self, x, gy):
        (sh, sw), (ph, pw) = self.stride, self.padding
        kh, kw = self.w_shape[2:]
        oh, ow = gy.shape[2:]
        pre, self.pre = self.pre, None
        grid, self.grid = self.grid, None
        if S.suits(x, gy, self.w_shape[:2]):
            xs = pre if pre is not None else S.split(_chwn(x), sh, sw, kh, kw, ph, pw, oh, ow)
            return S.conv2d_weight_grad(xs, grid if grid is not None else _chwn(gy), sh, sw,
                                        ph, pw, kh, kw)
        col = pre if pre is not None else K.im2col(_chwn(x), kh, kw, sh, sw, ph, pw, oh, ow)
        return (_rows(gy) @ col.T).reshape(self.w_shape)

    def backward(self, ggw):
        x, gy = self.inputs
        gx = ggy = None
        if self.needs_input_grad[0]:
            gx = conv_transpose2d(gy, ggw, None, self.stride, self.padding,
                                  _output_padding(x.shape, gy.shape, ggw.shape, self.stride,
                                                  self.padding))
        if self.needs_input_grad[1]:
            ggy = conv2d(x, ggw, None, self.stride, self.padding)
        return gx, ggy


def _check(name, x, w, in_axis):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D weight, got shape {tuple(w.shape)}")
    if x.shape[1] != w.shape[in_axis]:
        raise ValueError(f"{name}: input has {x.shape[1]} channels but the weight "
                         f"{tuple(w.shape)} expects {w.shape[in_axis]}")
    for t, what in ((x, "input"), (w, "weight")):
        if t.dtype.kind != "f":
            raise TypeError(f"{name}: {what} must be a float array, got {t.dtype}; "
                            "convert images with .astype(np.float32)")


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """x (N, Cin, H, W), weight (Cout, Cin, kH, kW) -> (N, Cout, oH, oW)."""
    x, weight = as_tensor(x), as_tensor(weight)
    _check("conv2d", x, weight, 1)
    y = Conv2d(_pair(stride, "stride"), _pair(padding, "padding"))(x, weight)
    return y if bias is None else y + as_tensor(bias).reshape(1, -1, 1, 1)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0) -> Tensor:
    """x (N, Cin, H, W), weight (Cin, Cout, kH, kW) -> (N, Cout, oH, oW), as PyTorch."""
    x, weight = as_tensor(x), as_tensor(weight)
    _check("conv_transpose2d", x, weight, 0)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    output_padding = _pair(output_padding, "output_padding")
    if any(e >= max(s, 1) for e, s in zip(output_padding, stride)) or min(output_padding) < 0:
        raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be smaller "
                         f"than stride {stride} and non-negative")
    y = ConvTranspose2d(stride, padding, output_padding)(x, weight)
    return y if bias is None else y + as_tensor(bias).reshape(1, -1, 1, 1)
