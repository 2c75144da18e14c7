"""SGD, Adam and RMSprop over several iterations against hand-written NumPy loops (PyTorch's
update rules; RMSprop's `decay` as Keras: lr / (1 + decay * iterations)); state_dict round trip.
"""

import numpy as np
import pytest

import minigan as mg
from minigan import nn
from minigan.optim import SGD, Adam, RMSprop
from minigan.testing import assert_close

STEPS = 6


def grads_for(step, shape):
    return np.random.default_rng(100 + step).standard_normal(shape)


def run_minigan(opt_cls, kwargs, p0, skip=()):
    """STEPS steps on one float64 parameter; no gradient (so no update) at the steps in skip."""
    p = nn.Parameter(p0.copy())
    opt = opt_cls([p], **kwargs)
    for t in range(STEPS):
        p.grad = None if t in skip else mg.tensor(grads_for(t, p0.shape))
        opt.step()
    return p.numpy()


def sgd_ref(p, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, skip=()):
    buf = None
    for t in range(STEPS):
        if t in skip:
            continue
        g = grads_for(t, p.shape) + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def adam_ref(p, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, skip=()):
    (b1, b2), m, v, k = betas, np.zeros_like(p), np.zeros_like(p), 0
    for t in range(STEPS):
        if t in skip:
            continue
        k += 1  # this parameter's own step count, as PyTorch keeps it
        g = grads_for(t, p.shape) + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr / (1 - b1 ** k) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** k) + eps)
    return p


def rmsprop_ref(p, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, decay=0.0, skip=()):
    sq = np.zeros_like(p)
    for t in range(STEPS):  # t = the optimizer's iterations before this step (Keras)
        if t in skip:
            continue
        g = grads_for(t, p.shape) + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g * g
        p = p - lr / (1 + decay * t) * g / (np.sqrt(sq) + eps)
    return p


CASES = [
    (SGD, sgd_ref, {"lr": 0.1}),
    (SGD, sgd_ref, {"lr": 0.1, "momentum": 0.9}),
    (SGD, sgd_ref, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (SGD, sgd_ref, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1}),
    (Adam, adam_ref, {"lr": 0.01}),
    (Adam, adam_ref, {"lr": 2e-4, "betas": (0.5, 0.999), "weight_decay": 0.05}),
    (RMSprop, rmsprop_ref, {"lr": 0.01}),
    (RMSprop, rmsprop_ref, {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.1, "decay": 0.5}),
]


def case_id(c):
    return f"{c[0].__name__}{c[2]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_several_steps_against_numpy(case):
    opt_cls, ref, kwargs = case
    p0 = np.random.default_rng(0).standard_normal((3, 4))
    assert_close(run_minigan(opt_cls, kwargs, p0), ref(p0, **kwargs), 1e-12, 1e-14,
                 f"{opt_cls.__name__}({kwargs}) after {STEPS} steps")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_parameter_without_gradient_is_left_alone(case):
    """Steps with grad None change nothing; later steps go on as PyTorch's would."""
    opt_cls, ref, kwargs = case
    p0 = np.random.default_rng(1).standard_normal(5)
    skip = (0, 3)
    assert_close(run_minigan(opt_cls, kwargs, p0, skip), ref(p0, **kwargs, skip=skip), 1e-12,
                 1e-14, f"{opt_cls.__name__}({kwargs}) skipping steps {skip}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_state_dict_round_trip(case):
    """3 steps, save, 3 more == 3 steps, load into a fresh optimizer, 3 more."""
    opt_cls, _, kwargs = case
    p0 = np.random.default_rng(2).standard_normal((2, 3))
    a = nn.Parameter(p0.copy())
    opt_a = opt_cls([a], **kwargs)
    for t in range(3):
        a.grad = mg.tensor(grads_for(t, p0.shape))
        opt_a.step()
    sd, mid = opt_a.state_dict(), a.numpy()
    for t in range(3, 6):
        a.grad = mg.tensor(grads_for(t, p0.shape))
        opt_a.step()
    b = nn.Parameter(mid.copy())
    opt_b = opt_cls([b], lr=123.0)  # hyper-parameters come from the state dict
    opt_b.load_state_dict(sd)
    assert opt_b.defaults == opt_a.defaults
    for t in range(3, 6):
        b.grad = mg.tensor(grads_for(t, p0.shape))
        opt_b.step()
    assert_close(b.numpy(), a.numpy(), 0, 0, f"{opt_cls.__name__} resumed from its state dict")


def test_state_dict_is_a_copy_and_load_checks_shapes():
    p = nn.Parameter(np.ones(3))
    opt = Adam([p], lr=0.1)
    p.grad = mg.tensor(np.ones(3))
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][...] = 99.0
    assert not (opt.state[0]["exp_avg"] == 99.0).any()
    with pytest.raises(ValueError, match=r"state has 2 parameters, this optimizer 1"):
        opt.load_state_dict({**sd, "state": sd["state"] * 2})
    bad = {**sd, "state": [{"exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4)}]}
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(4,\), "
                                         r"parameter \(3,\)"):
        opt.load_state_dict(bad)


def test_bad_hyper_parameters():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="SGD: lr must be >= 0, got -1"):
        SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Adam got an empty parameter list"):
        Adam([])


def test_float32_parameters_stay_float32_and_in_place():
    layer = nn.Linear(3, 2)
    opt = Adam(layer.parameters(), lr=0.1)
    w = layer.weight.data
    x = mg.tensor(np.ones((4, 3), np.float32))
    (layer(x) ** 2).sum().backward()
    opt.step()
    assert layer.weight.data is w and w.dtype == np.float32
    assert opt.state[0]["exp_avg"].dtype == np.float32


def test_zero_grad():
    p = nn.Parameter(np.ones(2))
    opt = SGD([p], lr=0.1)
    p.grad = mg.tensor(np.ones(2))
    opt.zero_grad(set_to_none=False)
    assert (p.grad.data == 0).all()
    opt.zero_grad()
    assert p.grad is None


def test_adam_minimises_a_quadratic():
    target = np.array([1.0, -2.0, 3.0])
    p = nn.Parameter(np.zeros(3))
    opt = Adam([p], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        ((p - mg.tensor(target)) ** 2).sum().backward()
        opt.step()
    assert_close(p.numpy(), target, 0, 1e-3, "Adam on a quadratic")


def test_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    p0 = np.random.default_rng(3).standard_normal(6)
    for mine, theirs, kw in ((SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9,
                                                     "nesterov": True, "weight_decay": 0.01}),
                             (Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.01}),
                             (RMSprop, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9})):
        pt = torch.tensor(p0.copy(), requires_grad=True)
        opt = theirs([pt], **kw)
        for t in range(STEPS):
            pt.grad = torch.tensor(grads_for(t, p0.shape))
            opt.step()
        assert_close(run_minigan(mine, kw, p0), pt.detach().numpy(), 1e-12, 1e-14,
                     f"{mine.__name__} vs torch")


