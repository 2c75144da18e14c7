"""The R1 penalty: its value and derivatives, lazy R1 in the trainer, D's dropout rate."""

import json

import numpy as np
import pytest

import minigan
from minigan import backend, nn
from minigan.cli import main
from minigan.gan import TrainConfig, Trainer, build, r1_penalty
from minigan.testing import training_state


def _x(shape, seed=0):
    return minigan.tensor(np.random.default_rng(seed).normal(size=shape), dtype=np.float64)


def test_r1_of_a_linear_d_is_closed_form():
    # D(x) = <w, x> + b has gradient w at every x: R1 = gamma / 2 * ||w||^2, d R1 / dw = gamma w
    D = nn.Sequential(nn.Flatten(), nn.Linear(12, 1)).double()
    w = D[1].weight.numpy()
    penalty = r1_penalty(D, _x((3, 1, 3, 4)), gamma=10.0)
    assert penalty.item() == pytest.approx(5.0 * np.sum(w * w), rel=1e-12)
    penalty.backward()
    np.testing.assert_allclose(D[1].weight.grad.numpy(), 10.0 * w, rtol=1e-12)
    assert D[1].bias.grad is None                           # the bias has no say in it


def test_r1_of_a_conv_d_matches_finite_differences_of_d(lively_d, sample_gradients):
    """The penalty's value against ||dD/dx||^2 from central differences of D itself."""
    D = lively_d
    x = np.random.default_rng(2).normal(size=(3, 1, 8, 8))
    g = sample_gradients(lambda v: D(minigan.tensor(v, dtype=np.float64)).numpy()[:, 0],
                         x)                        # (3, 64); error ~ h^2 * D''' ~ 1e-10
    want = 0.5 * 3.0 * np.mean(np.sum(g * g, axis=1))
    assert r1_penalty(D, minigan.tensor(x, dtype=np.float64), 3.0).item() == pytest.approx(
        want, rel=1e-7)


def test_r1_gradient_wrt_every_d_weight_matches_finite_differences(lively_d):
    """d R1 / d theta: the double backward of conv, LeakyReLU, reshape and linear."""
    D = lively_d
    x = _x((3, 1, 8, 8), 2)
    weights = list(D.parameters())

    def penalty_of_weights(*ws):                    # gradcheck perturbs `weights` in place
        return r1_penalty(D, x, 10.0)

    assert minigan.gradcheck(penalty_of_weights, weights, name="R1 penalty of D")


def test_d_update_takes_r1_at_the_real_batch_and_adds_it_to_the_step():
    from minigan.gan.losses import BCELoss
    from minigan.gan.steps import d_update
    from minigan.optim import SGD

    minigan.manual_seed(0)
    real, fake = minigan.randn(4, 1, 28, 28), minigan.randn(4, 1, 28, 28) * 0.1
    states = []
    for gamma in (None, 0.0, 5.0):
        minigan.manual_seed(1)                                   # the same weights each time
        _, D, _ = build("dcgan", width=4, d_dropout=0.0)
        want = r1_penalty(D, real, 5.0).item()
        stats = d_update(D, SGD(D.parameters(), lr=0.1), BCELoss(), real, fake, gamma)
        states.append(D[0].weight.numpy().copy())
        if gamma is None:
            assert "r1" not in stats
        else:
            assert float(stats["r1"]) == (pytest.approx(want, rel=1e-6) if gamma else 0.0)
    assert want > 0 and np.array_equal(states[0], states[1])   # weight 0: the plain step
    assert not np.array_equal(states[1], states[2])


