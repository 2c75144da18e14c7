"""The mode-collapse protocol of the PacGAN and VEEGAN papers for 2-D Gaussian mixtures.

Draw 2,500 samples from G. Each sample goes to its nearest mode; it is *high quality* if it
lies within 3 standard deviations of that mode's mean. A mode is *covered* when at least one
high-quality sample went to it. The reverse KL is KL(p || u) between p, the histogram of
the high-quality samples over the modes, and u, the uniform mixture weights:
sum_k p_k log(p_k K), 0 when every mode gets the same share, log K when one mode gets all.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLES = 2500
THRESHOLD = 3.0


def evaluate(points, means, sigma: float, threshold: float = THRESHOLD) -> dict:
    """{'modes': covered modes, 'high_quality': % of points within `threshold` sigma of their
    nearest mode, 'reverse_kl': KL(mode histogram || uniform), 'histogram': counts per mode}.

    With no high-quality point at all the reverse KL is undefined and reported as NaN.
    """
    points = np.asarray(points, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != means.shape[1] or len(points) == 0:
        raise ValueError(f"points must be (N, {means.shape[1]}) with N > 0, got {points.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    d2 = ((points[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)      # (N, K)
    nearest = d2.argmin(axis=1)                                            # (N,)
    good = np.sqrt(d2[np.arange(len(points)), nearest]) < threshold * sigma
    counts = np.bincount(nearest[good], minlength=len(means))             # (K,)
    total = int(counts.sum())
    if total:
        p = counts[counts > 0] / total
        kl = float((p * np.log(p * len(means))).sum())
    else:
        kl = math.nan
    return {"modes": int((counts > 0).sum()), "high_quality": 100.0 * total / len(points),
            "reverse_kl": kl, "histogram": counts.tolist(), "num_modes": len(means)}
