"""The lab's run folder, one-update-at-a-time stepping, exact resume, and the frames."""

import json

import numpy as np
import pytest
from PIL import Image

from minigan.lab import LabConfig, LabTrainer
from minigan.lab.trainer import LabConfig as _LabConfig  # noqa: F401 - the module path works

TINY = dict(g_hidden=16, g_layers=2, d_hidden=16, d_layers=2, batch_size=8, log_every=2,
            progress=False)


def _params(net):
    return {k: np.array(v.data) for k, v in net.state_dict().items()}


def test_a_run_folder_holds_frames_gif_protocol_and_checkpoint(tmp_path):
    out = tmp_path / "ring"
    lab = LabTrainer(LabConfig(out=str(out), steps=4, frame_every=2, eval_every=2, **TINY))
    summary = lab.fit()
    assert summary["step"] == 4
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "lab" and cfg["mixture"] == {"name": "ring", "modes": 8,
                                                        "sigma": 0.01}
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    protocol = [r for r in lines if "modes" in r]
    assert [r["step"] for r in protocol] == [2, 4]
    assert all(0 <= r["modes"] <= 8 and 0 <= r["high_quality"] <= 100 for r in protocol)
    assert [r["step"] for r in lines if "loss_d" in r] == [2, 4]
    frames = sorted((out / "frames").glob("*.png"))
    assert [f.name for f in frames] == ["step_0000000.png", "step_0000002.png",
                                        "step_0000004.png"]
    sizes = {Image.open(f).size for f in frames}
    assert len(sizes) == 1 and min(next(iter(sizes))) > 200
    with Image.open(out / "lab.gif") as gif:
        assert gif.n_frames == 3 and gif.size == next(iter(sizes))
    for name in ("curves.png", "protocol.png", "checkpoints/last.npz"):
        assert (out / name).is_file(), name


def _weights(net):
    return {k: np.array(p.data) for k, p in net.named_parameters()}


def test_d_and_g_steps_touch_only_their_own_net(tmp_path):
    """(Weights only: D's step runs G in training mode, which moves BatchNorm's running
    statistics, as in PyTorch.)"""
    lab = LabTrainer(LabConfig(out=str(tmp_path / "r"), **TINY))
    g0, d0 = _weights(lab.G), _weights(lab.D)
    stats = lab.d_step()
    assert set(stats) >= {"loss_d", "acc_real", "d_x"} and np.isfinite(stats["loss_d"])
    assert all((_weights(lab.G)[k] == v).all() for k, v in g0.items())
    assert any((_weights(lab.D)[k] != v).any() for k, v in d0.items())
    d1 = _weights(lab.D)
    stats = lab.g_step()
    assert set(stats) == {"loss_g"}
    assert all((_weights(lab.D)[k] == v).all() for k, v in d1.items())
    assert any((_weights(lab.G)[k] != v).any() for k, v in g0.items())
    path = lab.frame(tmp_path / "one.png")           # a notebook can draw any moment
    assert Image.open(path).size[0] > 200


@pytest.mark.parametrize("loss,pack", [("bce", 2), ("wgan-gp", 1)])
def test_resume_continues_exactly(tmp_path, loss, pack):
    common = dict(loss=loss, pack=pack, frame_every=0, eval_every=3, checkpoint_every=0, **TINY)
    whole = LabTrainer(LabConfig(out=str(tmp_path / "whole"), steps=6, **common))
    whole.fit()
    half = LabTrainer(LabConfig(out=str(tmp_path / "half"), steps=3, **common))
    half.fit()
    again = LabTrainer.resume(tmp_path / "half", steps=6)
    assert again.step == 3
    again.fit()
    for net in ("G", "D"):
        a, b = _params(getattr(whole, net)), _params(getattr(again, net))
        assert all((a[k] == b[k]).all() for k in a), f"{net} differs after resume"
    lines = (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines if "modes" in s] == [3, 6]


