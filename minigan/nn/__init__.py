"""Modules and layers (as torch.nn)."""

import sys

from .. import functional
from . import init, utils
from .layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    Unflatten,
    Upsample,
)
from .module import Module, Parameter

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d", "Dropout", "Flatten", "LeakyReLU",
    "Linear", "Module", "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "Unflatten",
    "Upsample", "functional", "init", "utils",
]

# `import minigan.nn.functional as F` works as it does in PyTorch: the same module object.
sys.modules[__name__ + ".functional"] = functional
