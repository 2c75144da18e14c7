"""nn.utils.spectral_norm against float64 references: NumPy's SVD, a naive power-iteration loop,
central differences, and torch.nn.utils.spectral_norm where torch is installed."""

import numpy as np
import pytest

import minigan
from minigan import nn
from minigan.autograd import Tensor
from minigan.gradcheck import gradcheck, gradgradcheck
from minigan.nn.utils import remove_spectral_norm, spectral_norm

LAYERS = [
    ("linear", lambda: nn.Linear(7, 5), (3, 7), 0),
    ("conv", lambda: nn.Conv2d(3, 4, 3), (2, 3, 6, 6), 0),
    ("convT", lambda: nn.ConvTranspose2d(3, 4, 3, stride=2), (2, 3, 4, 4), 1),
]


def _matrix(w, dim):
    w = np.asarray(w, np.float64)
    return np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)


@pytest.mark.parametrize("kind,make,shape,dim", LAYERS, ids=[c[0] for c in LAYERS])
def test_top_singular_value_becomes_one(kind, make, shape, dim):
    minigan.manual_seed(0)
    m = spectral_norm(make(), n_power_iterations=50)
    m(minigan.randn(*shape))
    sv = np.linalg.svd(_matrix(m.weight.data, dim), compute_uv=False)
    assert sv[0] == pytest.approx(1.0, abs=1e-5)
    # the same direction as the trained weight: only its scale changes
    orig = _matrix(m.weight_orig.data, dim)
    np.testing.assert_allclose(_matrix(m.weight.data, dim) * np.linalg.svd(
        orig, compute_uv=False)[0], orig, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind,make,shape,dim", LAYERS, ids=[c[0] for c in LAYERS])
def test_one_step_matches_a_naive_power_iteration(kind, make, shape, dim):
    minigan.manual_seed(1)
    m = spectral_norm(make())
    u0, v0 = np.array(m.weight_u, np.float64), np.array(m.weight_v, np.float64)
    W = _matrix(m.weight_orig.data, dim)
    y = m(minigan.randn(*shape))
    v = W.T @ u0
    v /= np.sqrt(sum(x * x for x in v))
    u = W @ v
    u /= np.sqrt(sum(x * x for x in u))
    sigma = sum(u[i] * sum(W[i, j] * v[j] for j in range(W.shape[1])) for i in range(W.shape[0]))
    np.testing.assert_allclose(m.weight_u, u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.weight_v, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.weight.data, m.weight_orig.data / sigma, rtol=1e-5, atol=1e-7)
    assert y.shape[0] == shape[0]
    assert v0.shape == (W.shape[1],) and u0.shape == (W.shape[0],)


def test_eval_mode_keeps_u_and_v():
    minigan.manual_seed(2)
    m = spectral_norm(nn.Linear(6, 4))
    m(minigan.randn(2, 6))
    u, v = m.weight_u.copy(), m.weight_v.copy()
    m.eval()
    a = m(minigan.randn(2, 6))
    np.testing.assert_array_equal(m.weight_u, u)
    np.testing.assert_array_equal(m.weight_v, v)
    m.train()
    m(minigan.randn(2, 6))
    assert not np.array_equal(m.weight_u, u)
    assert a.shape == (2, 4)


@pytest.mark.parametrize("kind,make,shape,dim", LAYERS, ids=[c[0] for c in LAYERS])
def test_gradients_against_finite_differences(kind, make, shape, dim):
    """u and v are constants of the step; the gradient reaches weight_orig through sigma."""
    minigan.manual_seed(3)
    m = spectral_norm(make()).double()
    m(minigan.randn(*shape, dtype="float64"))      # one power iteration, then hold u, v
    m.eval()
    assert m.weight_u.dtype == np.float64
    x = minigan.randn(*shape, dtype="float64", requires_grad=True)
    w = Tensor(np.array(m.weight_orig.data), requires_grad=True)

    def through(x, w):                              # the graph: w -> w / sigma -> output
        m._parameters["weight_orig"] = w
        return m(x)

    assert gradcheck(through, [x, w], name=f"spectral_norm {kind}")
    assert gradgradcheck(through, [x, w], name=f"spectral_norm {kind}")


def test_gradient_closed_form():
    """d<G, W/sigma>/dW = G/sigma - <G, W> u v^T / sigma^2 with sigma = u^T W v."""
    minigan.manual_seed(4)
    m = spectral_norm(nn.Linear(5, 3, bias=False)).double()
    m.eval()
    x = minigan.randn(4, 5, dtype="float64")
    m(x).sum().backward()
    W = np.array(m.weight_orig.data)
    u, v = np.array(m.weight_u), np.array(m.weight_v)
    sigma = u @ W @ v
    G = np.ones((4, 3)).T @ np.array(x.data)          # d sum(x W'^T) / dW'
    expect = G / sigma - (G * W).sum() * np.outer(u, v) / sigma ** 2
    np.testing.assert_allclose(m.weight_orig.grad.data, expect, rtol=1e-10)


def test_state_dict_names_and_round_trip():
    minigan.manual_seed(5)
    a = spectral_norm(nn.Conv2d(2, 3, 3))
    a(minigan.randn(1, 2, 5, 5))
    assert list(a.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    b = spectral_norm(nn.Conv2d(2, 3, 3))
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = minigan.randn(1, 2, 5, 5)
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert [p is a.weight_orig for p in a.parameters()].count(True) == 1


def test_remove_keeps_the_normalised_weight():
    minigan.manual_seed(6)
    m = spectral_norm(nn.Linear(4, 4))
    m(minigan.randn(2, 4))
    m.eval()
    x = minigan.randn(2, 4)
    before = m(x).data.copy()
    remove_spectral_norm(m)
    assert list(m.state_dict()) == ["bias", "weight"]
    assert isinstance(m.weight, nn.Parameter)
    np.testing.assert_allclose(m(x).data, before, rtol=1e-6)


def test_errors_say_what_was_wrong():
    m = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="no parameter 'kernel'"):
        spectral_norm(m, name="kernel")
    with pytest.raises(ValueError, match="at least 2 dims"):
        spectral_norm(m, name="bias")
    spectral_norm(m)
    with pytest.raises(RuntimeError, match="already"):
        spectral_norm(m)
    with pytest.raises(ValueError, match="not spectrally normalised"):
        remove_spectral_norm(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="n_power_iterations"):
        spectral_norm(nn.Linear(3, 2), n_power_iterations=0)


@pytest.mark.parametrize("kind,make,shape,dim", LAYERS, ids=[c[0] for c in LAYERS])
def test_matches_torch(kind, make, shape, dim):
    torch = pytest.importorskip("torch")
    minigan.manual_seed(7)
    m = spectral_norm(make(), n_power_iterations=2)
    ref = {"linear": lambda: torch.nn.Linear(7, 5), "conv": lambda: torch.nn.Conv2d(3, 4, 3),
           "convT": lambda: torch.nn.ConvTranspose2d(3, 4, 3, stride=2)}[kind]()
    ref = torch.nn.utils.spectral_norm(ref, n_power_iterations=2)
    ref.load_state_dict({k: torch.tensor(np.array(v)) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = m(Tensor(x))
    y_ref = ref(torch.tensor(x))
    np.testing.assert_allclose(y.data, y_ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.weight_u, ref.weight_u.numpy(), rtol=1e-4, atol=1e-6)
    y.sum().backward()
    y_ref.sum().backward()
    np.testing.assert_allclose(m.weight_orig.grad.data, ref.weight_orig.grad.numpy(),
                               rtol=1e-4, atol=1e-5)
