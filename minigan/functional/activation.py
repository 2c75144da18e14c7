"""Pointwise nonlinearities."""

from __future__ import annotations

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..kernels import activation as K
from ..kernels.layout import in_memory_order


class LeakyReLU(Function):
    def __init__(self, slope: float):
        self.slope = slope

    def forward(self, x):
        return in_memory_order(K.leaky_relu, x, slope=self.slope)

    def backward(self, gy):
        return LeakyReLUGrad(self.slope)(self.inputs[0], gy)


class LeakyReLUGrad(Function):
    """(x, gy) -> gy * (1 if x > 0 else slope); linear in gy, flat in x almost everywhere."""

    def __init__(self, slope: float):
        self.slope = slope

    def forward(self, x, gy):
        return in_memory_order(K.leaky_relu_grad, x, gy, slope=self.slope)

    def backward(self, ggx):
        return None, LeakyReLUGrad(self.slope)(self.inputs[0], ggx)


class Tanh(Function):
    retain_outputs = True

    def forward(self, x):
        return backend.array_module(x).tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (1 - y * y)


class Sigmoid(Function):
    retain_outputs = True

    def forward(self, x):
        # exp(-|x|) never overflows, and the x < 0 branch keeps full relative precision in the
        # tail (1 + tanh(x / 2) would round to 0 below x = -37 in float64, -17 in float32)
        xp = backend.array_module(x)
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def backward(self, gy):
        y = self.output()
        return gy * y * (1 - y)


def _float(x, name):
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a float array, got {x.dtype}")
    return x


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    return LeakyReLU(float(negative_slope))(_float(x, "leaky_relu"))


def relu(x) -> Tensor:
    return LeakyReLU(0.0)(_float(x, "relu"))


def tanh(x) -> Tensor:
    return Tanh()(_float(x, "tanh"))


def sigmoid(x) -> Tensor:
    return Sigmoid()(_float(x, "sigmoid"))
