"""Differentiable functions, one family a file (as torch.nn.functional)."""

from .activation import leaky_relu, relu, sigmoid, tanh
from .conv import conv2d, conv_transpose2d
from .dropout import dropout, upsample_nearest2d
from .loss import binary_cross_entropy, binary_cross_entropy_with_logits, mse_loss
from .math import (
    exp,
    linear,
    log,
    matmul,
    mean,
    reshape,
    sqrt,
    sum,  # noqa: A004 - mirrors torch.sum
    transpose,
)
from .norm import batch_norm

__all__ = [
    "batch_norm", "binary_cross_entropy", "binary_cross_entropy_with_logits", "conv2d",
    "conv_transpose2d", "dropout", "exp", "leaky_relu", "linear", "log", "matmul", "mean",
    "mse_loss", "relu", "reshape", "sigmoid", "sqrt", "sum", "tanh", "transpose",
    "upsample_nearest2d",
]
