"""Batch normalisation; training mode has fused kernels and an exact second derivative."""

from __future__ import annotations

from .. import backend
from ..autograd import Function, Tensor, as_tensor, enable_grad, grad, is_grad_enabled
from ..kernels import norm as K
from ..kernels.layout import batch_last
from .activation import LeakyReLUGrad, leaky_relu
from .math import transpose


class BatchNormTrain(Function):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta over a (N, C, L) view, batch statistics.

    With `slope` (>= 0), y = leaky_relu(that, slope) in one pass (a BatchNorm followed by a
    LeakyReLU or ReLU, fused by nn.Sequential): the normalised values are never stored, and
    the backward takes the ReLU's gradient from y itself (y > 0 exactly where its input is)."""

    def __init__(self, eps: float, slope: float | None = None):
        self.eps, self.slope = eps, slope
        self.retain_outputs = slope is not None

    def forward(self, x, gamma, beta):
        y, self.mean, self.invstd = K.batch_norm_forward(x, gamma, beta, self.eps, self.slope)
        return y

    def backward(self, gy):
        x, gamma, _ = self.inputs
        grad = BatchNormGrad(self.eps, self.mean, self.invstd)
        if self.slope is None:
            return grad(x, gamma, gy)
        z = self.saved_outputs[0]
        if is_grad_enabled():  # a graph of the gradient: the two steps as their Functions
            return grad(x, gamma, LeakyReLUGrad(self.slope)(Tensor(z), gy))
        gx, ggamma, gbeta = K.batch_norm_backward(x.data, gy.data, self.mean, self.invstd,
                                                  gamma.data, z, self.slope)
        return Tensor(gx), Tensor(ggamma), Tensor(gbeta)


class BatchNormGrad(Function):
    """(x, gamma, gy) -> (gx, ggamma, gbeta) of training-mode batchnorm.

    Its backward differentiates the same formula written with differentiable primitives, where
    1/std stays a function of x (treating it as a constant is the classic second-order bug).
    """

    def __init__(self, eps, mean, invstd):
        self.eps, self.mean, self.invstd = eps, mean, invstd

    def forward(self, x, gamma, gy):
        return K.batch_norm_backward(x, gy, self.mean, self.invstd, gamma)

    def backward(self, ggx, gggamma, ggbeta):
        inputs = self.inputs
        create_graph = is_grad_enabled()
        with enable_grad():
            outs = batch_norm_grad_reference(*inputs, self.eps)
        wanted = [x for x, need in zip(inputs, self.needs_input_grad) if need]
        # an output with no graph (gbeta = sum(gy) when gy is a constant) contributes nothing
        live = [(y, g) for y, g in zip(outs, (ggx, gggamma, ggbeta)) if y.requires_grad]
        gs = iter(grad([y for y, _ in live], wanted, [g for _, g in live],
                       create_graph=create_graph, allow_unused=True, _partial=True))
        return tuple(next(gs) if need else None for need in self.needs_input_grad)


def batch_norm_grad_reference(x, gamma, gy, eps):
    """The batchnorm gradient formula in primitives: x, gy (N, C, L), gamma (C,)."""
    m = x.shape[0] * x.shape[2]
    c = x.shape[1]
    xc = x - x.mean(axis=(0, 2), keepdims=True)
    inv = ((xc * xc).mean(axis=(0, 2), keepdims=True) + eps) ** -0.5
    xhat = xc * inv
    gbeta = gy.sum(axis=(0, 2))
    ggamma = (gy * xhat).sum(axis=(0, 2))
    corr = (gbeta.reshape(1, c, 1) + xhat * ggamma.reshape(1, c, 1)) * (1.0 / m)
    gx = (gamma.reshape(1, c, 1) * inv) * (gy - corr)
    return gx, ggamma, gbeta


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *, _slope: float | None = None
               ) -> Tensor:
    """Normalise each channel of x (N, C, ...) as torch.nn.functional.batch_norm.

    In training mode the batch statistics are used and the running arrays (if given) are
    updated in place: r = (1 - momentum) * r + momentum * stat, with the unbiased variance.
    `_slope` (>= 0): leaky_relu(batch_norm(...), _slope), in training mode as one pass (on
    the GPU its two kernels in turn): nn.Sequential's fusion of a BatchNorm and the LeakyReLU
    or ReLU after it.
    """
    x = as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input (N, C) or (N, C, ...), got {tuple(x.shape)}")
    if _slope is not None and not _slope >= 0:
        raise ValueError(f"batch_norm: _slope must be >= 0 (the fused backward reads the "
                         f"ReLU's gradient off its output), got {_slope}")
    if x.dtype.kind != "f":
        raise TypeError(f"batch_norm: input must be a float array, got {x.dtype}")
    n, c = x.shape[:2]
    xp = backend.array_module(x.data)
    for a, name in ((running_mean, "running_mean"), (running_var, "running_var"),
                    (weight, "weight"), (bias, "bias")):
        if a is not None and tuple(a.shape) != (c,):
            raise ValueError(f"batch_norm: input has {c} channels but {name} has shape "
                             f"{tuple(a.shape)}")
    gamma = as_tensor(weight) if weight is not None else Tensor(xp.ones(c, x.dtype))
    beta = as_tensor(bias) if bias is not None else Tensor(xp.zeros(c, x.dtype))
    rows = batch_last(x.data)
    if rows:  # batch-last memory (a convolution's output): one contiguous row per channel
        nd = x.ndim
        x3 = transpose(x, (*range(1, nd), 0)).reshape(1, c, -1)
    else:
        x3 = x.reshape(n, c, -1)
    m = x3.shape[0] * x3.shape[2]

    def back(y3):  # (1, C, L) or (N, C, L) -> x's shape and layout
        if rows:
            return transpose(y3.reshape(*x.shape[1:], n), (nd - 1, *range(nd - 1)))
        return y3.reshape(x.shape)

    if training:
        if m < 2:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input of shape {tuple(x.shape)}")
        fn = BatchNormTrain(eps, _slope)
        y = fn(x3, gamma, beta)
        if running_mean is not None:
            var = (1.0 / (fn.invstd.astype(xp.float64) ** 2) - eps) * (m / (m - 1))
            running_mean *= 1 - momentum
            running_mean += momentum * fn.mean
            running_var *= 1 - momentum
            running_var += (momentum * var).astype(running_var.dtype)
        return back(y)
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
    scale = gamma * Tensor((running_var + eps) ** -0.5)
    shift = beta - Tensor(running_mean) * scale
    y = back(x3 * scale.reshape(1, c, 1) + shift.reshape(1, c, 1))
    return y if _slope is None else leaky_relu(y, _slope)
