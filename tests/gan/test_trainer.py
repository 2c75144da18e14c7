"""The training loop: exact resume, Ctrl-C, non-finite losses, atomic checkpoints, outputs."""

import json
import os
import signal

import numpy as np
import pytest

import minigan
from minigan import backend
from minigan.gan import (
    BCELoss,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
)
from minigan.gan import checkpoint as checkpoint_module
from minigan.testing import training_state


def _config(tmp_path, name="run", arch="dcgan", **changes) -> TrainConfig:
    """Tiny: 48 ellipses of 8x8 in batches of 8 (6 steps an epoch), width 4."""
    options = {"dataset": "ellipses", "limit": 48, "image_size": 8, "arch": arch, "width": 4,
               "z_dim": 8, "batch_size": 8, "steps": 12, "out": str(tmp_path / name),
               "progress": False, "log_every": 2, "fd_every": 1}
    options.update(changes)
    return TrainConfig(**options)


def _assert_identical(a: Trainer, b: Trainer) -> None:
    wa, wb = training_state(a), training_state(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), (
            f"{k} differs after resume: max |diff| {np.abs(wa[k] - wb[k]).max()}")
    assert a.opt_g.step_count == b.opt_g.step_count and a.step == b.step
    assert backend.rng.get_state() is not None


@pytest.mark.parametrize("arch,stop,ema,rampup", [("dcgan", 5, 0.0, 0.0), ("atienza", 9, 0.0, 0.0),
                                                  ("dcgan", 7, 0.9, 0.0), ("dcgan", 7, 0.9, 0.5)])
def test_resume_mid_epoch_is_bit_identical_to_an_unbroken_run(tmp_path, arch, stop, ema, rampup,
                                                                quick_curves):
    whole = Trainer(_config(tmp_path, "whole", arch, ema=ema, ema_rampup=rampup))
    whole.fit()
    end_rng = backend.rng.get_state()
    assert any(k.startswith("G_ema.") for k in training_state(whole)) == bool(ema)

    part = Trainer(_config(tmp_path, "part", arch, steps=stop, ema=ema, ema_rampup=rampup))
    part.fit()
    assert part.loader._batch != 0, "the test must stop in the middle of an epoch"
    minigan.manual_seed(12345)                # whatever happens in between must not matter
    resumed = Trainer.resume(tmp_path / "part", steps=12)
    assert resumed.step == stop
    resumed.fit()
    _assert_identical(whole, resumed)
    assert backend.rng.get_state() == end_rng
    lines = [json.loads(s) for s in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss_d" in r and "fd" not in r][-1] == 12


def test_ctrl_c_saves_a_checkpoint_and_resumes_exactly(tmp_path, quick_curves):
    whole = Trainer(_config(tmp_path, "whole"))
    whole.fit()

    def press_ctrl_c(trainer, stats):
        if trainer.step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)   # default, or ignored under nohup
    part = Trainer(_config(tmp_path, "part"), callbacks=[press_ctrl_c])
    with pytest.raises(TrainingInterrupted) as e:
        part.fit()
    assert isinstance(e.value, KeyboardInterrupt) and "--resume" in str(e.value)
    assert load_checkpoint(e.value.checkpoint)["step"] == 4
    assert signal.getsignal(signal.SIGINT) is before, "SIGINT's handler was not restored"
    resumed = Trainer.resume(tmp_path / "part")
    resumed.fit()
    _assert_identical(whole, resumed)


def test_lr_decay_follows_its_schedule_and_resumes_exactly(tmp_path, quick_curves):
    """--lr-decay 0.5 over 12 steps: lr constant for 6 steps, then 6/6, 5/6, ... 1/6 of it
    (the lr of each step is logged after it, so a record shows the next step's); a run
    interrupted at step 7 resumes onto the same schedule and the same weights."""
    whole = Trainer(_config(tmp_path, "whole", lr_decay=0.5, log_every=1))
    base = whole.opt_g.lr
    assert base == whole.recipe.lr_g and whole.opt_d.lr == whole.recipe.lr_d
    whole.fit()
    logged = [r["lr_g"] for r in whole.records if "loss_d" in r]   # one per step
    expected = [base * f for f in [1] * 5 + [6 / 6, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0]]
    np.testing.assert_allclose(logged, expected, rtol=1e-12, atol=0)
    assert [whole.lr_factor(s) for s in (0, 5, 6, 11, 12)] == [1.0, 1.0, 1.0, 1 / 6, 0.0]

    def stop_at_7(trainer, stats):
        if trainer.step == 7:
            trainer._stop_requested = True
    part = Trainer(_config(tmp_path, "part", lr_decay=0.5, log_every=1), callbacks=[stop_at_7])
    with pytest.raises(TrainingInterrupted):
        part.fit()
    resumed = Trainer.resume(tmp_path / "part")
    assert resumed.opt_g.lr == pytest.approx(base * 5 / 6, rel=1e-12)
    resumed.fit()
    _assert_identical(whole, resumed)
    with pytest.raises(ValueError, match="lr_decay"):
        Trainer(_config(tmp_path, "bad", lr_decay=1.5))


