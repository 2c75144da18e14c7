"""A cheap distance between image sets: the Frechet distance on PCA features of the pixels.

The Frechet (2-Wasserstein) distance between Gaussians fitted to two feature sets, as FID does
with Inception features (Heusel et al. 2017), but with the top principal components of the real
images as features: no trained network needed, so it can run every epoch and in tests. It sees
blurry or wrongly placed strokes and missing variety; it is blind to what a classifier would
call the content, so it complements looking at the grids rather than replacing it.
"""

from __future__ import annotations

import numpy as np


def _flat(images) -> np.ndarray:
    """Float64 (N, D) in [-1, 1] from float images in [-1, 1] or uint8 images."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 127.5 - 1.0
    return a.reshape(len(a), -1).astype(np.float64)


def frechet(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)), via symmetric eigendecompositions."""
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T                 # C1^(1/2)
    middle = np.linalg.eigvalsh(root1 @ cov2 @ root1)                # same spectrum as C1 C2
    cross = np.sum(np.sqrt(np.clip(middle, 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross)


class PixelFrechet:
    """Fit on real images once; `distance(fake)` is the Frechet distance in PCA space.

    Images must have the real images' shape; the layout ((N, C, H, W) float in [-1, 1] or the
    dataset's uint8 (N, H, W[, 3])) only needs to be the same for real and fake, since the
    features are flat pixels.
    """

    def __init__(self, real, components: int = 32, max_images: int = 2000, seed: int = 0):
        x = _flat(real)
        if len(x) > max_images:
            x = x[np.random.default_rng(seed).choice(len(x), max_images, replace=False)]
        self.mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.basis = vt[:components].T                               # (D, k)
        f = (x - self.mean) @ self.basis
        self.mu, self.cov = f.mean(axis=0), np.cov(f, rowvar=False)
        self.shape = np.asarray(real).shape[1:]

    def features(self, images) -> np.ndarray:
        return (_flat(images) - self.mean) @ self.basis

    def distance(self, images) -> float:
        f = self.features(images)
        if len(f) < 2:
            raise ValueError("PixelFrechet.distance needs at least 2 images")
        return frechet(f.mean(axis=0), np.cov(f, rowvar=False), self.mu, self.cov)
