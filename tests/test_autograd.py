"""The autograd engine: accumulation, higher order, no_grad, deep graphs, freed graphs,
broadcasting."""

import numpy as np
import pytest

import minigan as mg
from minigan import Function, Tensor
from minigan import functional as F
from minigan.testing import assert_close


def leaf(a):
    return mg.tensor(np.asarray(a, np.float64), requires_grad=True)


def test_reused_tensor_accumulates_every_path():
    x = leaf([1.0, 2.0, 3.0])
    y = x * x + x * 3.0 + x  # d/dx = 2x + 4
    y.sum().backward()
    assert_close(x.grad.data, 2 * x.data + 4, 0, 0, "x used three times")
    z = leaf(2.0)
    w = z * z
    (w * w + w).backward()  # w reused: d/dz (z^4 + z^2) = 4z^3 + 2z
    assert_close(z.grad.data, 4 * 8 + 4, 0, 0, "w reused")


def test_grad_accumulates_across_backward_calls():
    x = leaf([1.0, -1.0])
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    assert_close(x.grad.data, [5.0, 5.0], 0, 0, "two backward calls add up")
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert_close(x.grad.data, [5.0 + 4, 5.0 - 4], 0, 0, "retain_graph, then again")


def test_grad_with_create_graph_gives_higher_derivatives():
    x = leaf([0.5, -2.0])
    (g,) = mg.grad((x ** 3).sum(), [x], create_graph=True)
    assert g.requires_grad
    assert_close(g.data, 3 * x.data ** 2, 1e-15, 0, "first derivative")
    (h,) = mg.grad(g.sum(), [x], create_graph=True)
    assert_close(h.data, 6 * x.data, 1e-15, 0, "second derivative")
    (k,) = mg.grad(h.sum(), [x])
    assert_close(k.data, [6.0, 6.0], 1e-15, 0, "third derivative")
    assert x.grad is None  # mg.grad returns gradients and leaves .grad alone


def test_backward_with_create_graph_leaves_a_differentiable_grad():
    x = leaf([1.5])
    F.tanh(x).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    (h,) = mg.grad(g.sum(), [x])
    t = np.tanh(1.5)
    assert_close(h.data, [-2 * t * (1 - t * t)], 1e-14, 0, "tanh''")


def test_grad_without_create_graph_has_no_graph():
    x = leaf([1.0, 2.0])
    (g,) = mg.grad((x * x).sum(), [x])
    assert not g.requires_grad and g.creator is None


def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with mg.no_grad():
        y = x * 2.0 + 1.0
        assert not mg.is_grad_enabled()
        with mg.enable_grad():
            z = x * 2.0
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad and z.creator is not None
    with pytest.raises(RuntimeError, match="does not require grad and has no graph"):
        y.sum().backward()


def test_no_grad_restores_the_flag_after_an_exception():
    with pytest.raises(KeyError), mg.no_grad():
        {}["missing"]
    assert mg.is_grad_enabled()


def test_detach_stops_the_gradient():
    x = leaf([3.0])
    y = x * x.detach()  # d/dx = x (the detached factor is a constant)
    y.backward()
    assert_close(x.grad.data, [3.0], 0, 0, "detach")


def test_deep_chain_without_recursion_error():
    """5000 ops deep: the topological sort is iterative."""
    x = leaf([1.0])
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.backward()
    assert_close(x.grad.data, [1.0001 ** 5000], 1e-10, 0, "5000-op chain")
    z = x
    for _ in range(1500):  # deeper than the default recursion limit, for the second order too
        z = F.tanh(z) * 1.0
    (g,) = mg.grad(z.sum(), [x], create_graph=True)
    (h,) = mg.grad(g.sum(), [x])
    assert np.isfinite(h.data).all()


def test_second_backward_says_to_retain_the_graph():
    x = leaf([1.0, 2.0])
    y = (F.tanh(x) * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*"
                                           "retain_graph=True"):
        y.backward()


def test_retain_graph_keeps_buffers():
    x = leaf([1.0, 2.0])
    y = F.sigmoid(x).sum()
    (a,) = mg.grad(y, [x], retain_graph=True)
    (b,) = mg.grad(y, [x])
    assert_close(a.data, b.data, 0, 0, "same gradient twice")


@pytest.mark.parametrize("sa,sb", [((3, 1), (1, 4)), ((2, 3), (3,)), ((), (2, 2)),
                                   ((1, 1, 3), (2, 1, 1)), ((4,), ())])
