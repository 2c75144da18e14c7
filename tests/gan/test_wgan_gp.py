"""WGAN-GP: the gradient penalty's derivatives, the critic, n_critic steps and exact resume."""

import json

import numpy as np
import pytest

import minigan
from minigan import backend, nn
from minigan import functional as F
from minigan.cli import main
from minigan.gan import (
    TrainConfig,
    Trainer,
    WGANGPLoss,
    as_critic,
    build,
    gradient_penalty,
    make_loss,
)
from minigan.testing import training_state


def _f64(shape, seed):
    data = np.random.default_rng(seed).normal(size=shape)
    return minigan.tensor(data, dtype=np.float64, requires_grad=True)


def test_penalty_of_a_linear_critic_is_closed_form():
    # D(x) = <w, x> + b has gradient w everywhere: GP = lambda (||w|| - 1)^2
    D = nn.Sequential(nn.Flatten(), nn.Linear(12, 1)).double()
    x_hat = minigan.tensor(np.random.default_rng(0).normal(size=(3, 1, 3, 4)), dtype=np.float64)
    w = D[1].weight.numpy()
    penalty = gradient_penalty(D, x_hat, 10.0)
    assert penalty.item() == pytest.approx(10 * (np.linalg.norm(w) - 1) ** 2, rel=1e-9)
    penalty.backward()
    want = 20 * (np.linalg.norm(w) - 1) * w / np.linalg.norm(w)
    np.testing.assert_allclose(D[1].weight.grad.numpy(), want, rtol=1e-8)
    assert D[1].bias.grad is None                          # the bias has no say in it


def test_wasserstein_losses_and_seeded_interpolates():
    loss = WGANGPLoss()
    real = minigan.tensor(np.array([[2.0], [4.0]], np.float32))
    fake = minigan.tensor(np.array([[1.0], [-1.0]], np.float32))
    assert loss.d_loss(real, fake).item() == pytest.approx(0.0 - 3.0)
    assert loss.g_loss(fake).item() == pytest.approx(0.0)
    D = nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
                      nn.Linear(8, 1))
    x, y = minigan.randn(4, 1, 4, 4), minigan.randn(4, 1, 4, 4)
    minigan.manual_seed(5)
    first = loss.penalty(D, x, y).item()
    minigan.manual_seed(5)
    assert loss.penalty(D, x, y).item() == first                 # eps from the seeded RNG
    assert loss.penalty(D, x, y).item() != first                 # and fresh each call
    assert loss.penalty(D, x, x).item() == pytest.approx(         # x_hat = x whatever eps is
        gradient_penalty(D, x).item(), rel=1e-6)


def test_penalty_gradient_wrt_every_critic_weight_matches_finite_differences():
    """d GP / d theta through the double backward of conv, LeakyReLU, reshape and linear."""
    minigan.manual_seed(0)
    _, D, _ = build("dcgan", (1, 8, 8), z_dim=4, width=1, critic=True)
    D.double()
    for p in D.parameters():                       # glorot-uniform is small: make it lively
        p.data[...] = np.random.default_rng(1).normal(size=p.shape) * 0.7
    x_hat = minigan.tensor(np.random.default_rng(2).normal(size=(3, 1, 8, 8)),
                           dtype=np.float64)        # fixed interpolates
    weights = list(D.parameters())
    assert sum(p.size for p in weights) == 87

    def penalty_of_weights(*ws):                    # gradcheck perturbs `weights` in place
        return gradient_penalty(D, x_hat, 10.0)

    assert minigan.gradcheck(penalty_of_weights, weights, name="gradient penalty of D")


@pytest.mark.parametrize("name,fn,shapes", [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=2),
     [(2, 2, 5, 5), (3, 2, 5, 5), (3,)]),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.3), [(3, 7)]),
    ("linear", F.linear, [(3, 4), (2, 4), (2,)]),
    ("flatten", lambda x: nn.Flatten()(x), [(2, 3, 2, 2)]),
])
def test_second_derivatives_of_every_critic_op(name, fn, shapes):
    inputs = [_f64(s, seed) for seed, s in enumerate(shapes)]
    if name == "leaky_relu":                        # keep clear of the kink at 0
        inputs[0].data[np.abs(inputs[0].data) < 0.05] = 0.5
    assert minigan.gradcheck(fn, inputs, name=name)
    assert minigan.gradgradcheck(fn, inputs, name=name)


def test_critics_drop_batchnorm_and_dropout_and_keep_the_generator():
    for arch in ("dcgan", "atienza", "dense", "radford"):
        minigan.manual_seed(0)
        G0, D0, _ = build(arch, (1, 28, 28), width=2)
        minigan.manual_seed(0)
        G1, D1, _ = build(arch, (1, 28, 28), width=2, critic=True)
        kinds = {type(m) for m in D1.modules()}
        assert not kinds & {nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout}, arch
        assert kinds & {nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout} <= {type(m) for m in
                                                                        D0.modules()}
        for (k, a), (_, b) in zip(G0.state_dict().items(), G1.state_dict().items(), strict=True):
            assert np.array_equal(a, b), f"{arch}: G.{k} changed"
        x = minigan.randn(2, 1, 28, 28)
        assert D1(x).shape == (2, 1)
    assert len(as_critic(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))) == 1