def test_d_dropout_sets_the_rate_and_refuses_what_has_none():
    G0, D0, _ = build("dcgan", width=4)
    G1, D1, _ = build("dcgan", width=4, d_dropout=0.0)
    assert [m.p for m in D0.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert [m.p for m in D1.modules() if isinstance(m, nn.Dropout)] == [0.0, 0.0]
    assert [m.p for m in build("dcgan", width=4, d_dropout=0.5)[1].modules()
            if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    x = minigan.randn(4, 1, 28, 28)
    D1.train()
    assert np.array_equal(D1(x).numpy(), D1.eval()(x).numpy())   # rate 0: no dropout at all
    with pytest.raises(ValueError, match=r"d_dropout must be in \[0, 1\)"):
        build("dcgan", width=4, d_dropout=1.0)
    with pytest.raises(ValueError, match="has no dropout"):
        build("dcgan", width=4, d_dropout=0.2, spectral_norm=True)
    with pytest.raises(ValueError, match="arch 'radford' has no dropout"):
        build("radford", width=4, d_dropout=0.2)


def _config(tmp_path, name="run", **changes) -> TrainConfig:
    """Tiny: 48 ellipses of 8x8 in batches of 8 (6 batches an epoch), width 4, bce."""
    options = {"dataset": "ellipses", "limit": 48, "image_size": 8, "arch": "dcgan", "width": 4,
               "z_dim": 8, "batch_size": 8, "steps": 8, "out": str(tmp_path / name),
               "progress": False, "log_every": 1, "fd_every": 0, "r1_gamma": 10.0,
               "r1_every": 4, "d_dropout": 0.0}
    options.update(changes)
    return TrainConfig(**options)


def _records(run):
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


def test_lazy_r1_runs_every_kth_d_step_with_k_times_the_weight(tmp_path, quick_curves):
    trainer = Trainer(_config(tmp_path, steps=6, n_critic=2))   # D steps 0..11
    calls = []
    real_r1 = minigan.gan.steps.r1_penalty

    def spy(D, real, gamma):
        calls.append(gamma)
        return real_r1(D, real, gamma)

    minigan.gan.steps.r1_penalty = spy
    try:
        trainer.fit()
    finally:
        minigan.gan.steps.r1_penalty = real_r1
    assert calls == [40.0] * 3                      # D steps 0, 4, 8 of 12
    r1 = [r["r1"] for r in _records(tmp_path / "run")]
    assert [v > 0 for v in r1] == [True, False, True, False, True, False]   # 2 D steps a line
    assert trainer.opt_d.step_count == 12


def test_r1_changes_d_and_is_logged_apart_from_loss_d(tmp_path, quick_curves):
    """Same seed with and without R1: identical first D loss, different D after one step."""
    with_r1 = Trainer(_config(tmp_path, "a", steps=1, r1_every=1))
    with_r1.fit()
    without = Trainer(_config(tmp_path, "b", steps=1, r1_gamma=0.0))
    without.fit()
    a, b = _records(tmp_path / "a")[0], _records(tmp_path / "b")[0]
    assert a["loss_d"] == pytest.approx(b["loss_d"], rel=1e-6) and a["r1"] > 0
    assert "r1" not in b
    assert not np.array_equal(with_r1.D[0].weight.numpy(), without.D[0].weight.numpy())
    with pytest.raises(ValueError, match="r1_every a positive integer"):
        Trainer(_config(tmp_path, "c", r1_every=0))


@pytest.mark.parametrize("stop", [3, 5])    # 3: between two R1 steps; 5: one after an R1 step
def test_exact_resume_with_lazy_r1(tmp_path, quick_curves, stop):
    whole = Trainer(_config(tmp_path, "whole"))
    whole.fit()
    end_rng = backend.rng.get_state()
    Trainer(_config(tmp_path, "part", steps=stop)).fit()
    minigan.manual_seed(999)
    resumed = Trainer.resume(tmp_path / "part", steps=8)
    resumed.fit()
    a, b = training_state(whole), training_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs after resume at step {stop}"
    assert backend.rng.get_state() == end_rng
    assert [r["r1"] > 0 for r in _records(tmp_path / "part")] == [s % 4 == 0 for s in range(8)]


TINY = ["--dataset", "ellipses", "--limit", "48", "--image-size", "8", "--width", "4",
        "--z-dim", "8", "--batch-size", "8", "--no-progress", "--log-every", "1"]


def test_r1_and_d_dropout_from_the_command_line(tmp_path, quick_curves, capsys):
    out = tmp_path / "cli"
    assert main(["train", *TINY, "--steps", "2", "--out", str(out), "--r1-gamma", "5",
                 "--r1-every", "2", "--d-dropout", "0"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["r1_gamma"], config["r1_every"], config["d_dropout"]) == (5.0, 2, 0.0)
    assert [r["r1"] > 0 for r in _records(out)] == [True, False]
    assert main(["sample", str(out), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(out), "--steps", "3", "--r1-gamma", "1"])
    assert "--r1-gamma cannot be given with --resume" in capsys.readouterr().err
