"""Packing (PacGAN): shapes, the order of samples in a pack, gradients of first and second
order, and the gradient penalty taken per pack."""

import numpy as np
import pytest

from minigan import Tensor, gradcheck, gradgradcheck, manual_seed
from minigan.gan.losses import gradient_penalty
from minigan.lab import models


def _float64(net):
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    return net


def test_pack_puts_consecutive_samples_side_by_side():
    x = np.arange(24, dtype=np.float64).reshape(12, 2)
    y = models.pack(Tensor(x), 3).numpy()
    assert y.shape == (4, 6)
    for i in range(4):                      # row i holds samples 3i, 3i+1, 3i+2
        assert (y[i] == np.concatenate(x[3 * i:3 * i + 3])).all()


@pytest.mark.parametrize("m", [1, 2, 4])
def test_packed_discriminator_shapes(m):
    manual_seed(0)
    D = models.discriminator(pack=m, hidden=8, layers=2)
    out = D(np.zeros((5 * m, 2), np.float32))
    assert out.shape == (5, 1)
    assert D.net[0].weight.shape == (8, 2 * m)
    with pytest.raises(ValueError, match=f"multiple of {m}") if m > 1 else \
            pytest.raises(ValueError, match="expected"):
        D(np.zeros((5 * m + 1, 2), np.float32) if m > 1 else np.zeros((5, 3), np.float32))


def test_packed_discriminator_gradients_first_and_second_order():
    manual_seed(1)
    D = _float64(models.discriminator(pack=2, hidden=5, layers=2))
    x = Tensor(np.random.default_rng(0).standard_normal((6, 2)), requires_grad=True)
    assert gradcheck(D, [x], name="packed D")
    assert gradgradcheck(D, [x], name="packed D")             # WGAN-GP differentiates this
    w = D.net[0].weight                                        # and with respect to a weight
    assert gradcheck(lambda w_: D.net[2](D.net[1](models.pack(x, 2) @ w_.T)), [w])


def test_gradient_penalty_has_one_norm_per_pack():
    # D(x) = w . pack(x) + b: its gradient with respect to every pack is w, norm |w|
    manual_seed(2)
    D = _float64(models.discriminator(pack=3, layers=0))
    w = D.net[0].weight.numpy()
    x = np.random.default_rng(1).standard_normal((12, 2))
    got = gradient_penalty(D, x, weight=10.0).item()
    assert got == pytest.approx(10.0 * (np.linalg.norm(w) - 1.0) ** 2, rel=1e-10)
    # per sample, the norms would be those of the three 2-vectors: a different number
    per_sample = np.linalg.norm(w.reshape(3, 2), axis=1)
    assert not np.isclose(got, 10.0 * ((per_sample - 1) ** 2).mean())


def test_generator_preset_is_pacgans():
    G = models.generator()
    linears = [m for m in G if type(m).__name__ == "Linear"]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (2, 400), (400, 400), (400, 400), (400, 400), (400, 2)]
    D = models.discriminator()
    assert [(m.in_features, m.out_features) for m in D.net
            if type(m).__name__ == "Linear"] == [(2, 200), (200, 200), (200, 200), (200, 1)]
