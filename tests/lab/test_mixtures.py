"""The ring and grid mixtures against their definitions, and user point sets."""

import itertools
import math

import numpy as np
import pytest

from minigan.lab import mixtures


def test_ring_has_eight_distinct_modes_on_the_unit_circle():
    ring = mixtures.ring()
    assert ring.means.shape == (8, 2) and ring.sigma == 0.01
    for k, (x, y) in enumerate(ring.means):          # angle 2*pi*k/8, radius 1
        assert math.isclose(x, math.cos(math.pi * k / 4), abs_tol=1e-12)
        assert math.isclose(y, math.sin(math.pi * k / 4), abs_tol=1e-12)
    gaps = [np.linalg.norm(a - b) for a, b in itertools.combinations(ring.means, 2)]
    # neighbours are 2 sin(pi / 8) apart; linspace(0, 2 pi, 8) would give a gap of 0
    assert min(gaps) == pytest.approx(2 * math.sin(math.pi / 8), abs=1e-12)


def test_grid_is_five_by_five_at_minus_four_to_four():
    grid = mixtures.grid()
    assert grid.sigma == 0.05
    want = {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert {tuple(m) for m in grid.means.tolist()} == want and len(grid.means) == 25


@pytest.mark.parametrize("make", [mixtures.ring, mixtures.grid])
def test_samples_are_equal_weight_gaussians_of_the_stated_sigma(make):
    mix = make()
    pts = mix.sample(40_000, np.random.default_rng(0)).astype(np.float64)
    assert pts.dtype == np.float64 and pts.shape == (40_000, 2)
    k = ((pts[:, None] - mix.means[None]) ** 2).sum(2).argmin(1)
    share = np.bincount(k, minlength=len(mix.means)) / len(pts)
    p = 1 / len(mix.means)                      # binomial sd of a share: sqrt(p(1-p)/n)
    assert np.abs(share - p).max() < 5 * math.sqrt(p * (1 - p) / len(pts))
    resid = pts - mix.means[k]
    # per-coordinate sd estimated from 40,000 values: relative error ~ 1/sqrt(2n) = 0.4 %
    assert resid.std(axis=0) == pytest.approx([mix.sigma] * 2, rel=0.03)
    assert np.abs(resid.mean(axis=0)).max() < 5 * mix.sigma / math.sqrt(len(pts))


def test_a_user_point_set_is_sampled_from_its_points(tmp_path):
    pts = np.random.default_rng(1).standard_normal((50, 2))
    np.save(tmp_path / "p.npy", pts)
    mix = mixtures.load(tmp_path / "p.npy")
    assert not mix.has_modes
    drawn = mix.sample(200, np.random.default_rng(0))
    assert drawn.shape == (200, 2)
    assert all(np.isclose(pts.astype(np.float32), d).all(1).any() for d in drawn)


def test_bad_mixtures_say_what_to_give(tmp_path):
    with pytest.raises(ValueError, match="'ring', 'grid' or a path"):
        mixtures.load("spiral")
    with pytest.raises(FileNotFoundError, match="no point file"):
        mixtures.load(tmp_path / "missing.npy")
    np.save(tmp_path / "three.npy", np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, 2\), got \(4, 3\)"):
        mixtures.load(tmp_path / "three.npy")
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="finite"):
        mixtures.load(tmp_path / "nan.npy")