def test_lr_decay_follows_its_schedule_and_resumes_exactly(tmp_path):
    """lr_decay 0.5 over 8 steps: the rates hold for 4 steps, then fall by quarters; logged
    after every other step; a run stopped at step 3 resumes onto the same schedule."""
    common = dict(lr_decay=0.5, frame_every=0, eval_every=0, checkpoint_every=0, **TINY)
    whole = LabTrainer(LabConfig(out=str(tmp_path / "whole"), steps=8, **common))
    base = whole.opt_g.lr
    whole.fit()
    logged = [(r["step"], r["lr_g"], r["lr_d"]) for r in whole.records if "loss_d" in r]
    expected = [(2, 1.0), (4, 1.0), (6, 2 / 4), (8, 0.0)]    # the rate for the next step
    assert [s for s, _, _ in logged] == [s for s, _ in expected]
    np.testing.assert_allclose([g for _, g, _ in logged], [base * f for _, f in expected],
                               rtol=1e-12, atol=0)
    assert all(g == d for _, g, d in logged)

    def stop_at_3(trainer, stats):
        if trainer.step == 3:
            trainer._stop_requested = True
    from minigan.gan.trainer import TrainingInterrupted

    part = LabTrainer(LabConfig(out=str(tmp_path / "part"), steps=8, **common),
                      callbacks=[stop_at_3])
    with pytest.raises(TrainingInterrupted):
        part.fit()
    resumed = LabTrainer.resume(tmp_path / "part")
    assert resumed.opt_g.lr == base           # step 4 still runs at the full rate
    resumed.fit()
    for net in ("G", "D"):
        a, b = _params(getattr(whole, net)), _params(getattr(resumed, net))
        assert all((a[k] == b[k]).all() for k in a), f"{net} differs after resume"
    with pytest.raises(ValueError, match="lr_decay"):
        LabTrainer(LabConfig(out=str(tmp_path / "bad"), lr_decay=-0.1, **TINY))


def test_ctrl_c_stops_after_the_step_with_a_checkpoint(tmp_path):
    import os
    import signal

    from minigan.gan.checkpoint import load_checkpoint
    from minigan.gan.trainer import TrainingInterrupted

    common = dict(frame_every=0, eval_every=0, checkpoint_every=0, **TINY)
    whole = LabTrainer(LabConfig(out=str(tmp_path / "whole"), steps=4, **common))
    whole.fit()

    def press_ctrl_c(trainer, stats):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)   # default, or ignored under nohup
    part = LabTrainer(LabConfig(out=str(tmp_path / "part"), steps=4, **common),
                      callbacks=[press_ctrl_c])
    with pytest.raises(TrainingInterrupted) as e:
        part.fit()
    assert "lab --resume" in str(e.value)
    assert load_checkpoint(e.value.checkpoint)["step"] == 2
    assert signal.getsignal(signal.SIGINT) is before, "SIGINT's handler was not restored"
    resumed = LabTrainer.resume(tmp_path / "part")
    resumed.fit()
    for net in ("G", "D"):
        a, b = _params(getattr(whole, net)), _params(getattr(resumed, net))
        assert all((a[k] == b[k]).all() for k in a), f"{net} differs after Ctrl-C and resume"


def test_resume_refuses_what_would_change_the_computation(tmp_path):
    LabTrainer(LabConfig(out=str(tmp_path / "r"), steps=1, frame_every=0, **TINY)).fit()
    with pytest.raises(ValueError, match="cannot change 'pack'"):
        LabTrainer.resume(tmp_path / "r", pack=2)
    with pytest.raises(FileNotFoundError, match="not a lab run"):
        LabTrainer.resume(tmp_path / "nothing")


def test_a_user_point_set_trains_without_the_protocol(tmp_path):
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).uniform(-1, 1, (64, 2)))
    lab = LabTrainer(LabConfig(mixture=str(tmp_path / "pts.npy"), out=str(tmp_path / "u"),
                               steps=2, frame_every=2, **TINY))
    lab.fit()
    assert (tmp_path / "u" / "lab.gif").is_file()
    assert not any("modes" in r for r in lab.records)
    with pytest.raises(ValueError, match="without modes"):
        lab.evaluate()


