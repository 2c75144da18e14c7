"""DiffAugment: each transformation against a direct float64 reference, its first and second
derivatives against finite differences, R1 through it, and the trainer with it."""

import numpy as np
import pytest

import minigan
from minigan import backend
from minigan.gan import TrainConfig, Trainer, r1_penalty
from minigan.gan.augment import (
    Augmented,
    color,
    cutout_mask,
    diff_augment,
    parse_policy,
    random_translation,
    translate,
)
from minigan.testing import training_state


def _x(shape, seed=0):
    return minigan.tensor(np.random.default_rng(seed).normal(size=shape), dtype=np.float64,
                          requires_grad=True)


def _shifted(x, dy, dx):
    """The naive loop: out[b, c, i, j] = x[b, c, i - dy, j - dx] where that is inside, else 0."""
    b_, c_, h, w = x.shape
    out = np.zeros_like(x)
    for b in range(b_):
        for i in range(h):
            for j in range(w):
                si, sj = i - dy[b], j - dx[b]
                if 0 <= si < h and 0 <= sj < w:
                    out[b, :, i, j] = x[b, :, si, sj]
    return out


def test_translate_matches_a_naive_loop():
    x = np.random.default_rng(0).normal(size=(6, 2, 5, 7))
    dy = np.array([0, 1, -2, 4, -5, 9])         # the last two shift everything out of the image
    dx = np.array([0, -3, 6, 2, 1, 0])
    np.testing.assert_array_equal(translate(x, dy, dx).numpy(), _shifted(x, dy, dx))
    with pytest.raises(ValueError, match="one dy and dx per sample"):
        translate(x, dy[:3], dx[:3])


def test_translate_gradients_are_finite_differences():
    x = _x((3, 2, 5, 6))
    dy, dx = np.array([1, -2, 0]), np.array([-1, 3, 7])
    assert minigan.gradcheck(lambda t: translate(t, dy, dx) ** 2, [x])
    assert minigan.gradgradcheck(lambda t: translate(t, dy, dx) ** 3, [x])


def test_random_translation_draws_shifts_of_at_most_an_eighth():
    # 28 pixels: shifts in [-4, 4] (DiffAugment's int(28 / 8 + 0.5)), all nine of them used
    x = np.zeros((2000, 1, 28, 28))
    x[:, 0, 14, 14] = 1.0
    minigan.manual_seed(3)
    y = random_translation(minigan.tensor(x)).numpy()[:, 0]
    pos = np.argwhere(y == 1.0)
    assert len(pos) == 2000                     # the dot never leaves the image
    assert sorted(set(pos[:, 1] - 14)) == list(range(-4, 5))
    assert sorted(set(pos[:, 2] - 14)) == list(range(-4, 5))


def test_cutout_masks_are_one_clipped_square_of_half_the_side():
    minigan.manual_seed(4)
    masks = cutout_mask(3000, 28, 28)[:, 0]
    assert set(np.unique(masks)) == {0.0, 1.0}
    for m in masks:
        rows, cols = np.nonzero(m == 0.0)
        assert 0 < len(rows)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == h * w                # one solid rectangle
        assert h <= 14 and w <= 14
        # clipped only by the image's edge
        assert h == 14 or rows.min() == 0 or rows.max() == 27
        assert w == 14 or cols.min() == 0 or cols.max() == 27
    assert (masks == 0.0).any(axis=0).all()     # every pixel is cut now and then


