"""Learning-rate schedules: the learning rate after each step() against the closed forms written
out here, against torch.optim.lr_scheduler when it is installed, and across a state_dict
round trip (what a resumed run relies on)."""

import numpy as np
import pytest

from minigan import nn
from minigan.optim import SGD, Adam
from minigan.optim.lr_scheduler import ConstantLR, LambdaLR, LinearLR, SequentialLR

BASE = 0.1


def fresh(cls=SGD):
    return cls([nn.Parameter(np.zeros(3))], lr=BASE)


def lrs(opt, sched, steps):
    """The optimizer's lr at steps 0 .. steps-1, stepping the schedule after each (as PyTorch
    code does after optimizer.step())."""
    out = []
    for _ in range(steps):
        out.append(opt.lr)
        assert sched.get_last_lr() == [opt.lr]
        sched.step()
    return out


def test_linear_closed_form():
    opt = fresh()
    got = lrs(opt, LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=4), 7)
    np.testing.assert_allclose(got, [0.1, 0.075, 0.05, 0.025, 0.0, 0.0, 0.0], rtol=0, atol=1e-15)


def test_constant_and_lambda():
    opt = fresh()
    assert lrs(opt, ConstantLR(opt, factor=0.5, total_iters=3), 5) == [0.05] * 3 + [0.1] * 2
    opt = fresh()
    got = lrs(opt, LambdaLR(opt, lambda s: 0.9 ** s), 4)
    np.testing.assert_allclose(got, [0.1, 0.09, 0.081, 0.0729], rtol=1e-14)


def test_sequential_restarts_each_schedule_at_its_milestone():
    """Constant for 3 steps, then linear to 0 over 4: what a 'decay over the last part of
    training' looks like."""
    opt = fresh()
    sched = SequentialLR(opt, [LambdaLR(opt, lambda s: 1.0),
                               LinearLR(opt, 1.0, 0.0, total_iters=4)], milestones=[3])
    np.testing.assert_allclose(lrs(opt, sched, 9),
                               [0.1, 0.1, 0.1, 0.1, 0.075, 0.05, 0.025, 0.0, 0.0], atol=1e-15)


@pytest.mark.parametrize("make", [
    lambda o, m: m.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=5),
    lambda o, m: m.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=7),
    lambda o, m: m.ConstantLR(o, factor=0.3, total_iters=4),
    lambda o, m: m.LambdaLR(o, lambda s: 1.0 / (1 + s)),
    lambda o, m: m.SequentialLR(o, [m.ConstantLR(o, factor=0.5, total_iters=10),
                                    m.LinearLR(o, 1.0, 0.1, total_iters=5)], milestones=[4]),
])
def test_against_torch_if_installed(make):
    torch = pytest.importorskip("torch")
    import minigan.optim.lr_scheduler as mine

    t_opt = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=BASE)
    t_sched = make(t_opt, torch.optim.lr_scheduler)
    expected = []
    for _ in range(12):
        expected.append(t_opt.param_groups[0]["lr"])
        t_opt.step()
        t_sched.step()
    opt = fresh()
    np.testing.assert_allclose(lrs(opt, make(opt, mine), 12), expected, rtol=1e-12, atol=1e-15)


def test_state_dict_round_trip_continues_the_schedule():
    opt = fresh(Adam)
    sched = LinearLR(opt, 1.0, 0.0, total_iters=10)
    for _ in range(4):
        sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state
    opt2 = fresh(Adam)
    sched2 = LinearLR(opt2, 1.0, 0.0, total_iters=10)
    sched2.load_state_dict(state)
    assert opt2.lr == opt.lr == pytest.approx(0.06)
    assert lrs(opt2, sched2, 6) == lrs(opt, sched, 6)


def test_sequential_state_dict_round_trip():
    def make(o):
        return SequentialLR(o, [ConstantLR(o, 0.5, 2), LinearLR(o, 1.0, 0.0, 3)], [2])
    opt, opt2 = fresh(), fresh()
    sched, sched2 = make(opt), make(opt2)
    for _ in range(3):
        sched.step()
    sched2.load_state_dict(sched.state_dict())
    assert lrs(opt2, sched2, 5) == lrs(opt, sched, 5)


def test_bad_arguments_say_what_is_wrong():
    opt = fresh()
    with pytest.raises(ValueError, match="start_factor"):
        LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="total_iters"):
        LinearLR(opt, total_iters=0)
    with pytest.raises(ValueError, match="milestones"):
        SequentialLR(opt, [ConstantLR(opt), LinearLR(opt)], milestones=[])
    with pytest.raises(ValueError, match="same|optimizer"):
        SequentialLR(opt, [ConstantLR(opt), LinearLR(fresh())], milestones=[2])
    with pytest.raises(KeyError, match="initial_lr"):
        LinearLR(fresh(), last_epoch=5)