@pytest.mark.parametrize("decay", [None, 0.9])
@pytest.mark.parametrize("use_buffers", [False, True])
def test_averaged_model_against_the_closed_form(decay, use_buffers):
    """After weights w_1..w_T, the EMA is d^(T-1) w_1 + sum_{t>1} (1-d) d^(T-t) w_t and the
    equal-weight average is their mean; buffers are averaged or copied; counters are copied."""
    from minigan.optim import AveragedModel, get_ema_multi_avg_fn

    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    avg = AveragedModel(net, multi_avg_fn=decay and get_ema_multi_avg_fn(decay),
                        use_buffers=use_buffers)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(5):
        for p in net.parameters():
            p.data[...] = rng.standard_normal(p.shape)
        net._modules["1"].running_mean[...] = rng.standard_normal(4)
        seen.append([p.data.copy() for p in net.parameters()] + [net[1].running_mean.copy()])
        avg.update_parameters(net)
    weights = np.array([decay ** 4] + [(1 - decay) * decay ** (4 - t) for t in range(1, 5)]
                       if decay else [0.2] * 5)
    expected = [sum(w * s[i] for w, s in zip(weights, seen)) for i in range(len(seen[0]))]
    got = [p.data for p in avg.module.parameters()] + [avg.module[1].running_mean]
    for i, (g, e) in enumerate(zip(got[:-1], expected[:-1])):
        assert_close(g, e, 1e-12, 1e-12, f"averaged parameter {i} (decay {decay})")
    assert_close(got[-1], expected[-1] if use_buffers else seen[-1][-1], 1e-12, 1e-12,
                 f"running_mean with use_buffers={use_buffers}")
    assert int(avg.n_averaged) == 5 and list(avg.state_dict())[0] == "n_averaged"
    with pytest.raises(ValueError, match="EMA decay must be in"):
        get_ema_multi_avg_fn(1.0)
    with pytest.raises(ValueError, match="pass the model this average was made from"):
        avg.update_parameters(nn.Linear(3, 4))


def test_ema_rampup_against_the_closed_form():
    """With rampup r, update t (t - 1 before it) has decay min(d, 0.5 ** (1 / (r * t))): the
    half-life r * t; the weights after T updates are the product form of those decays."""
    from minigan.optim import AveragedModel, ema_decay, get_ema_multi_avg_fn

    d, r, T = 0.9, 0.25, 40
    decays = [min(d, 0.5 ** (1 / (r * t))) for t in range(2, T + 1)]     # updates 2..T
    assert decays[0] == 0.5 ** 2 and decays[-1] == d                    # ramps up to d
    assert [ema_decay(d, t - 1, r) for t in range(2, T + 1)] == decays
    assert ema_decay(d, 5, None) == d
    net = nn.Linear(2, 3).double()
    avg = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(d, rampup=r))
    rng = np.random.default_rng(2)
    seen = []
    for _ in range(T):
        net.weight.data[...] = rng.standard_normal((3, 2))
        seen.append(net.weight.data.copy())
        avg.update_parameters(net)
    weights = [np.prod(decays)] + [(1 - decays[t - 2]) * np.prod(decays[t - 1:])
                                   for t in range(2, T + 1)]
    assert abs(sum(weights) - 1) < 1e-12
    assert_close(avg.module.weight.data, sum(w * x for w, x in zip(weights, seen)), 1e-12, 1e-12,
                 "averaged weight with rampup")
    with pytest.raises(ValueError, match="EMA rampup must be a fraction > 0"):
        get_ema_multi_avg_fn(0.9, rampup=0.0)


def test_averaged_model_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel as TorchAveraged
    from torch.optim.swa_utils import get_ema_multi_avg_fn as torch_ema

    from minigan.optim import AveragedModel, get_ema_multi_avg_fn

    net, ref = nn.Linear(5, 3).double(), torch.nn.Linear(5, 3).double()
    ours = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.7))
    theirs = TorchAveraged(ref, multi_avg_fn=torch_ema(0.7))
    rng = np.random.default_rng(1)
    for _ in range(4):
        w, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
        net.weight.data[...], net.bias.data[...] = w, b
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(w))
            ref.bias.copy_(torch.from_numpy(b))
        ours.update_parameters(net)
        theirs.update_parameters(ref)
    mine, torch_sd = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(torch_sd)
    for k in mine:
        assert_close(mine[k], torch_sd[k].double().numpy(), 1e-12, 1e-12, f"{k} against torch")