def test_samples_follow_every_update_of_g(tmp_path):
    """Samples at one moment share one BatchNorm calibration; a training step (also one called
    by hand, which does not count steps) makes sample() calibrate afresh."""
    from minigan.gan import generate
    from minigan.gan.trainer import _seed_for

    trainer = Trainer(_config(tmp_path, fd_every=0))
    z = trainer.fixed_noise[:8]
    first = trainer.sample(z)
    np.testing.assert_array_equal(trainer.sample(z), first)
    trainer.train_step(next(iter(trainer.loader)))
    assert trainer.step == 0
    fresh = generate(trainer.sampler, z, batch_size=trainer.recipe.batch_size,
                     seed=_seed_for(trainer.config.seed, 4))
    np.testing.assert_array_equal(trainer.sample(z), fresh)
    assert not np.array_equal(fresh, first)


def test_a_resumed_run_keeps_how_its_convolutions_were_threaded(tmp_path, monkeypatch):
    """MINIGAN_THREADS unset: the first convolution picks OpenBLAS's threads or the pool by the
    machine's load, and the two round differently, so the checkpoint keeps the choice and a
    resumed run uses it whatever the load is then."""
    from minigan.kernels import shifted
    from minigan.kernels import threads as T

    class Quiet:                                  # a pool controller that changes nothing
        def start(self):
            return 0.0

        def done(self, t0, flops):
            pass

    if not shifted.available(np.float32):
        pytest.skip("no CBLAS sgemm: the convolutions are not threaded by minigan")
    busy = T.Detect(lambda: None, Quiet, probe=lambda: 2.0, interval=1e9)
    monkeypatch.setattr(shifted, "THREADS", busy)
    config = _config(tmp_path, width=16, steps=2, fd_every=0)    # 16 channels: shifted GEMMs
    Trainer(config).fit()
    assert busy.family == "pool"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.npz")["threads"] == "pool"
    quiet = T.Detect(lambda: None, Quiet, probe=lambda: 0.0, interval=1e9)
    monkeypatch.setattr(shifted, "THREADS", quiet)
    Trainer.resume(tmp_path / "run", steps=3).fit()
    assert quiet.family == "pool", "the resumed run took the family the probe would pick"


class NaNAfter(BCELoss):
    """BCE whose generator loss turns NaN at a given call."""

    def __init__(self, at: int):
        super().__init__()
        self.calls, self.at = 0, at

    def g_loss(self, fake_logits):
        self.calls += 1
        loss = super().g_loss(fake_logits)
        return loss * float("nan") if self.calls >= self.at else loss


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, quick_curves):
    trainer = Trainer(_config(tmp_path), loss=NaNAfter(9))
    with pytest.raises(NonFiniteLossError) as e:
        trainer.fit()
    message = str(e.value)
    assert "loss_g" in message and "step 9" in message and "last.npz" in message
    state = load_checkpoint(trainer.checkpoint_path)
    assert state["step"] == 6                              # the end of epoch 1
    assert all(np.isfinite(v).all() for v in state["G"].values())


def test_a_non_finite_loss_read_late_still_names_its_step(tmp_path, quick_curves):
    """With host reads every 5 steps (as on a GPU), the NaN of step 9 is caught at the read
    after step 10, named exactly, and no checkpoint is written after it."""
    trainer = Trainer(_config(tmp_path, log_every=5, host_every=5), loss=NaNAfter(9))
    with pytest.raises(NonFiniteLossError) as e:
        trainer.fit()
    assert "loss_g became nan at step 9 " in str(e.value)
    assert trainer.step == 10
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 6


