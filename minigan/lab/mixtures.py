"""The standard 2-D toy distributions of the mode-collapse literature, and user point sets.

    ring()    8 Gaussians, means on the unit circle at angles 2*pi*k/8, sigma 0.01
    grid()    25 Gaussians, means at {-4, -2, 0, 2, 4}^2, sigma 0.05
    load(spec)  'ring', 'grid', or a path to a user .npy of shape (N, 2)

The ring and grid are those of the PacGAN and VEEGAN papers' code. A widely copied notebook
builds the ring with linspace(0, 2*pi, 8), which puts modes 0 and 7 on the same point: here the
angles are 2*pi*k/8, k = 0..7, eight distinct modes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Mixture:
    """Equal-weight isotropic Gaussians (means (K, 2), one sigma), or a point set (means None)."""

    name: str
    means: np.ndarray | None
    sigma: float | None
    points: np.ndarray | None = None       # a user point set, sampled uniformly

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points (n, 2) float32 drawn with `rng`."""
        if self.points is not None:
            return self.points[rng.integers(0, len(self.points), n)]
        k = rng.integers(0, len(self.means), n)
        noise = rng.standard_normal((n, 2))
        return (self.means[k] + self.sigma * noise).astype(np.float32)

    @property
    def has_modes(self) -> bool:
        return self.means is not None

    def extent(self, margin: float = 0.5) -> tuple[float, float, float, float]:
        """A square (x0, x1, y0, y1) around the data, for pictures."""
        pts = self.means if self.points is None else self.points
        lo, hi = float(pts.min()) - margin, float(pts.max()) + margin
        return lo, hi, lo, hi


def ring(modes: int = 8, radius: float = 1.0, sigma: float = 0.01) -> Mixture:
    """`modes` Gaussians on a circle at angles 2*pi*k/modes (PacGAN, VEEGAN: 8, 1.0, 0.01)."""
    angles = 2 * np.pi * np.arange(modes) / modes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return Mixture("ring", means, float(sigma))


def grid(side: int = 5, spacing: float = 2.0, sigma: float = 0.05) -> Mixture:
    """side x side Gaussians at spacing * {-(side-1)/2 .. (side-1)/2} (PacGAN: 5, 2.0, 0.05)."""
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    means = np.array([(x, y) for x in ticks for y in ticks], dtype=np.float64)
    return Mixture("grid", means, float(sigma))


def load(spec: str | os.PathLike) -> Mixture:
    """'ring', 'grid', or a .npy file of 2-D points (N, 2)."""
    if str(spec) in ("ring", "grid"):
        return ring() if str(spec) == "ring" else grid()
    path = Path(spec)
    if path.suffix != ".npy":
        raise ValueError(f"unknown mixture {str(spec)!r}: use 'ring', 'grid' or a path to a "
                         ".npy file of 2-D points, shape (N, 2)")
    if not path.is_file():
        raise FileNotFoundError(f"no point file at {path}; give a .npy of shape (N, 2)")
    points = np.load(path, allow_pickle=False)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"{path}: expected 2-D points of shape (N, 2), got {points.shape}")
    if not np.issubdtype(points.dtype, np.number) or not np.isfinite(points).all():
        raise ValueError(f"{path}: points must be finite numbers, got dtype {points.dtype}"
                         " or NaN/inf values")
    return Mixture(str(path), None, None, points.astype(np.float32))