def test_broadcasting_gradients_sum_back(sa, sb):
    gen = np.random.default_rng(0)
    a, b = leaf(gen.standard_normal(sa)), leaf(gen.standard_normal(sb))
    out = np.broadcast_shapes(sa, sb)
    w = gen.standard_normal(out)
    (a * b * mg.tensor(w)).sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    want_a = np.broadcast_to(b.data, out) * w
    want_b = np.broadcast_to(a.data, out) * w
    for got, want, shape in ((a.grad, want_a, sa), (b.grad, want_b, sb)):
        lead = len(out) - len(shape)
        want = want.sum(axis=tuple(range(lead)))
        want = want.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)
        assert_close(got.data, want.reshape(shape), 1e-12, 1e-14, f"grad for {shape}")


def test_grad_of_unused_input():
    x, y = leaf([1.0]), leaf([2.0])
    with pytest.raises(RuntimeError, match=r"one of the inputs \(shape \(1,\)\) was not used.*"
                                           "allow_unused=True"):
        mg.grad((x * 2.0).sum(), [x, y])
    gx, gy = mg.grad((x * 2.0).sum(), [x, y], allow_unused=True)
    assert gy is None and gx.item() == 2.0


def test_backward_of_a_non_scalar_needs_a_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"needs a scalar output, got shape \(2,\)"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.array([1.0, 10.0]))
    assert_close(x.grad.data, [2.0, 20.0], 0, 0, "backward with a gradient")
    with pytest.raises(ValueError, match=r"grad shape \(3,\) does not match output shape \(2,\)"):
        (x * 2.0).backward(np.ones(3))