def test_reading_the_logged_scalars_late_logs_the_same_numbers(tmp_path, quick_curves):
    """Stats kept on the device and read every 4 steps give the metrics lines of a read per
    step, and the step loop itself reads nothing from the device in between."""
    def lines(name, **changes):
        Trainer(_config(tmp_path, name, log_every=3, fd_every=0, **changes)).fit()
        return [json.loads(s) for s in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    every = lines("every", host_every=1)
    late = lines("late", host_every=4)
    assert len(every) == len(late) > 3
    for a, b in zip(every, late):
        a.pop("seconds"), b.pop("seconds")
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12), k

    reads = []
    trainer = Trainer(_config(tmp_path, "counted", log_every=6, host_every=6, fd_every=0))
    original = trainer._read_pending
    trainer._read_pending = lambda: (reads.append(trainer.step), original())[1]
    trainer.fit()
    # only at the metrics lines and epoch ends, which both fall every 6 steps here
    assert reads and [s for s in reads if s % 6] == []


def test_non_finite_weights_are_never_saved(tmp_path, quick_curves):
    trainer = Trainer(_config(tmp_path, steps=3))
    trainer.fit()
    before = trainer.checkpoint_path.read_bytes()
    next(trainer.G.parameters()).data[0] = np.nan
    with pytest.raises(NonFiniteLossError, match="not saving"):
        trainer.save_checkpoint()
    assert trainer.checkpoint_path.read_bytes() == before


def test_a_failure_while_writing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch,
                                                                       quick_curves):
    trainer = Trainer(_config(tmp_path, steps=3))
    trainer.fit()
    before = trainer.checkpoint_path.read_bytes()

    def broken_write(f, arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write", broken_write)
    trainer.step += 1
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint()
    assert trainer.checkpoint_path.read_bytes() == before
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 3
    assert sorted(p.name for p in trainer.checkpoint_path.parent.iterdir()) == ["last.npz"]


def test_run_folder_contents(tmp_path):
    Trainer(_config(tmp_path, steps=14)).fit()             # 2 epochs and 2 steps
    run = tmp_path / "run"
    names = sorted(p.name for p in (run / "samples").iterdir())
    assert names == ["epoch_001.png", "epoch_002.png", "step_0000014.png"]
    for name in ("progress.gif", "curves.png", "checkpoints/last.npz"):
        assert (run / name).is_file(), name
    from PIL import Image
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == 3
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "fd" not in r]
    assert steps == [2, 4, 6, 8, 10, 12, 14]
    keys = {"step", "epoch", "loss_d", "loss_g", "acc_real", "acc_fake", "d_x", "d_g_z",
            "seconds"}
    assert all(keys <= set(r) for r in records if r["step"] in (2, 14))
    assert [r["step"] for r in records if "fd" in r] == [6, 12]
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 0 and config["config"]["arch"] == "dcgan"
    assert {"python", "numpy", "numba", "minigan"} <= set(config["versions"])
    assert config["recipe"]["batch_size"] == 8 and config["steps_per_epoch"] == 6


def test_existing_run_folder_is_protected(tmp_path, quick_curves):
    Trainer(_config(tmp_path, steps=2, fd_every=0)).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(_config(tmp_path, steps=2))
    (tmp_path / "run" / "notes.txt").write_text("mine")
    Trainer(_config(tmp_path, steps=1, fd_every=0), overwrite=True).fit()
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.npz")["step"] == 1


def test_a_keyboard_interrupt_between_steps_also_saves(tmp_path, quick_curves):
    def interrupt(trainer, stats):
        if trainer.step == 3:
            raise KeyboardInterrupt

    trainer = Trainer(_config(tmp_path), callbacks=[interrupt])
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 3


# ---- callbacks: layer statistics and what D sees ---------------------------------------------

