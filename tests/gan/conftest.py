import pytest


@pytest.fixture
def quick_curves(monkeypatch):
    """Matplotlib takes seconds a figure on a busy CPU; tests that do not look at curves skip it."""
    from minigan import viz
    monkeypatch.setattr(viz, "plot_curves", lambda records, path, **kw: open(path, "wb").close())
