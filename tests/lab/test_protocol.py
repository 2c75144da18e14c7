"""The mode protocol on point sets whose answers are known, and against a float64 loop."""

import math

import numpy as np
import pytest

from minigan.lab import mixtures, protocol


def _loop_reference(points, means, sigma):
    """Nearest mode by an explicit loop; counts within 3 sigma; KL(p || uniform)."""
    counts = [0] * len(means)
    for x, y in points:
        d = [math.hypot(x - mx, y - my) for mx, my in means]
        j = min(range(len(d)), key=d.__getitem__)
        if d[j] < 3 * sigma:
            counts[j] += 1
    total = sum(counts)
    kl = sum(c / total * math.log(c / total * len(means)) for c in counts if c)
    return counts, 100 * total / len(points), kl


@pytest.mark.parametrize("make", [mixtures.ring, mixtures.grid])
def test_all_samples_on_the_modes(make):
    mix = make()
    rng = np.random.default_rng(0)
    per = protocol.SAMPLES // len(mix.means)             # the same number at every mode
    pts = np.repeat(mix.means, per, axis=0) + rng.uniform(-1, 1, (per * len(mix.means), 2)) \
        * mix.sigma                                    # within sqrt(2) sigma < 3 sigma
    m = protocol.evaluate(pts, mix.means, mix.sigma)
    assert m["modes"] == len(mix.means)
    assert m["high_quality"] == 100.0
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    assert m["histogram"] == [per] * len(mix.means)


def test_all_samples_on_one_mode():
    mix = mixtures.ring()
    pts = mix.means[3] + np.random.default_rng(0).normal(0, mix.sigma / 2, (2500, 2))
    m = protocol.evaluate(pts, mix.means, mix.sigma)
    # |N(0, s/2)^2| < 3 s fails with probability exp(-18) per point: none of 2,500
    assert (m["modes"], m["high_quality"]) == (1, 100.0)
    assert m["reverse_kl"] == pytest.approx(math.log(8), rel=1e-12)   # KL(delta || uniform)


def test_uniform_noise_is_mostly_low_quality():
    mix = mixtures.grid()
    pts = np.random.default_rng(0).uniform(-5, 5, (protocol.SAMPLES, 2))
    m = protocol.evaluate(pts, mix.means, mix.sigma)
    # expected share: 25 discs of radius 3 sigma in a 10 x 10 square = 1.77 % (44 of 2,500,
    # binomial sd 6.6); 4 sd either side
    p = 25 * math.pi * (3 * mix.sigma) ** 2 / 100
    sd = math.sqrt(p * (1 - p) / protocol.SAMPLES)
    assert abs(m["high_quality"] / 100 - p) < 4 * sd
    counts, hq, kl = _loop_reference(pts, mix.means, mix.sigma)
    assert m["histogram"] == counts and m["high_quality"] == pytest.approx(hq)
    assert m["reverse_kl"] == pytest.approx(kl, rel=1e-12)
    far = protocol.evaluate(np.full((10, 2), 100.0), mix.means, mix.sigma)
    assert (far["modes"], far["high_quality"]) == (0, 0.0) and math.isnan(far["reverse_kl"])


def test_the_three_sigma_boundary_and_a_loop_reference():
    mix = mixtures.ring()
    s = mix.sigma
    inside = mix.means[0] + [2.99 * s, 0]
    outside = mix.means[0] + [3.01 * s, 0]
    assert protocol.evaluate([inside], mix.means, s)["high_quality"] == 100.0
    assert protocol.evaluate([outside], mix.means, s)["high_quality"] == 0.0
    rng = np.random.default_rng(5)                 # a mix of near and far points
    pts = mix.sample(300, rng) + rng.normal(0, 0.03, (300, 2))
    m = protocol.evaluate(pts, mix.means, s)
    counts, hq, kl = _loop_reference(pts, mix.means, s)
    assert m["histogram"] == counts and m["high_quality"] == pytest.approx(hq)
    assert m["reverse_kl"] == pytest.approx(kl, rel=1e-12)
    assert m["modes"] == sum(c > 0 for c in counts)


def test_bad_input():
    with pytest.raises(ValueError, match=r"points must be \(N, 2\)"):
        protocol.evaluate(np.zeros((4, 3)), mixtures.ring().means, 0.01)
    with pytest.raises(ValueError, match="sigma must be positive"):
        protocol.evaluate(np.zeros((4, 2)), mixtures.ring().means, 0.0)
