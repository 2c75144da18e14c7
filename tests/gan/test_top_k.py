"""Top-k training (Sinha et al. 2020): G learns from the samples D scores highest only."""

import json

import numpy as np
import pytest

import minigan
from minigan.cli import main
from minigan.gan import TrainConfig, Trainer
from minigan.gan.losses import BCELoss
from minigan.gan.steps import g_update, top_k, top_k_schedule
from minigan.optim import SGD


def test_top_k_keeps_the_highest_scores_in_the_batch_order():
    scores = minigan.tensor(np.array([[0.3], [-1.0], [2.0], [0.3], [5.0]]))
    kept = top_k(scores, 3)
    # 5 (row 4) and 2 (row 2), then the tie at 0.3 goes to the earlier row, 0
    assert kept.numpy().ravel().tolist() == [0.3, 2.0, 5.0]
    assert top_k(scores, 4).numpy().ravel().tolist() == [0.3, 2.0, 0.3, 5.0]
    assert top_k(scores, None) is scores and top_k(scores, 5) is scores
    assert top_k(scores, 9) is scores
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k(scores, 0)


def test_the_dropped_samples_get_no_gradient_and_the_kept_their_share_of_the_loss(
        lively_d, sample_gradients):
    """g_update with k = 3 of 5 against an independent reference: D's scores picked by hand,
    each kept sample's gradient of the non-saturating loss -log sigmoid(D(x)) from central
    differences of D, divided by k (the mean over the kept); the others exactly 0."""
    D = lively_d
    x = np.random.default_rng(3).normal(size=(5, 1, 8, 8))
    logits = D(minigan.tensor(x, dtype=np.float64)).numpy()[:, 0]
    kept = np.sort(np.argsort(-logits, kind="stable")[:3])
    dropped = np.setdiff1d(np.arange(5), kept)

    def per_sample_loss(v):                         # softplus(-D(v)), one value per sample
        s = D(minigan.tensor(v, dtype=np.float64)).numpy()[:, 0]
        return np.logaddexp(0.0, -s)

    # (5, 64); central differences' error is about h^2 * D''' ~ 1e-10 an element, hence atol
    want = sample_gradients(per_sample_loss, x) / 3
    fake = minigan.tensor(x, dtype=np.float64, requires_grad=True)
    stats = g_update(D, SGD([fake], lr=0.0), BCELoss(), fake, k=3)
    grad = fake.grad.numpy().reshape(5, -1)
    assert not grad[dropped].any()                  # exactly zero, not just small
    np.testing.assert_allclose(grad[kept], want[kept], rtol=1e-6, atol=1e-9)
    assert float(stats["loss_g"]) == pytest.approx(np.logaddexp(0.0, -logits[kept]).mean(),
                                                   rel=1e-12)
    assert all(p.requires_grad for p in D.parameters())    # D is left trainable


def test_the_schedule_anneals_k_from_the_batch_to_its_floor():
    k = [top_k_schedule(e, 32, 0.5, 0.99) for e in range(100)]
    # 0.99^e * 32 rounded up, never under 16: 32 at first, 29 at epoch 10 (28.94), 17 at
    # epoch 68 (16.16), 16 from epoch 69 (15.995) on
    assert k[:3] == [32, 32, 32] and k[10] == 29 and k[68] == 17 and k[69:] == [16] * 31
    assert all(a >= b for a, b in zip(k, k[1:]))
    assert top_k_schedule(1000, 10, 0.7, 0.99) == 7       # 0.7 * 10 is 7.000000000000001
    assert top_k_schedule(0, 32, 1.0, 0.99) is None       # fraction 1: off
    assert top_k_schedule(3, 8, 0.25, 0.5) == 2           # 8 * 0.125 = 1, floor 2
    for fraction, decay in ((0.0, 0.99), (1.5, 0.99), (0.5, 0.0), (0.5, 1.2)):
        with pytest.raises(ValueError, match="0 < fraction <= 1 and 0 < decay <= 1"):
            top_k_schedule(0, 32, fraction, decay)


def _config(tmp_path, name="run", **changes) -> TrainConfig:
    """Tiny: 48 ellipses of 8x8 in batches of 8 (6 batches an epoch), width 4, bce."""
    options = {"dataset": "ellipses", "limit": 48, "image_size": 8, "arch": "dcgan", "width": 4,
               "z_dim": 8, "batch_size": 8, "epochs": 3, "out": str(tmp_path / name),
               "progress": False, "log_every": 1, "fd_every": 0, "d_dropout": 0.0}
    options.update(changes)
    return TrainConfig(**options)


def test_the_trainer_hands_g_update_the_epochs_k_and_logs_it(tmp_path, quick_curves,
                                                             monkeypatch):
    seen = []
    real = minigan.gan.trainer.g_update

    def spy(D, opt_g, loss, fake, k=None):
        seen.append(k)
        return real(D, opt_g, loss, fake, k)

    monkeypatch.setattr(minigan.gan.trainer, "g_update", spy)
    trainer = Trainer(_config(tmp_path, g_top_k=0.25, g_top_k_decay=0.5))
    trainer.fit()
    assert seen == [8] * 6 + [4] * 6 + [2] * 6      # 8, then 8 * 0.5, then the floor 8 * 0.25
    records = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text()
               .splitlines()]
    assert {r["g_top_k"] for r in records} == {8, 4, 2}
    seen.clear()
    Trainer(_config(tmp_path, "off", steps=2)).fit()
    assert seen == [None, None]
    assert "g_top_k" not in (tmp_path / "off" / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="0 < fraction <= 1"):
        Trainer(_config(tmp_path, "bad", g_top_k=0.0))


def test_top_k_resumes_exactly(tmp_path, quick_curves):
    whole = Trainer(_config(tmp_path, "whole", g_top_k=0.5, g_top_k_decay=0.5))
    whole.fit()
    Trainer(_config(tmp_path, "part", g_top_k=0.5, g_top_k_decay=0.5, epochs=1)).fit()
    resumed = Trainer.resume(tmp_path / "part", epochs=3)
    resumed.fit()
    for a, b in zip(whole.G.parameters(), resumed.G.parameters()):
        assert np.array_equal(a.numpy(), b.numpy())


def test_top_k_from_the_command_line(tmp_path, quick_curves, capsys):
    out = tmp_path / "cli"
    tiny = ["--dataset", "ellipses", "--limit", "48", "--image-size", "8", "--width", "4",
            "--z-dim", "8", "--batch-size", "8", "--no-progress", "--log-every", "1"]
    assert main(["train", *tiny, "--steps", "2", "--out", str(out), "--g-top-k", "0.5",
                 "--g-top-k-decay", "0.9"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["g_top_k"], config["g_top_k_decay"]) == (0.5, 0.9)
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(out), "--steps", "3", "--g-top-k", "1"])
    assert "--g-top-k cannot be given with --resume" in capsys.readouterr().err
