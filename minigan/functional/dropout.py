"""Dropout and nearest-neighbour upsampling: ops that move or mask values without arithmetic."""

from __future__ import annotations

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..kernels import dropout as K
from ..kernels.layout import batch_last


class Dropout(Function):
    def __init__(self, p: float):
        self.p = p

    def forward(self, x):
        y, self.mask = K.dropout(x, self.p, backend.rng.key())
        return y

    def backward(self, gy):
        return gy * Tensor(self.mask)  # the mask is a constant: dropout is linear in x


def dropout(x, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity in eval)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = as_tensor(x)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return Dropout(float(p))(x)


class UpsampleNearest(Function):
    def __init__(self, s: int):
        self.s = s

    def forward(self, x):
        if batch_last(x):  # repeat within the (C, H, W, N) memory: the result stays batch-last
            rows = x.transpose(1, 2, 3, 0).repeat(self.s, axis=1).repeat(self.s, axis=2)
            return rows.transpose(3, 0, 1, 2)
        return x.repeat(self.s, axis=2).repeat(self.s, axis=3)

    def backward(self, gy):
        return BlockSum(self.s)(gy)


class BlockSum(Function):
    """Sum over s x s blocks: the adjoint of nearest upsampling."""

    def __init__(self, s: int):
        self.s = s

    def forward(self, g):
        n, c, h, w = g.shape
        s = self.s
        if batch_last(g):
            rows = g.transpose(1, 2, 3, 0).reshape(c, h // s, s, w // s, s, n)
            return rows.sum(axis=(2, 4)).transpose(3, 0, 1, 2)
        return g.reshape(n, c, h // s, s, w // s, s).sum(axis=(3, 5))

    def backward(self, gg):
        return UpsampleNearest(self.s)(gg)


def upsample_nearest2d(x, scale_factor: int = 2) -> Tensor:
    """(N, C, H, W) -> (N, C, H*s, W*s), each pixel repeated s x s times."""
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"upsample_nearest2d: expected (N, C, H, W), got {tuple(x.shape)}")
    s = int(scale_factor)
    if s != scale_factor or s < 1:
        raise ValueError(f"upsample_nearest2d: scale_factor must be a positive integer, "
                         f"got {scale_factor}")
    return UpsampleNearest(s)(x)
