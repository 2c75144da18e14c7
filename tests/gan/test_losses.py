import math

import numpy as np
import pytest

import minigan
from minigan.gan import BCELoss, GANLoss, HingeLoss, make_loss


def _t(values):
    return minigan.tensor(np.array(values, np.float32).reshape(-1, 1), requires_grad=True)


def _bce(z, t):
    p = 1 / (1 + math.exp(-z))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_bce_values_and_non_saturating_generator_loss():
    real, fake = [2.0, -1.0], [0.5, -3.0]
    loss = BCELoss()
    d = loss.d_loss(_t(real), _t(fake)).item()
    want = np.mean([_bce(z, 1) for z in real]) + np.mean([_bce(z, 0) for z in fake])
    assert d == pytest.approx(want, rel=1e-5)
    g = loss.g_loss(_t(fake)).item()
    assert g == pytest.approx(np.mean([-math.log(1 / (1 + math.exp(-z))) for z in fake]),
                              rel=1e-5)


def test_one_sided_label_smoothing_moves_only_the_real_target():
    real, fake = [2.0, -1.0], [0.5, -3.0]
    d = BCELoss(label_smoothing=0.1).d_loss(_t(real), _t(fake)).item()
    want = np.mean([_bce(z, 0.9) for z in real]) + np.mean([_bce(z, 0) for z in fake])
    assert d == pytest.approx(want, rel=1e-5)
    assert BCELoss(0.1).g_loss(_t(fake)).item() == pytest.approx(BCELoss().g_loss(
        _t(fake)).item())
    with pytest.raises(ValueError, match="label_smoothing"):
        BCELoss(0.7)


def test_gradients_flow_to_the_logits():
    fake = _t([0.5, -3.0])
    BCELoss().g_loss(fake).backward()
    p = 1 / (1 + np.exp(-np.array([0.5, -3.0])))
    np.testing.assert_allclose(fake.grad.numpy().ravel(), (p - 1) / 2, rtol=1e-5)


def test_hinge_and_the_interface():
    loss = make_loss("hinge")
    assert isinstance(loss, HingeLoss) and isinstance(loss, GANLoss)
    d = loss.d_loss(_t([2.0, 0.5]), _t([-2.0, 0.0])).item()
    assert d == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert loss.g_loss(_t([1.0, 3.0])).item() == pytest.approx(-2.0)
    assert loss.penalty(None, None, None) is None
    with pytest.raises(ValueError, match="bce, hinge"):
        make_loss("wasserstein")