def test_color_follows_its_formula():
    x = np.random.default_rng(5).normal(size=(4, 3, 5, 5))
    minigan.manual_seed(6)
    got = color(minigan.tensor(x)).numpy()
    draws = np.random.Generator(np.random.PCG64(6))
    b = draws.random(4).reshape(-1, 1, 1, 1) - 0.5      # brightness
    s = draws.random(4).reshape(-1, 1, 1, 1) * 2.0      # saturation (RGB)
    c = draws.random(4).reshape(-1, 1, 1, 1) + 0.5      # contrast
    want = x + b
    m = want.mean(axis=1, keepdims=True)
    want = (want - m) * s + m
    m = want.mean(axis=(1, 2, 3), keepdims=True)
    want = (want - m) * c + m
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _with_fixed_draws(fn, seed=7):
    """fn with minigan reseeded first: every call draws the same transformation."""
    def call(*args):
        minigan.manual_seed(seed)
        return fn(*args)
    return call


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_gradients_are_finite_differences(policy):
    for channels in (1, 3):
        x = _x((3, channels, 8, 8), 8)
        f = _with_fixed_draws(lambda t: diff_augment(t, policy) ** 2)
        assert minigan.gradcheck(f, [x], name=policy)
        assert minigan.gradgradcheck(f, [x], name=policy)


def test_unknown_policies_are_named():
    assert parse_policy(" translation, cutout ") == ("translation", "cutout")
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        parse_policy("translation,flip")
    with pytest.raises(ValueError, match="unknown augmentation"):
        Trainer(TrainConfig(dataset="ellipses", limit=16, image_size=8, width=4, z_dim=4,
                            batch_size=8, steps=1, out="unused", progress=False, augment="blur"))


def test_r1_through_the_augmentation_matches_finite_differences(lively_d, sample_gradients):
    """R1 of D(T(x)) at x, T fixed: gamma/2 mean ||d D(T x) / dx||^2, the gradient by central
    differences of the whole map; and its derivative in D's weights (the double backward
    through T) by gradcheck."""
    D = lively_d
    seen = Augmented(D, "color,translation,cutout")
    assert list(seen.parameters()) == list(D.parameters())
    x = np.random.default_rng(2).normal(size=(3, 1, 8, 8))
    f = _with_fixed_draws(lambda v: seen(minigan.tensor(v, dtype=np.float64)).numpy()[:, 0])
    g = sample_gradients(f, x)
    # color's contrast couples the pixels of a sample, not the samples: D(T x)_b depends on x_b
    want = 0.5 * 3.0 * np.mean(np.sum(g * g, axis=1))
    penalty = _with_fixed_draws(lambda: r1_penalty(seen, x, 3.0))
    assert penalty().item() == pytest.approx(want, rel=1e-6)
    assert minigan.gradcheck(lambda *ws: penalty(), list(D.parameters()), name="R1 through T")


def _config(tmp_path, name, **changes) -> TrainConfig:
    options = {"dataset": "ellipses", "limit": 48, "image_size": 8, "arch": "dcgan", "width": 4,
               "z_dim": 8, "batch_size": 8, "steps": 10, "out": str(tmp_path / name),
               "progress": False, "log_every": 2, "fd_every": 0, "r1_gamma": 10.0,
               "r1_every": 2, "d_dropout": 0.0, "augment": "color,translation,cutout"}
    options.update(changes)
    return TrainConfig(**options)


def test_training_with_augmentation_resumes_exactly_and_saves_d_alone(tmp_path, quick_curves):
    whole = Trainer(_config(tmp_path, "whole"))
    whole.fit()
    plain = Trainer(_config(tmp_path, "plain", augment=""))
    plain.fit()
    ws, wp = training_state(whole), training_state(plain)
    files = [set(np.load(tmp_path / n / "checkpoints" / "last.npz").files) for n in ("whole",
                                                                                  "plain")]
    assert files[0] == files[1]                  # D saved as D, not as the augmented view
    assert any(not np.array_equal(ws[k], wp[k]) for k in ws if k.startswith("D."))
    part = Trainer(_config(tmp_path, "part", steps=7))
    part.fit()
    minigan.manual_seed(999)
    resumed = Trainer.resume(tmp_path / "part", steps=10)
    resumed.fit()
    wr = training_state(resumed)
    for k in ws:
        assert np.array_equal(ws[k], wr[k]), k
    with pytest.raises(ValueError, match="cannot change 'augment'"):
        Trainer.resume(tmp_path / "part", augment="translation")
    assert backend.rng.get_state() is not None
