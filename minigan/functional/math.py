"""Arithmetic, reductions and shape ops; every backward is written with these same ops."""

from __future__ import annotations

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..kernels.layout import batch_first_copy, batch_last, batch_last_copy


def _sum_to_shape(g, shape):
    """Sum a broadcast array back down to `shape` (raw arrays)."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape)
                                      if n == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


class SumTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        return _sum_to_shape(x, self.shape)

    def backward(self, gy):
        return broadcast_to(gy, self.in_shape)


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        return backend.array_module(x).broadcast_to(x, self.shape).copy()

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


def sum_to(x: Tensor, shape) -> Tensor:
    return x if tuple(x.shape) == tuple(shape) else SumTo(shape)(x)


def broadcast_to(x: Tensor, shape) -> Tensor:
    return x if tuple(x.shape) == tuple(shape) else BroadcastTo(shape)(x)


class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), sum_to(gy, b.shape)


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), sum_to(-gy, b.shape)


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """x ** c for a constant exponent c."""

    def __init__(self, c: float):
        self.c = c

    def forward(self, x):
        return x ** x.dtype.type(self.c)

    def backward(self, gy):
        (x,) = self.inputs
        return gy * self.c * x ** (self.c - 1)


class Exp(Function):
    retain_outputs = True

    def forward(self, x):
        return backend.array_module(x).exp(x)

    def backward(self, gy):
        return gy * self.output()


class Log(Function):
    def forward(self, x):
        return backend.array_module(x).log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


class MatMul(Function):
    def forward(self, a, b):
        return a @ b

    def backward(self, gy):
        a, b = self.inputs
        ga = matmul(gy, b.T) if self.needs_input_grad[0] else None
        gb = matmul(a.T, gy) if self.needs_input_grad[1] else None
        return ga, gb


class Linear(Function):
    """y = x W^T (+ b) in one Function: the per-Function cost counts in small MLPs.

    Computed as (W x^T)^T, so the result lies in batch-last memory (kernels/layout.py) as the
    convolutions' does: a batchnorm after it reads contiguous rows and an Unflatten before a
    convolution is a view; the gradient for x comes back in the same layout.
    """

    def forward(self, x, w, b=None):
        y = (w @ x.T).T                                             # (N, out), batch-last
        return y if b is None else y + b

    def backward(self, gy):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        gx = MatMulT()(gy, w) if need[0] else None                  # (N, in), batch-last
        gw = matmul(transpose(gy), x) if need[1] else None          # (out, in)
        gb = sum_to(gy, self.inputs[2].shape) if len(need) > 2 and need[2] else None
        return (gx, gw, gb)[:len(need)]


class MatMulT(Function):
    """a @ b computed as (b^T a^T)^T: the product in batch-last memory (Linear's gradient)."""

    def forward(self, a, b):
        return (b.T @ a.T).T

    def backward(self, gy):
        a, b = self.inputs
        ga = matmul(gy, transpose(b)) if self.needs_input_grad[0] else None
        gb = matmul(transpose(a), gy) if self.needs_input_grad[1] else None
        return ga, gb


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        if not self.keepdims and self.axis is not None:
            axes = (self.axis,) if isinstance(self.axis, int) else self.axis
            axes = sorted(a % len(self.in_shape) for a in axes)
            shape = list(gy.shape)
            for a in axes:
                shape.insert(a, 1)
            gy = reshape(gy, shape)
        elif self.axis is None:
            gy = reshape(gy, (1,) * len(self.in_shape))
        return broadcast_to(gy, self.in_shape)


class Reshape(Function):
    """A view where NumPy can make one. A batch-last input (a convolution's output, see
    kernels/layout.py) that must be copied, as by a flatten, is copied with the tiled transpose;
    its gradient is handed back in batch-last memory, so the layers below it stay copy-free."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        self.batch_last = batch_last(x)
        if self.batch_last:
            n, nd = x.shape[0], x.ndim
            if self.shape and self.shape[0] == n:  # per-sample dims only: a view, batch-last
                rows = x.transpose((*range(1, nd), 0)).reshape(*self.shape[1:], n)
                return rows.transpose((rows.ndim - 1, *range(rows.ndim - 1)))
            x = batch_first_copy(x)
        return x.reshape(self.shape)

    def backward(self, gy):
        gx = reshape(gy, self.in_shape)
        return ToBatchLast()(gx) if self.batch_last else gx


class ToBatchLast(Function):
    """The identity, computed into batch-last memory (kernels/layout.py)."""

    def forward(self, x):
        return x if batch_last(x) else batch_last_copy(x)

    def backward(self, gy):
        return gy


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return transpose(gy)
        inv = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inv[a] = i
        return transpose(gy, tuple(inv))


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape = x.shape
        return x[self.index]

    def backward(self, gy):
        return ScatterAdd(self.index, self.in_shape)(gy)


class ScatterAdd(Function):
    """The adjoint of indexing: a zero array of `shape` with `g` added at `index`."""

    def __init__(self, index, shape):
        self.index, self.shape = index, shape

    def forward(self, g):
        out = backend.array_module(g).zeros(self.shape, g.dtype)
        backend.scatter_add(out, self.index, g)
        return out

    def backward(self, gg):
        return GetItem(self.index)(gg)


def add(a, b) -> Tensor:
    return Add()(a, b)


def sub(a, b) -> Tensor:
    return Sub()(a, b)


def mul(a, b) -> Tensor:
    return Mul()(a, b)


def div(a, b) -> Tensor:
    return Div()(a, b)


def neg(x) -> Tensor:
    return Neg()(x)


def pow(x, c: float) -> Tensor:  # noqa: A001 - mirrors torch.pow
    return Pow(c)(x)


def exp(x) -> Tensor:
    return Exp()(x)


def log(x) -> Tensor:
    return Log()(x)


def sqrt(x) -> Tensor:
    return Pow(0.5)(x)


def matmul(a, b) -> Tensor:
    return MatMul()(a, b)


def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - mirrors torch.sum
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    x = as_tensor(x)
    axes = range(x.ndim) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    n = 1
    for a in axes:
        n *= x.shape[a]
    return Sum(axis, keepdims)(x) * (1.0 / n)


def reshape(x, *shape) -> Tensor:
    shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
    return x if tuple(x.shape) == shape else Reshape(shape)(x)


def transpose(x, axes=None) -> Tensor:
    return Transpose(axes)(x)


def linear(x, weight, bias=None) -> Tensor:
    """y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch."""
    x, weight = as_tensor(x), as_tensor(weight)
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: expected input (N, {weight.shape[-1]}) for weight of shape "
                         f"{tuple(weight.shape)}, got input of shape {tuple(x.shape)}")
    for t, what in ((x, "input"), (weight, "weight")):
        if t.dtype.kind != "f":
            raise TypeError(f"linear: {what} must be a float array, got {t.dtype}")
    return Linear()(x, weight) if bias is None else Linear()(x, weight, as_tensor(bias))


def _swap(ndim: int, d0: int, d1: int) -> tuple:
    axes = list(range(ndim))
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return tuple(axes)


def _install_tensor_methods() -> None:
    """Give Tensor its operators (kept here so autograd.py stays a screenful)."""
    T = Tensor
    T.__add__ = lambda a, b: add(a, b)
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = lambda a, b: sub(a, b)
    T.__rsub__ = lambda a, b: sub(as_tensor(b, like=a), a)
    T.__mul__ = lambda a, b: mul(a, b)
    T.__rmul__ = lambda a, b: mul(b, a)
    T.__truediv__ = lambda a, b: div(a, b)
    T.__rtruediv__ = lambda a, b: div(as_tensor(b, like=a), a)
    T.__neg__ = lambda a: neg(a)
    T.__pow__ = lambda a, c: pow(a, c)
    T.__matmul__ = lambda a, b: matmul(a, b)
    T.__getitem__ = lambda a, index: GetItem(index)(a)
    T.reshape = reshape
    T.view = reshape
    T.transpose = lambda a, dim0=0, dim1=1: transpose(a, _swap(a.ndim, dim0, dim1))
    T.permute = lambda a, *axes: transpose(a, tuple(axes[0]) if len(axes) == 1 else axes)
    T.T = property(lambda a: transpose(a))
    T.sum = lambda a, axis=None, keepdims=False: sum(a, axis, keepdims)
    T.mean = lambda a, axis=None, keepdims=False: mean(a, axis, keepdims)
    T.exp = exp
    T.log = log
    T.sqrt = sqrt


_install_tensor_methods()
