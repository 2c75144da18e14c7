"""The small MLPs of the 2-D experiments, and packing (PacGAN: D judges m samples at once).

PacGAN's networks: G maps 2-D noise through four hidden layers of 400 units (Linear without
bias, BatchNorm, ReLU) to a point; D has three hidden layers of 200 units. (The paper's D uses
maxout with 5 pieces; here LeakyReLU(0.2), a layer minigan has.) Without BatchNorm, G starts
as a tiny blob near the origin (default init shrinks each ReLU layer's output) and tends to
move as one.
"""

from __future__ import annotations

from .. import nn
from ..autograd import Tensor


def generator(z_dim: int = 2, hidden: int = 400, layers: int = 4,
              batchnorm: bool = True) -> nn.Sequential:
    """z (B, z_dim) -> points (B, 2): `layers` hidden layers of `hidden` units, each Linear,
    BatchNorm1d (the Linear then without bias) and ReLU; `batchnorm=False`: Linear and ReLU."""
    mods, width = [], z_dim
    for _ in range(layers):
        mods.append(nn.Linear(width, hidden, bias=not batchnorm))
        mods += [nn.BatchNorm1d(hidden)] * batchnorm + [nn.ReLU()]
        width = hidden
    return nn.Sequential(*mods, nn.Linear(width, 2))


def discriminator(pack: int = 1, hidden: int = 200, layers: int = 3,
                  critic: bool = False) -> nn.Module:
    """points (B * pack, 2) -> logits (B, 1): an MLP on packs of `pack` points (see Packed).

    `critic` (WGAN-GP) changes nothing in this MLP (it has no BatchNorm or dropout to drop);
    it is accepted so the presets have the image builders' signature.
    """
    mods, width = [], 2 * pack
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        width = hidden
    mlp = nn.Sequential(*mods, nn.Linear(width, 1))
    return Packed(mlp, pack)


class Packed(nn.Module):
    """D on packs: (B * m, d) points -> (B, m * d), each row m consecutive samples, -> net.

    PacGAN (Lin et al. 2018) shows that judging m samples jointly penalises a G that puts
    too much mass on few modes; m = 1 is the plain D.
    """

    def __init__(self, net: nn.Module, pack: int = 1):
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be at least 1, got {pack}")
        self.net, self.pack = net, int(pack)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim != 2 or x.shape[0] % self.pack:
            raise ValueError(f"Packed(pack={self.pack}): expected (B * {self.pack}, d) "
                             f"points, got shape {tuple(x.shape)}; use a batch size that is "
                             f"a multiple of {self.pack}")
        return self.net(pack(x, self.pack))

    def extra_repr(self) -> str:
        return f"pack={self.pack}"


def pack(x: Tensor, m: int) -> Tensor:
    """(B * m, d) -> (B, m * d): rows i*m .. i*m+m-1 side by side (differentiable)."""
    n, d = x.shape
    return x.reshape(n // m, m * d)