def _config(tmp_path, name="run", **changes) -> TrainConfig:
    """Tiny: 48 ellipses of 8x8 in batches of 8 (6 batches an epoch), width 4, wgan-gp."""
    options = {"dataset": "ellipses", "limit": 48, "image_size": 8, "arch": "dcgan", "width": 4,
               "z_dim": 8, "batch_size": 8, "loss": "wgan-gp", "steps": 3,
               "out": str(tmp_path / name), "progress": False, "log_every": 1, "fd_every": 0}
    options.update(changes)
    return TrainConfig(**options)


def test_wgan_gp_recipe_and_loss(tmp_path):
    trainer = Trainer(_config(tmp_path))
    assert isinstance(trainer.loss, WGANGPLoss) and trainer.loss.gp_lambda == 10.0
    assert trainer.n_critic == 5
    r = trainer.recipe
    assert (r.optimizer, r.lr_d, r.lr_g, r.beta1, r.beta2) == ("adam", 1e-4, 1e-4, 0.0, 0.9)
    assert trainer.opt_d.defaults["betas"] == (0.0, 0.9) and trainer.opt_d.lr == 1e-4
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm2d)) for m in trainer.D.modules())
    assert make_loss("wgan-gp", gp_lambda=3).config() == {"name": "wgan-gp", "gp_lambda": 3.0}
    with pytest.raises(ValueError, match="label_smoothing"):
        Trainer(_config(tmp_path, "b", label_smoothing=0.1))
    with pytest.raises(ValueError, match="gp_lambda"):
        Trainer(_config(tmp_path, "c", loss="bce", gp_lambda=5.0))
    with pytest.raises(ValueError, match="n_critic"):
        Trainer(_config(tmp_path, "d", n_critic=0))


def test_n_critic_counts_critic_steps_and_batches(tmp_path, quick_curves):
    # 2 epochs of 6 batches at 5 batches a step: ceil(12 / 5) = 3 steps, 15 batches
    trainer = Trainer(_config(tmp_path, steps=None, epochs=2))
    assert trainer.total_steps == 3 and trainer.steps_per_epoch == 2
    trainer.fit()
    assert trainer.opt_g.step_count == 3 and trainer.opt_d.step_count == 15
    assert (trainer.loader.epoch, trainer.loader._batch) == (2, 3)
    samples = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert samples == ["epoch_001.png", "epoch_002.png"]
    records = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:                       # critic values, not accuracies
        assert {"loss_d", "loss_g", "gp", "critic_real", "critic_fake", "wasserstein"} <= set(r)
        assert not {"acc_real", "acc_fake", "d_x", "d_g_z"} & set(r)
        assert r["wasserstein"] == pytest.approx(r["critic_real"] - r["critic_fake"])
        assert r["gp"] >= 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["n_critic"] == 5 and config["loss"]["name"] == "wgan-gp"

    two = Trainer(_config(tmp_path, "two", n_critic=2, steps=4))
    two.fit()
    assert two.opt_d.step_count == 8 and two.opt_g.step_count == 4


@pytest.mark.parametrize("stop", [1, 2])    # 1: inside epoch 1; 2: the step that crosses it
def test_exact_resume_with_wgan_gp(tmp_path, quick_curves, stop):
    whole = Trainer(_config(tmp_path, "whole", steps=4))
    whole.fit()
    end_rng = backend.rng.get_state()
    Trainer(_config(tmp_path, "part", steps=stop)).fit()
    minigan.manual_seed(999)
    resumed = Trainer.resume(tmp_path / "part", steps=4)
    assert resumed.step == stop
    resumed.fit()
    a, b = training_state(whole), training_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs after resume at step {stop}"
    assert backend.rng.get_state() == end_rng
    assert resumed.opt_d.step_count == 20 and resumed.loader.state_dict()["batch"] == 2


TINY = ["--dataset", "ellipses", "--limit", "48", "--image-size", "8", "--width", "4",
        "--z-dim", "8", "--batch-size", "8", "--no-progress", "--log-every", "1"]


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_losses_from_the_command_line(tmp_path, quick_curves, capsys, loss):
    out = tmp_path / loss
    extra = ["--n-critic", "2", "--gp-lambda", "5"] if loss == "wgan-gp" else []
    assert main(["train", *TINY, "--loss", loss, "--steps", "2", "--out", str(out),
                 *extra]) == 0
    assert f"the {loss} loss" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["loss"]["name"] == loss
    assert config["n_critic"] == (2 if loss == "wgan-gp" else 1)
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(np.isfinite(r["loss_d"]) for r in records)
    if loss == "wgan-gp":
        assert config["loss"]["gp_lambda"] == 5.0 and config["recipe"]["beta2"] == 0.9
    assert main(["train", *TINY, "--loss", loss, "--label-smoothing", "0.1", "--steps", "1",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "label_smoothing applies to the bce loss" in capsys.readouterr().err


def test_critic_curves(tmp_path):
    from PIL import Image

    from minigan.viz import plot_curves

    records = [{"step": s, "loss_d": -1.0 + s / 100, "loss_g": 0.5, "gp": 0.1,
                "critic_real": 1.0, "critic_fake": -1.0 + s / 100, "wasserstein": 2.0 - s / 100,
                "grad_norm/D": 1.0 + s, "grad_norm/G": 0.5} for s in range(1, 60)]
    records.append({"step": 59, "fd_cls": 20.0, "modes": 9})
    path = plot_curves(records, tmp_path / "c.png", marks=[30])
    with Image.open(path) as img:
        assert img.size[1] > 900                            # five panels
