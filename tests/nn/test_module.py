"""Module bookkeeping: state_dict names as PyTorch's, loading errors, train/eval, parameters,
weight layouts and default initialisation."""

import math

import numpy as np
import pytest

import minigan as mg
from minigan import nn
from minigan.nn import init
from minigan.testing import assert_close


def small_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 2))


def test_state_dict_keys_are_pytorch_names():
    sd = small_net().state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias"]
    assert sd["0.weight"].shape == (4, 1, 3, 3) and sd["4.weight"].shape == (2, 100)
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"] == 0
    assert all(isinstance(v, np.ndarray) for v in sd.values())


def test_state_dict_is_a_copy_and_round_trips():
    mg.manual_seed(0)
    a, b = small_net(), small_net()
    x = mg.tensor(np.random.default_rng(0).standard_normal((3, 1, 5, 5)).astype(np.float32))
    a(x)  # one training step of batch statistics
    sd = a.state_dict()
    sd["0.weight"][...] = 7.0  # editing the copy leaves the model alone
    assert not (a[0].weight.data == 7.0).any()
    sd = a.state_dict()
    b.load_state_dict(sd)
    assert int(b[1].num_batches_tracked) == 1
    for k, v in b.state_dict().items():
        assert_close(v, sd[k], 0, 0, k)
    a.eval(), b.eval()
    assert_close(b(x).data, a(x).data, 0, 0, "same state, same output")


def test_load_state_dict_names_a_missing_key():
    net = small_net()
    sd = net.state_dict()
    del sd["1.running_var"]
    with pytest.raises(KeyError, match=r"missing keys \['1.running_var'\]"):
        net.load_state_dict(sd)
    sd = net.state_dict()
    sd["5.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"unexpected keys \['5.weight'\]"):
        net.load_state_dict(sd)
    net.load_state_dict(sd, strict=False)  # extra keys are ignored when not strict


def test_load_state_dict_names_a_shape_mismatch():
    net = small_net()
    sd = net.state_dict()
    sd["4.weight"] = np.zeros((3, 100), np.float32)
    with pytest.raises(ValueError, match=r"4\.weight has shape \(2, 100\) here but \(3, 100\) "
                                         r"in the state dict"):
        net.load_state_dict(sd)


def test_train_and_eval_reach_every_submodule():
    net = nn.Sequential(small_net(), nn.Dropout(0.5))
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_batchnorm_counts_batches_only_in_training():
    bn = nn.BatchNorm1d(3)
    x = mg.tensor(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32))
    bn(x), bn(x)
    assert int(bn.num_batches_tracked) == 2
    rm = bn.running_mean.copy()
    bn.eval()
    bn(x)
    assert int(bn.num_batches_tracked) == 2 and (bn.running_mean == rm).all()


def test_parameters_count_and_names():
    net = small_net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert sum(p.size for p in net.parameters()) == (36 + 4) + (4 + 4) + (200 + 2)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == ["1.running_mean", "1.running_var",
                                                   "1.num_batches_tracked"]
    assert len(list(nn.Linear(3, 2, bias=False).parameters())) == 1


def test_conv_transpose2d_weight_layout_is_cin_cout_kh_kw():
    layer = nn.ConvTranspose2d(3, 5, (4, 2), stride=2, padding=1)
    assert layer.weight.shape == (3, 5, 4, 2) and layer.bias.shape == (5,)
    assert nn.Conv2d(3, 5, (4, 2)).weight.shape == (5, 3, 4, 2)
    y = layer(mg.tensor(np.zeros((1, 3, 3, 3), np.float32)))
    assert y.shape == (1, 5, 6, 4)  # (3-1)*2 - 2 + 4, (3-1)*2 - 2 + 2


@pytest.mark.parametrize("make,fan_in", [
    (lambda: nn.Linear(50, 40), 50),
    (lambda: nn.Conv2d(6, 40, 3), 6 * 9),
    (lambda: nn.ConvTranspose2d(40, 6, 3), 6 * 9),  # PyTorch: fan-in from weight dim 1
])
def test_default_init_is_kaiming_uniform_a_sqrt5(make, fan_in):
    """kaiming_uniform(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(fan_in), and the
    bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn's default."""
    mg.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    for t in (layer.weight, layer.bias):
        a = t.numpy()
        assert a.dtype == np.float32
        assert np.abs(a).max() <= bound
        assert np.abs(a).max() > 0.9 * bound  # fills the interval ...
        if a.size >= 1000:  # ... uniformly: std of U(-b, b) is b / sqrt(3)
            assert abs(a.std() - bound / math.sqrt(3)) < 0.05 * bound


def test_init_functions():
    mg.manual_seed(1)
    t = nn.Parameter(np.zeros((200, 100), np.float32))
    init.normal_(t, 0.0, 0.02)
    assert abs(t.numpy().std() - 0.02) < 0.001 and abs(t.numpy().mean()) < 0.001
    init.constant_(t, 0.5)
    assert (t.numpy() == 0.5).all()
    init.xavier_uniform_(t)
    assert np.abs(t.numpy()).max() <= math.sqrt(6 / 300)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.fan_in_and_fan_out(nn.Parameter(np.zeros(3)))


def test_same_seed_same_weights():
    mg.manual_seed(5)
    a = small_net().state_dict()
    mg.manual_seed(5)
    b = small_net().state_dict()
    for k in a:
        assert_close(a[k], b[k], 0, 0, k)


def test_double_and_zero_grad():
    net = small_net().double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net[1].running_mean.dtype == np.float64
    assert net[1].num_batches_tracked.dtype == np.int64  # integers are not cast
    x = mg.tensor(np.ones((2, 1, 5, 5)))
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_module_needs_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.w = 1

    with pytest.raises(RuntimeError, match=r"Broken: call super\(\).__init__\(\) first"):
        Broken()


def test_load_state_dict_from_torch_if_installed():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, 1, 1), torch.nn.BatchNorm2d(4),
                               torch.nn.LeakyReLU(0.2), torch.nn.Flatten(),
                               torch.nn.Linear(100, 2)).double()
    x = np.random.default_rng(2).standard_normal((3, 1, 5, 5))
    tnet(torch.tensor(x))  # move the running statistics
    net = small_net().double()
    net.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    tnet.eval(), net.eval()
    assert_close(net(mg.tensor(x)).data, tnet(torch.tensor(x)).detach().numpy(), 1e-10, 1e-12,
                 "the same state dict gives the same function")


def test_nn_functional_is_importable_as_in_pytorch():
    import importlib

    import minigan.functional

    assert importlib.import_module("minigan.nn.functional") is minigan.functional