def test_layer_statistics_match_numpy_on_a_small_net(tmp_path):
    from types import SimpleNamespace

    from minigan import nn
    from minigan.functional import binary_cross_entropy_with_logits as bce
    from minigan.gan.callbacks import LayerStatistics, read_jsonl

    minigan.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.LeakyReLU(0.2)).double()
    D = nn.Sequential(nn.Linear(4, 1)).double()
    G[1].running_mean[...] = [0.1, -0.2, 0.3, 0.0]
    G[1].running_var[...] = [1.0, 2.0, 0.5, 4.0]
    rm, rv = G[1].running_mean.astype(np.float64), G[1].running_var.astype(np.float64)
    loader = type("Loader", (), {"_batch": 2, "__len__": lambda self: 4})()   # half an epoch
    trainer = SimpleNamespace(G=G, D=D, out=tmp_path, step=1, epoch=0, loader=loader,
                              config=SimpleNamespace(log_every=2))
    stats = LayerStatistics()
    stats.on_step_begin(trainer)                      # step 2 is a log step: hooks armed
    z = np.random.default_rng(0).standard_normal((8, 3))
    logits = D(G(minigan.tensor(z)))
    D(G(minigan.tensor(z * 5)))                        # a second call is not recorded
    bce(logits, np.ones((8, 1))).backward()
    trainer.step = 2
    stats.on_step_end(trainer, {})
    assert G[0]._hooks is not None and not any(G[0]._hooks.values()), "hooks left behind"

    # NumPy: the same forward and the gradient of mean BCE(logit, 1) = mean softplus(-logit)
    w0, b0 = G[0].weight.numpy(), G[0].bias.numpy()
    a = z @ w0.T + b0                                              # (8, 4)
    mu, var = a.mean(0), a.var(0)
    bn = (a - mu) / np.sqrt(var + G[1].eps) * G[1].weight.numpy() + G[1].bias.numpy()
    act = np.where(bn > 0, bn, 0.2 * bn)
    logit = act @ D[0].weight.numpy().T + D[0].bias.numpy()        # (8, 1)
    g_logit = -1 / (1 + np.exp(logit)) / 8
    g_act = g_logit @ D[0].weight.numpy()
    want = {
        "G.0": {"mean": a.mean(), "std": a.std()},
        "G.1": {"mean": bn.mean(), "std": bn.std(), "grad": np.linalg.norm(g_act *
                np.where(bn > 0, 1, 0.2)),
                "bn_shift": (np.abs(mu - rm) / np.sqrt(rv + G[1].eps)).mean(),
                "bn_log_var_ratio": np.log((var + G[1].eps) / (rv + G[1].eps)).mean()},
        "G.2": {"mean": act.mean(), "std": act.std(), "neg": (bn < 0).mean(),
                "grad": np.linalg.norm(g_act)},
        "D.0": {"mean": logit.mean(), "std": logit.std(), "grad": np.linalg.norm(g_logit)},
    }
    (line,) = read_jsonl(tmp_path / "internals.jsonl")
    assert line["step"] == 2 and line["epoch"] == 0.5
    assert list(line["layers"]) == ["G.0", "G.1", "G.2", "D.0"]
    for layer, values in want.items():
        for stat, v in values.items():
            got = line["layers"][layer][stat]
            assert abs(got - v) <= 1e-9 * (1 + abs(v)), f"{layer} {stat}: {got} vs NumPy {v}"


def test_internals_and_views_are_recorded_and_cut_back_on_resume(tmp_path, quick_curves):
    from minigan.gan.callbacks import read_jsonl

    Trainer(_config(tmp_path, steps=8, log_internals=True)).fit()
    run = tmp_path / "run"
    lines = read_jsonl(run / "internals.jsonl")
    assert [r["step"] for r in lines] == [2, 4, 6, 8]
    names = list(lines[0]["layers"])
    assert names[0] == "G.0" and any(n.startswith("D.") for n in names)
    assert all({"mean", "std", "grad"} <= set(v) for v in lines[0]["layers"].values())
    views = read_jsonl(run / "views.jsonl")
    assert [v["epoch"] for v in views] == [1]
    assert len(views[0]["logits_real"]) == len(views[0]["logits_fake"]) == 48
    assert np.shape(views[0]["spectrum_fake"]) == (8, 8)
    for name in ("views.jsonl", "internals.jsonl"):         # lines from after the checkpoint
        with open(run / name, "a") as f:
            f.write(json.dumps({"step": 99, "epoch": 9, "layers": {}}) + "\n")
    Trainer.resume(run, steps=12).fit()
    assert [r["step"] for r in read_jsonl(run / "internals.jsonl")] == [2, 4, 6, 8, 10, 12]
    assert [v["epoch"] for v in read_jsonl(run / "views.jsonl")] == [1, 2]


def test_views_do_not_change_the_training(tmp_path, quick_curves):
    from minigan.gan.callbacks import EpochViews

    a = Trainer(_config(tmp_path, "a", steps=8))
    a.callbacks = [c for c in a.callbacks if not isinstance(c, EpochViews)]
    a.fit()
    b = Trainer(_config(tmp_path, "b", steps=8, log_internals=True))
    b.fit()
    _assert_identical(a, b)


