"""The layers a DCGAN needs, with PyTorch's constructor arguments and weight layouts."""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import Tensor
from . import init
from .module import Module, Parameter


def _param(*shape, device=None, dtype=np.float32) -> Parameter:
    return Parameter(backend.xp_for(backend.check_device(device)).zeros(shape, dtype))


def _expect(layer: Module, x: Tensor, ndims: tuple, channels: int | None, axis: int = 1):
    """Check an input's rank and channel count; name the layer in the error."""
    if x.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{layer!r}: expected a {want} input, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[axis] != channels:
        raise ValueError(f"{layer!r}: expected {channels} channels/features at dim {axis}, got "
                         f"input of shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{layer!r}: expected a float input, got {x.dtype}; scale images to "
                        "floats first (e.g. x.astype(np.float32) / 127.5 - 1)")


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param(out_features, in_features, device=device)
        self.bias = _param(out_features, device=device) if bias else None
        init.default_init_(self.weight, self.bias)

    def forward(self, x):
        x = _tensor(x)
        _expect(self, x, (2,), self.in_features)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class Conv2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, device=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (_pair(kernel_size), _pair(stride),
                                                       _pair(padding))
        self.weight = _param(out_channels, in_channels, *self.kernel_size, device=device)
        self.bias = _param(out_channels, device=device) if bias else None
        init.default_init_(self.weight, self.bias)

    def forward(self, x):
        x = _tensor(x)
        _expect(self, x, (4,), self.in_channels)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
               f"stride={self.stride}, padding={self.padding}"


class ConvTranspose2d(Module):
    """Weight (in_channels, out_channels, kH, kW), as torch.nn.ConvTranspose2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, bias: bool = True, device=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (_pair(kernel_size), _pair(stride),
                                                       _pair(padding))
        self.output_padding = _pair(output_padding)
        self.weight = _param(in_channels, out_channels, *self.kernel_size, device=device)
        self.bias = _param(out_channels, device=device) if bias else None
        init.default_init_(self.weight, self.bias)

    def forward(self, x):
        x = _tensor(x)
        _expect(self, x, (4,), self.in_channels)
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
               f"stride={self.stride}, padding={self.padding}, " \
               f"output_padding={self.output_padding}"


class _BatchNorm(Module):
    ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        xp = backend.xp_for(backend.check_device(device))
        self.weight = Parameter(xp.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(xp.zeros(num_features, np.float32)) if affine else None
        self.track_running_stats = track_running_stats
        if track_running_stats:
            self.register_buffer("running_mean", xp.zeros(num_features, np.float32))
            self.register_buffer("running_var", xp.ones(num_features, np.float32))
            self.register_buffer("num_batches_tracked", xp.zeros((), np.int64))

    def forward(self, x):
        return self._forward(x)

    def _forward(self, x, slope=None):
        """forward(x), then leaky_relu(., slope) if a slope is given (Sequential's fusion)."""
        x = _tensor(x)
        _expect(self, x, self.ndims, self.num_features)
        use_batch = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
        rm = self.running_mean if self.track_running_stats else None
        rv = self.running_var if self.track_running_stats else None
        return F.batch_norm(x, rm, rv, self.weight, self.bias, use_batch, self.momentum,
                            self.eps, _slope=slope)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L) inputs."""
    ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W) inputs."""
    ndims = (4,)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Dropout(Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        x = _tensor(x)
        return x.reshape(*x.shape[:self.start_dim], -1)


class Unflatten(Module):
    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.sizes = dim, tuple(unflattened_size)

    def forward(self, x):
        x = _tensor(x)
        if x.shape[self.dim] != math.prod(self.sizes):
            raise ValueError(f"{self!r}: dim {self.dim} of input {tuple(x.shape)} has "
                             f"{x.shape[self.dim]} elements, expected {math.prod(self.sizes)}")
        d = self.dim % x.ndim
        return x.reshape(*x.shape[:d], *self.sizes, *x.shape[d + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.sizes}"


class Upsample(Module):
    def __init__(self, scale_factor: int = 2, mode: str = "nearest"):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is implemented, got {mode!r}")
        self.scale_factor = int(scale_factor)

    def forward(self, x):
        x = _tensor(x)
        _expect(self, x, (4,), None)
        return F.upsample_nearest2d(x, self.scale_factor)

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}, mode='nearest'"


def _hooked(m: Module) -> bool:
    return m._hooks is not None and any(m._hooks.values())


def _fusable(m: Module, after: Module) -> float | None:
    """The slope when Sequential may run `m` and `after` as one fused pass: a BatchNorm in
    training mode followed by a LeakyReLU (slope >= 0) or ReLU, neither subclassed nor hooked
    (a hook sees what the module alone gives); else None."""
    if (type(m) not in (BatchNorm1d, BatchNorm2d) or not m.training
            or _hooked(m) or _hooked(after)):
        return None
    if type(after) is ReLU:
        return 0.0
    if type(after) is LeakyReLU and after.negative_slope >= 0:
        return float(after.negative_slope)
    return None


class Sequential(Module):
    """Modules applied in order, named '0', '1', ... as in PyTorch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            m = modules[i]
            slope = _fusable(m, modules[i + 1]) if i + 1 < len(modules) else None
            if slope is None:
                x = m(x)
                i += 1
            else:  # a BatchNorm and its activation in one pass (kernels/norm.py)
                x = m._forward(x, slope)
                i += 2
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