def _assert_push_is_minus_the_gradient(push, fake, i, g_loss, eps=1e-3):
    """Point i's arrow against central differences of `g_loss` (float32 D: 5 %)."""
    for j in range(2):
        up, down = fake.astype(np.float64).copy(), fake.astype(np.float64).copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (g_loss(up) - g_loss(down)) / (2 * eps)
        assert -push[i, j] == pytest.approx(numeric, rel=0.05, abs=1e-4)


def test_the_pictures_show_d_and_the_gradients(tmp_path):
    lab = LabTrainer(LabConfig(out=str(tmp_path / "r"), **TINY))
    xs = ys = np.linspace(-1.5, 1.5, 7)
    surface = lab.d_surface(xs, ys)
    assert surface.shape == (7, 7) and ((surface > 0) & (surface < 1)).all()
    fake, push = lab.g_gradients(lab.fixed_noise[:10])
    assert fake.shape == push.shape == (10, 2)
    # the arrow is minus the gradient of G's loss at the point: check one by differences
    from minigan import Tensor
    i = 4

    def g_loss(pts):
        return lab.loss.g_loss(lab.D(Tensor(pts.astype(np.float32)))).item()

    _assert_push_is_minus_the_gradient(push, fake, i, g_loss)
    lines = lab.noise_grid(lines=5, points=9)
    assert lines.shape == (10, 9, 2)


def test_top_k_training_in_the_lab(tmp_path):
    """k over the batch's packs: the whole batch (8) for g_top_k_every = 2 steps, then half
    of it (0.5 x 8 = 4, the floor); logged for the window's last step; a run stopped and
    resumed ends with the same weights."""
    common = dict(g_top_k=0.5, g_top_k_decay=0.5, g_top_k_every=2, frame_every=0,
                  eval_every=0, checkpoint_every=0, **TINY)
    whole = LabTrainer(LabConfig(out=str(tmp_path / "whole"), steps=6, **common))
    assert [whole.top_k(s) for s in range(6)] == [8, 8, 4, 4, 4, 4]
    whole.fit()
    assert [(r["step"], r["g_top_k"]) for r in whole.records if "loss_d" in r] == \
        [(2, 8), (4, 4), (6, 4)]
    half = LabTrainer(LabConfig(out=str(tmp_path / "half"), steps=3, **common))
    half.fit()
    again = LabTrainer.resume(tmp_path / "half", steps=6)
    assert again.top_k() == 4
    again.fit()
    for net in ("G", "D"):
        a, b = _params(getattr(whole, net)), _params(getattr(again, net))
        assert all((a[k] == b[k]).all() for k in a), f"{net} differs after resume"
    # settings outside (0, 1] or a period under one step are refused, saying which
    for bad in (dict(g_top_k=0.0), dict(g_top_k_decay=1.5), dict(g_top_k_every=0)):
        with pytest.raises(ValueError, match="top-k|top_k"):
            LabTrainer(LabConfig(out=str(tmp_path / "bad"), **dict(TINY, **bad)))


def test_top_k_arrows_push_only_the_points_d_likes_best(tmp_path):
    """With k = 4 of a batch of 8 the frame's loss is over half of its points, the half D
    scores highest: exactly those have an arrow, and an arrow is minus the gradient of the
    mean of G's loss over that half (checked by central differences)."""
    from minigan import Tensor

    lab = LabTrainer(LabConfig(out=str(tmp_path / "r"), g_top_k=0.5, g_top_k_decay=0.5,
                               g_top_k_every=1, **TINY))
    lab.step = 1                                       # past the first period: k = 4 of 8
    assert lab.top_k() == 4
    z = lab.fixed_noise[:10]
    fake, push = lab.g_gradients(z)
    scores = lab.D(Tensor(fake)).data.reshape(-1)
    best = np.sort(np.argsort(-scores.astype(np.float64), kind="stable")[:5])   # ceil(10 / 2)
    moved = np.nonzero(np.abs(push).sum(axis=1))[0]
    np.testing.assert_array_equal(moved, best)
    assert (push[np.setdiff1d(np.arange(10), best)] == 0).all()
    i = best[0]

    def g_loss(pts):          # G's loss over the kept points (the set held fixed)
        return lab.loss.g_loss(lab.D(Tensor(pts[best].astype(np.float32)))).item()

    _assert_push_is_minus_the_gradient(push, fake, i, g_loss)