def test_layer_statistics_with_several_critic_steps(tmp_path, quick_curves):
    from minigan.gan.callbacks import read_jsonl

    Trainer(_config(tmp_path, steps=2, loss="wgan-gp", n_critic=2, log_internals=True,
                    fd_every=0)).fit()
    (line,) = read_jsonl(tmp_path / "run" / "internals.jsonl")
    names = list(line["layers"])
    first_d = next(i for i, n in enumerate(names) if n.startswith("D."))
    assert all(n.startswith("G.") for n in names[:first_d]) and first_d > 0, names
    assert all(n.startswith("D.") for n in names[first_d:]), names
    missing = [n for n, v in line["layers"].items() if v.get("grad") is None]
    assert not missing, f"no output gradient recorded for {missing}"


@pytest.mark.parametrize("rampup", [0.0, 0.5])
def test_ema_draws_the_samples_and_is_what_the_cli_loads(tmp_path, quick_curves, rampup):
    """With `ema`, the moving average of G's weights (checked against the same average kept
    by hand in float64) draws the grids and metrics, and `load_generator` loads it. With
    `ema_rampup` r, update t (t - 1 before it) uses the decay whose half-life is r * t steps
    while that is under `ema`'s; at r = 0.5 those are 0.5, 0.63, 0.71, 0.76, 0.79 for t = 2..6,
    all under 0.8."""
    from minigan.cli import load_generator
    from minigan.gan import generate
    from minigan.gan.trainer import _seed_for

    decay = 0.8
    by_hand: list | None = None
    t = 0

    def average(tr, stats):
        nonlocal by_hand, t
        t += 1
        d = min(decay, 0.5 ** (1 / (rampup * t))) if rampup else decay
        now = [np.asarray(p.data, np.float64) for p in tr.G.parameters()]
        by_hand = now if by_hand is None else [d * a + (1 - d) * w
                                               for a, w in zip(by_hand, now)]

    trainer = Trainer(_config(tmp_path, ema=decay, ema_rampup=rampup, steps=6),
                      callbacks=[average])
    trainer.fit()
    averaged = [p.data for p in trainer.G_ema.module.parameters()]
    for a, ref in zip(averaged, by_hand):
        np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)
    assert int(trainer.G_ema.n_averaged) == 6
    assert not all(np.array_equal(a, p.data) for a, p in zip(averaged, trainer.G.parameters()))
    z = trainer.fixed_noise[:8]
    drawn = trainer.sample(z)
    G, _ = load_generator(tmp_path / "run")
    for p, a in zip(G.parameters(), averaged):
        assert np.array_equal(p.data, a), "load_generator did not load the moving average"
    again = generate(G, z, batch_size=trainer.recipe.batch_size, seed=_seed_for(0, 4))
    assert np.array_equal(again, drawn), "the CLI's generator draws other samples"
    assert not np.allclose(drawn, generate(trainer.G, z, batch_size=trainer.recipe.batch_size))


def test_ema_rampup_needs_a_moving_average(tmp_path):
    with pytest.raises(ValueError, match="needs a moving average to ramp up"):
        Trainer(_config(tmp_path, ema_rampup=0.25))
    with pytest.raises(ValueError, match="ema_rampup must be >= 0"):
        Trainer(_config(tmp_path, ema=0.9, ema_rampup=-0.1))


def test_spectral_norm_trains_resumes_exactly_and_reloads(tmp_path, quick_curves):
    """--spectral-norm: D has no dropout and every layer's weight is weight_orig / sigma with
    the power iteration's vectors saved in the checkpoint, so a resumed run is the unbroken one;
    the run's D is rebuilt the same way from its folder."""
    from minigan.inspect import load_run

    whole = Trainer(_config(tmp_path, "whole", spectral_norm=True))
    assert not any(isinstance(m, (minigan.nn.Dropout, minigan.nn.BatchNorm2d))
                   for m in whole.D.modules())
    whole.fit()
    layers = [m for m in whole.D.modules() if hasattr(m, "weight_orig")]
    assert len(layers) == 3           # two convolutions and the linear layer
    for m in layers:                  # the top singular value of the weight D used last
        w = np.asarray(m.weight.data, np.float64)
        top = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0]
        assert 0.5 < top < 1.05, top  # one power iteration a step: an estimate from below
    part = Trainer(_config(tmp_path, "part", steps=7, spectral_norm=True))
    part.fit()
    resumed = Trainer.resume(tmp_path / "part", steps=12)
    resumed.fit()
    _assert_identical(whole, resumed)
    assert any(k.endswith("weight_u") for k in training_state(resumed))
    _, D, _ = load_run(tmp_path / "whole")
    for a, b in zip(D.state_dict().values(), whole.D.state_dict().values(), strict=True):
        assert np.array_equal(a, b)