def test_a_function_with_a_wrong_gradient_shape_is_caught():
    class Bad(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy.sum()

    with pytest.raises(RuntimeError, match=r"Bad.backward returned a gradient of shape \(\) for "
                                           r"an input of shape \(3,\)"):
        Bad()(leaf([1.0, 2.0, 3.0])).sum().backward()


def test_multiple_outputs_and_unused_output():
    class Split(Function):
        def forward(self, x):
            return x * 2, x * 3

        def backward(self, g1, g2):
            return g1 * 2.0 + g2 * 3.0

    x = leaf([1.0, 2.0])
    a, b = Split()(x)
    a.sum().backward()  # b unused: its gradient is zero
    assert_close(x.grad.data, [2.0, 2.0], 0, 0, "one output used")
    x.grad = None
    a, b = Split()(x)
    (a * b).sum().backward()  # d/dx 6x^2 = 12x
    assert_close(x.grad.data, 12 * x.data, 0, 0, "both outputs used")


def test_dropped_outputs_are_rebuilt_for_double_backward():
    """Tanh's backward uses its output; the graph holds outputs weakly and rebuilds them."""
    x = leaf([0.3, -0.7])
    (g,) = mg.grad(F.tanh(x).sum(), [x], create_graph=True)  # the tanh output is gone now
    (h,) = mg.grad(g.sum(), [x])
    t = np.tanh(x.data)
    assert_close(h.data, -2 * t * (1 - t * t), 1e-14, 0, "tanh'' from a rebuilt output")


def test_tensor_basics():
    x = mg.tensor([1.0, 2.0])
    assert x.dtype == np.float32 and x.device == "cpu" and x.is_leaf and not x.requires_grad
    assert isinstance(x.numpy(), np.ndarray) and len(x) == 2
    with pytest.raises(TypeError, match="only float tensors can require gradients, got int64"):
        mg.tensor(np.arange(3), requires_grad=True)
    assert "requires_grad=True" in repr(leaf([1.0]))
    assert isinstance(np.ones(2) * x, Tensor)  # ndarray defers to Tensor


# ---- Tensor.register_hook ------------------------------------------------------------------

def test_hook_on_an_intermediate_sees_and_scales_its_gradient():
    x = leaf([1.0, 2.0, 3.0])
    h = x * 2.0
    seen = []
    h.register_hook(lambda g: seen.append(g.numpy()) or g * 3.0)
    ((h ** 2).sum()).backward()
    # d/dh sum(h^2) = 2h = 4x; the hook triples it; dh/dx = 2, so x.grad = 24x
    assert_close(seen[0], [4.0, 8.0, 12.0], 0, 1e-12, "gradient seen by the hook")
    assert_close(x.grad.data, [24.0, 48.0, 72.0], 0, 1e-12, "x.grad through a tripling hook")


def test_leaf_hook_sees_the_summed_gradient_once_before_accumulation():
    x = leaf([1.0, -2.0])
    x.grad = mg.tensor(np.array([100.0, 100.0]))
    calls = []
    x.register_hook(lambda g: calls.append(g.numpy()) or g * 10.0)
    ((x * x).sum() + (3.0 * x).sum()).backward()
    assert len(calls) == 1, f"leaf hook ran {len(calls)} times, expected once"
    assert_close(calls[0], [5.0, -1.0], 0, 1e-12, "leaf hook input (2x + 3)")
    assert_close(x.grad.data, [150.0, 90.0], 0, 1e-12, "x.grad = 100 + 10 (2x + 3)")


def test_hook_on_the_output_and_on_a_dropped_intermediate():
    x = leaf([1.0, 2.0])
    h = x * x
    h.register_hook(lambda g: g + 1.0)         # survives `del h`: held by the Function
    y = h.sum()
    y.register_hook(lambda g: g * 5.0)
    del h
    y.backward()
    assert_close(x.grad.data, [12.0, 24.0], 0, 1e-12, "x.grad = (5 + 1) 2x")


def test_several_hooks_run_in_registration_order_and_remove():
    x = leaf([2.0])
    h = x * 1.0
    first = h.register_hook(lambda g: g + 1.0)
    h.register_hook(lambda g: g * 2.0)
    h.sum().backward(retain_graph=True)
    assert_close(x.grad.data, [4.0], 0, 0, "(1 + 1) * 2")
    first.remove()
    first.remove()                               # a second remove is harmless
    x.grad = None
    h.sum().backward(retain_graph=True)
    assert_close(x.grad.data, [2.0], 0, 0, "after removing the first hook")
    x.grad = None
    with x.register_hook(lambda g: g * 0.0):
        h.sum().backward(retain_graph=True)
    assert_close(x.grad.data, [0.0], 0, 0, "inside the with block")
    x.grad = None
    h.sum().backward()
    assert_close(x.grad.data, [2.0], 0, 0, "after the with block")


def test_hook_applies_to_grad_results_and_needs_a_graph():
    x = leaf([1.0, 3.0])
    x.register_hook(lambda g: -g)
    (g,) = mg.grad((x * x).sum(), [x])
    assert_close(g.data, [-2.0, -6.0], 0, 0, "grad() through a negating leaf hook")
    assert x.grad is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor(np.ones(2)).register_hook(lambda g: g)


def _penalty_numpy(x, w, scale):
    g = scale * (1 - np.tanh(x * w) ** 2) * w     # d/dx of sum(tanh(x w)), scaled
    return (g ** 2).sum()


def _penalty_grad(x0, w0, hooked: bool, keep_hook: bool = False):
    """d/dw of sum((d/dx sum(tanh(x w)) * 2)^2), the factor 2 from a hook or written out."""
    x, w = leaf(x0), leaf(w0)
    h = x * w                                     # (2, 3)
    seen = []
    if hooked:
        def double(g):
            seen.append(g.requires_grad)
            return g * 2.0
        handle = h.register_hook(double)
        out = F.tanh(h).sum()
    else:
        out = (F.tanh(h) * 2.0).sum()             # the same first gradient, written out
    (g,) = mg.grad(out, [x], create_graph=True)
    if hooked and not keep_hook:
        handle.remove()                           # the second sweep is then a true derivative
    (g * g).sum().backward()
    return w.grad.numpy(), seen


def test_hook_under_create_graph_gradient_penalty():
    rng = np.random.default_rng(0)
    x0, w0 = rng.standard_normal((2, 3)), rng.standard_normal(3)
    hooked, seen = _penalty_grad(x0, w0, True)
    assert seen == [True], f"under create_graph the hook gets a graph Tensor, got {seen}"
    plain, _ = _penalty_grad(x0, w0, False)
    assert_close(hooked, plain, 1e-12, 1e-12, "penalty gradient, hooked vs rewritten")
    eps, fd = 1e-6, np.zeros(3)
    for i in range(3):
        e = np.eye(3)[i] * eps
        fd[i] = (_penalty_numpy(x0, w0 + e, 2.0) - _penalty_numpy(x0, w0 - e, 2.0)) / (2 * eps)
    assert_close(hooked, fd, 1e-6, 1e-8, "penalty gradient vs central differences")


def test_a_kept_hook_also_runs_in_the_second_sweep_as_in_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x0, w0 = rng.standard_normal((2, 3)), rng.standard_normal(3)
    got, seen = _penalty_grad(x0, w0, True, keep_hook=True)
    assert seen == [True, False], f"hook calls (requires_grad of what it saw): {seen}"
    x, w = (torch.tensor(a, requires_grad=True) for a in (x0, w0))
    h = x * w
    h.register_hook(lambda g: g * 2.0)
    (g,) = torch.autograd.grad(torch.tanh(h).sum(), [x], create_graph=True)
    (g * g).sum().backward()
    assert_close(got, w.grad.numpy(), 1e-12, 1e-12, "kept hook, minigan vs torch")
