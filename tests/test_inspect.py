"""`python -m minigan inspect`: nearest neighbours against brute force, the copying ratio, the
power spectrum of a checkerboard, and the files it leaves in a run."""

import json

import numpy as np
import pytest

from minigan import cli
from minigan.gan import TrainConfig, Trainer
from minigan.gan.callbacks import power_spectrum
from minigan.inspect import nearest


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.standard_normal((37, 5)), rng.standard_normal((50, 5))
    idx, dist = nearest(q, r, k=3, chunk=8)
    full = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1))               # (37, 50)
    want = np.argsort(full, axis=1)[:, :3]
    assert (idx == want).all(), f"{(idx != want).sum()} neighbours differ from brute force"
    err = np.abs(dist - np.take_along_axis(full, want, 1)).max()
    assert err < 1e-10, f"distances off by {err}"


def test_power_spectrum_of_a_checkerboard_sits_at_the_highest_frequency():
    i, j = np.indices((8, 8))
    board = ((-1.0) ** (i + j))[None, None]                              # (1, 1, 8, 8)
    spec = power_spectrum(board)
    assert spec.shape == (8, 8)
    assert np.unravel_index(spec.argmax(), spec.shape) == (0, 0), "Nyquist is row 0, column 0"
    power = np.abs(np.fft.fft2(board[0, 0])) ** 2 / 64
    assert abs(spec[0, 0] - np.log10(power[4, 4] + 1e-12)) < 1e-12
    assert spec[4, 4] < -10, "no power at the lowest frequency"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "run"
    config = TrainConfig(dataset="ellipses", limit=64, image_size=8, width=4, z_dim=8,
                         batch_size=8, steps=8, out=str(out), progress=False, fd_every=0)
    Trainer(config).fit()
    return out


def test_inspect_writes_its_pictures_numbers_and_page(run, capsys):
    assert cli.main(["inspect", str(run), "-n", "4", "-k", "3", "--stats", "20"]) == 0
    printed = capsys.readouterr().out
    assert "ratio" in printed and "pixel space" in printed
    info = json.loads((run / "inspect.json").read_text())
    nn = info["nearest"]
    assert nn["space"] == "pixel" and nn["k"] == 3 and np.isfinite(nn["ratio"])
    assert nn["n_train"] + nn["n_held_out"] == 64
    from PIL import Image
    with Image.open(run / "nearest.png") as im:           # 4 rows of 1 + gap + 3 tiles of 8
        assert im.size == (2 * (5 * 10 + 2), 2 * (4 * 10 + 2)), im.size
    page = (run / "index.html").read_text()
    assert 'src="nearest.png"' in page and 'src="spectrum.png"' in page


def test_a_generator_that_copies_gets_a_ratio_near_zero(run, monkeypatch):
    import minigan.gan
    from minigan.gan import load_images
    from minigan.inspect import inspect_run

    images = load_images(TrainConfig(dataset="ellipses", limit=64, image_size=8))

    def copies(G, z, batch_size=64, seed=0, **kw):            # training images, as G output
        x = images[np.arange(len(z)) % len(images)][:, None]
        return x.astype(np.float32) / 127.5 - 1.0

    monkeypatch.setattr(minigan.gan, "generate", copies)
    info = inspect_run(run, n=2, k=2, n_stats=30)
    # samples drawn from all 64 images: those in the search set are at distance 0
    assert info["nearest"]["ratio"] < 0.3, f"copying G scored {info['nearest']['ratio']:.3f}"
