"""Losses: binary cross-entropy (on logits and on probabilities) and mean squared error."""

from __future__ import annotations

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..kernels import loss as K
from .activation import sigmoid


class BCEWithLogits(Function):
    """Elementwise max(z, 0) - z t + log(1 + exp(-|z|)): no overflow for any z (one kernel)."""

    def forward(self, z, t):
        return K.bce_with_logits(z, t)

    def backward(self, gl):
        z, t = self.inputs
        gz = BCEWithLogitsGrad()(z, t, gl) if self.needs_input_grad[0] else None
        gt = -gl * z if self.needs_input_grad[1] else None
        return gz, gt


class BCEWithLogitsGrad(Function):
    """(z, t, gl) -> gl * (sigmoid(z) - t) in one kernel; its own backward is composite."""

    def forward(self, z, t, gl):
        return K.bce_with_logits_grad(z, t, gl)

    def backward(self, ggz):
        z, t, gl = self.inputs
        need = self.needs_input_grad
        s = sigmoid(z) if need[0] or need[2] else None
        gz = ggz * gl * s * (1 - s) if need[0] else None
        gt = -ggz * gl if need[1] else None
        ggl = ggz * (s - t) if need[2] else None
        return gz, gt, ggl


class ClampMin(Function):
    def __init__(self, lo: float):
        self.lo = lo

    def forward(self, x):
        return backend.array_module(x).maximum(x, x.dtype.type(self.lo))

    def backward(self, gy):
        x = self.inputs[0]
        return gy * Tensor((x.data > self.lo).astype(x.dtype))


class ClampedLog(Function):
    """max(log x, -100) for x >= 0: finite at x = 0, where log(x) would be -inf.

    The backward is gy / max(x, 1e-12), so a probability saturated at 0 or 1 gives a large
    finite gradient as in PyTorch's BCE, not 0 * inf = nan (and 1 / x stays finite in float32).
    """

    def forward(self, x):
        xp = backend.array_module(x)
        pos = x > 0
        y = xp.where(pos, xp.log(xp.where(pos, x, 1)), -100)
        return xp.maximum(y, -100).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy / ClampMin(1e-12)(self.inputs[0])


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _pair(a, b, name):
    a = as_tensor(a)
    if a.dtype.kind != "f":  # an integer input would be truncated silently
        raise TypeError(f"{name}: input must be a float array, got {a.dtype}")
    b = as_tensor(b, like=a)
    if b.dtype != a.dtype:
        b = Tensor(b.data.astype(a.dtype)) if not b.requires_grad else b
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{name}: input shape {tuple(a.shape)} and target shape "
                         f"{tuple(b.shape)} differ")
    return a, b


def binary_cross_entropy_with_logits(logits, target, reduction: str = "mean") -> Tensor:
    """BCE of sigmoid(logits) against target, computed stably from the logits."""
    z, t = _pair(logits, target, "binary_cross_entropy_with_logits")
    return _reduce(BCEWithLogits()(z, t), reduction)


def binary_cross_entropy(prob, target, reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)); the logs are clamped at -100 as PyTorch does."""
    p, t = _pair(prob, target, "binary_cross_entropy")
    loss = -(t * ClampedLog()(p) + (1 - t) * ClampedLog()(1 - p))
    return _reduce(loss, reduction)


def mse_loss(input, target, reduction: str = "mean") -> Tensor:  # noqa: A002 - torch's name
    a, b = _pair(input, target, "mse_loss")
    d = a - b
    return _reduce(d * d, reduction)
