"""Parameter initialisation in place, with PyTorch's names and default schemes."""

from __future__ import annotations

import math

from .. import backend
from ..autograd import Tensor


def _fill(t: Tensor, values) -> Tensor:
    t.data[...] = values
    return t


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    return _fill(t, mean + std * backend.rng.randn(t.shape, t.dtype, t.device))


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    return _fill(t, backend.rng.uniform(a, b, t.shape, t.dtype, t.device))


def constant_(t: Tensor, value: float) -> Tensor:
    return _fill(t, value)


def zeros_(t: Tensor) -> Tensor:
    return _fill(t, 0)


def ones_(t: Tensor) -> Tensor:
    return _fill(t, 1)


def fan_in_and_fan_out(t: Tensor) -> tuple[int, int]:
    """As PyTorch: dim 1 is fan-in, dim 0 fan-out, times the kernel's receptive field."""
    if t.ndim < 2:
        raise ValueError(f"fan in/out needs a tensor with at least 2 dims, got {t.shape}")
    field = math.prod(t.shape[2:])
    return t.shape[1] * field, t.shape[0] * field


def kaiming_uniform_(t: Tensor, a: float = 0.0, nonlinearity: str = "leaky_relu") -> Tensor:
    fan_in, _ = fan_in_and_fan_out(t)
    gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity == "leaky_relu" else math.sqrt(2.0)
    bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
    return uniform_(t, -bound, bound)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def default_init_(weight: Tensor, bias: Tensor | None) -> None:
    """PyTorch's default for Linear and Conv layers.

    Weight: kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)); bias: U(+-1/sqrt(fan_in)).
    """
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
