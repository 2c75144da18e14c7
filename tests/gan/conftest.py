import pytest


@pytest.fixture
def quick_curves(monkeypatch):
    """Matplotlib takes seconds a figure on a busy CPU; tests that do not look at curves skip it."""
    from minigan import viz
    monkeypatch.setattr(viz, "plot_curves", lambda records, path, **kw: open(path, "wb").close())


@pytest.fixture
def lively_d():
    """A tiny float64 dcgan D (8x8 images, no dropout) with weights large enough to bend."""
    import numpy as np

    import minigan
    from minigan.gan import build

    minigan.manual_seed(0)
    _, D, _ = build("dcgan", (1, 8, 8), z_dim=4, width=1, d_dropout=0.0)
    D.double()
    for p in D.parameters():
        p.data[...] = np.random.default_rng(1).normal(size=p.shape) * 0.7
    return D


@pytest.fixture
def sample_gradients():
    """f, x -> d f(x)_b / d x_b for each sample b by central differences (step h), where f maps
    a float64 batch x (B, ...) to B values and each depends on its own sample only."""
    import numpy as np

    def grads(f, x, h: float = 1e-6):
        flat = x.reshape(len(x), -1)
        out = np.zeros_like(flat)
        for j in range(flat.shape[1]):
            up, down = flat.copy(), flat.copy()
            up[:, j] += h
            down[:, j] -= h
            out[:, j] = (f(up.reshape(x.shape)) - f(down.reshape(x.shape))) / (2 * h)
        return out
    return grads
