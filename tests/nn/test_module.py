"""Module bookkeeping: state_dict names as PyTorch's, loading errors, train/eval, parameters,
weight layouts and default initialisation."""

import math

import numpy as np
import pytest

import minigan as mg
from minigan import functional as F
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
        if a.size >= 100:  # fills the interval (all of n draws under 0.9 b: 0.9^n, 3e-5 at 100)
            assert np.abs(a).max() > 0.9 * bound
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


# ---- hooks ---------------------------------------------------------------------------------

def _linear(w, b):
    lin = nn.Linear(w.shape[1], w.shape[0]).double()
    lin.weight.data[...] = w
    lin.bias.data[...] = b
    return lin


W = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])      # (out 2, in 3)
B = np.array([0.5, -0.5])
X = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])      # (N 2, in 3)


def test_module_has_no_hook_table_until_a_hook_is_registered():
    lin = _linear(W, B)
    assert lin._hooks is None, "a module without hooks must take the plain path"
    lin.register_forward_hook(lambda m, a, y: None).remove()
    assert_close(lin(mg.tensor(X)).data, X @ W.T + B, 0, 1e-12, "after removing the hook")
    assert lin._hooks is None, "once every hook is removed, calls take the plain path again"


def test_forward_pre_hook_and_forward_hook_replace_args_and_output():
    lin = _linear(W, B)
    calls = []
    pre = lin.register_forward_pre_hook(lambda m, args: (args[0] * 2.0,))
    lin.register_forward_hook(lambda m, args, y: calls.append(("first", y.numpy())))
    lin.register_forward_hook(lambda m, args, y: y + 100.0)
    lin.register_forward_hook(lambda m, args, y: calls.append(("third", y.numpy())))
    y = lin(mg.tensor(X))
    want = (2 * X) @ W.T + B
    assert_close(calls[0][1], want, 0, 1e-12, "first forward hook sees the pre-hooked input")
    assert_close(calls[1][1], want + 100, 0, 1e-12, "third hook sees the second's output")
    assert_close(y.data, want + 100, 0, 1e-12, "output replaced by a forward hook")
    pre.remove()
    assert_close(lin(mg.tensor(X)).data, X @ W.T + B + 100, 0, 1e-12, "after removing the "
                 "pre-hook")


def test_full_backward_hook_sees_and_replaces_grad_input():
    lin = _linear(W, B)
    x = mg.tensor(X, requires_grad=True)
    seen = {}

    def hook(m, grad_input, grad_output):
        seen["in"], seen["out"] = grad_input, grad_output
        return (grad_input[0] * 10.0,)

    with lin.register_full_backward_hook(hook):
        y = lin(x)                                  # (2, 2)
        ((y * y).sum() * 0.5).backward()
    gy = X @ W.T + B                                 # d/dy of sum(y^2)/2
    assert len(seen["out"]) == 1 and len(seen["in"]) == 1
    assert_close(seen["out"][0].data, gy, 0, 1e-12, "grad_output")
    assert_close(seen["in"][0].data, gy @ W, 0, 1e-12, "grad_input")
    assert_close(x.grad.data, 10 * gy @ W, 0, 1e-12, "x.grad after grad_input * 10")
    assert_close(lin.weight.grad.data, gy.T @ X, 0, 1e-12, "weight grad is untouched")
    x.grad = None
    ((lin(x) * lin(x)).sum() * 0.5).backward()
    assert_close(x.grad.data, gy @ W, 0, 1e-12, "hook removed by the with block")


def test_full_backward_hook_with_an_input_that_needs_no_grad():
    net = nn.Sequential(_linear(W, B), nn.Tanh())
    seen = []
    net[0].register_full_backward_hook(lambda m, gi, go: seen.append((gi, go)))
    net(mg.tensor(X)).sum().backward()
    y = np.tanh(X @ W.T + B)
    assert len(seen) == 1 and seen[0][0] == (None,), f"grad_input should be (None,): {seen}"
    assert_close(seen[0][1][0].data, 1 - y ** 2, 0, 1e-12, "grad_output of the first layer")
    assert_close(net[0].weight.grad.data, (1 - y ** 2).T @ X, 0, 1e-12, "weight grad")


def test_hooked_module_keeps_second_derivatives():
    def penalty_grad(with_hooks: bool):
        mg.manual_seed(3)
        net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1)).double()
        if with_hooks:
            for m in net.modules():
                m.register_forward_pre_hook(lambda m, a: None)
                m.register_forward_hook(lambda m, a, y: None)
                m.register_full_backward_hook(lambda m, gi, go: None)
        x = mg.tensor(X, requires_grad=True)
        (g,) = mg.grad(F.tanh(net(x)).sum(), [x], create_graph=True)
        ((g * g).sum()).backward()
        return [p.grad.numpy() for p in net.parameters()]

    for got, want in zip(penalty_grad(True), penalty_grad(False)):
        assert_close(got, want, 1e-12, 1e-12, "gradient-penalty parameter gradient, hooked")
