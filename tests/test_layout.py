"""Batch-last memory (kernels/layout.py): convolution outputs are (N, C, H, W) views of
(C, H, W, N) memory, and the layers after them keep that layout. Every test compares against
the same op on an ordinary C-contiguous array (whose paths the other tests check against naive
loops and finite differences) or against finite differences directly."""

import numpy as np
import pytest

import minigan as mg
from minigan import functional as F
from minigan.gan.models import dcgan
from minigan.gradcheck import gradcheck, gradgradcheck
from minigan.kernels import activation, dropout, layout
from minigan.testing import assert_close, splitmix_uniform


def batch_last_array(shape, seed=0, dtype=np.float64):
    """An (N, ...) array of `shape` whose memory is C-contiguous (..., N)."""
    mem = np.random.default_rng(seed).standard_normal((*shape[1:], shape[0])).astype(dtype)
    return mem.transpose(len(shape) - 1, *range(len(shape) - 1))


def test_batch_last_detection():
    a = batch_last_array((4, 3, 5, 2))
    assert layout.batch_last(a) and not a.flags.c_contiguous
    assert not layout.batch_last(np.ascontiguousarray(a))
    assert not layout.batch_last(a.transpose(0, 2, 1, 3))  # some other permutation
    assert not layout.batch_last(batch_last_array((1, 3, 5, 2)))  # N = 1 is just contiguous
    assert not layout.batch_last(np.zeros(7))


@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (70, 130), (2, 1, 3, 1)])
def test_copies_between_layouts_are_exact(shape):
    a = batch_last_array(shape)
    first = layout.batch_first_copy(a)
    assert first.flags.c_contiguous and np.array_equal(first, a)
    back = layout.batch_last_copy(first)
    assert layout.batch_last(back) and np.array_equal(back, a)


def test_pointwise_ops_keep_the_layout_of_their_first_input():
    x = batch_last_array((5, 3, 4, 4), 1)
    gy = batch_last_array((5, 3, 4, 4), 2)
    y = layout.in_memory_order(activation.leaky_relu, x, slope=0.3)
    assert layout.batch_last(y)
    assert np.array_equal(y, activation.leaky_relu(np.ascontiguousarray(x), 0.3))
    want = activation.leaky_relu_grad(np.ascontiguousarray(x), np.ascontiguousarray(gy), 0.3)
    for a, b in ((x, gy), (x, np.ascontiguousarray(gy)), (np.ascontiguousarray(x), gy)):
        g = layout.in_memory_order(activation.leaky_relu_grad, a, b, slope=0.3)
        assert layout.batch_last(g) == layout.batch_last(a)
        assert np.array_equal(g, want)


def test_dropout_mask_does_not_depend_on_the_layout():
    x = batch_last_array((64, 8, 9, 9), 3, np.float32)  # above the parallel threshold
    y, mask = dropout.dropout(x, 0.3, 4242)
    y_ref, mask_ref = dropout.dropout(np.ascontiguousarray(x), 0.3, 4242)
    assert layout.batch_last(y) and layout.batch_last(mask)
    assert np.array_equal(mask, mask_ref) and np.array_equal(y, y_ref)
    keep = splitmix_uniform(4242, x.size).reshape(x.shape) >= 0.3  # by (N, C, H, W) index
    assert np.array_equal(mask != 0, keep)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_on_batch_last_input_matches_contiguous(training):
    c = 3
    x = batch_last_array((6, c, 4, 5), 4)
    gy = np.random.default_rng(5).standard_normal(x.shape)
    outs = []
    for a in (x, np.ascontiguousarray(x)):
        xt = mg.tensor(a, requires_grad=True)
        w = mg.tensor(np.linspace(0.5, 1.5, c), requires_grad=True)
        b = mg.tensor(np.linspace(-1, 1, c), requires_grad=True)
        rm, rv = np.zeros(c), np.ones(c)
        y = F.batch_norm(xt, rm, rv, w, b, training=training)
        outs.append((y, *mg.grad(y, [xt, w, b], mg.tensor(gy)), rm, rv))
    (y1, *rest1), (y2, *rest2) = outs
    assert layout.batch_last(y1.data)
    for a, b, what in zip((y1, *rest1), (y2, *rest2), ("y", "gx", "gw", "gb", "rm", "rv")):
        a, b = (t.data if isinstance(t, mg.Tensor) else t for t in (a, b))
        assert_close(a, b, 1e-12, 1e-12, f"batch_norm on batch-last input: {what}")


def test_flatten_of_batch_last_input_and_its_gradient():
    x = mg.tensor(batch_last_array((5, 4, 3, 3), 6), requires_grad=True)
    y = x.reshape(5, -1)  # (C*H*W, N) memory: a view, which matmul takes as a transposed matrix
    assert np.shares_memory(y.data, x.data) and layout.batch_last(y.data)
    assert np.array_equal(y.data, np.ascontiguousarray(x.data).reshape(5, -1))
    z = x.reshape(-1)  # no view can mix the batch with the rest: a copy, in (N, ...) order
    assert z.data.flags.c_contiguous
    assert np.array_equal(z.data, np.ascontiguousarray(x.data).reshape(-1))
    gy = np.random.default_rng(7).standard_normal(y.shape)
    (gx,) = mg.grad(y, [x], mg.tensor(gy))
    assert layout.batch_last(gx.data)  # handed back in the layout of the input
    assert np.array_equal(gx.data, gy.reshape(x.shape))


def test_conv_batchnorm_dropout_flatten_chain_float64_first_and_second_order():
    """conv2d -> batchnorm -> leaky_relu -> dropout -> flatten -> linear runs on batch-last
    memory from the convolution on; its derivatives against central differences."""
    gen = np.random.default_rng(8)
    x = gen.standard_normal((3, 2, 5, 5))
    w = gen.standard_normal((4, 2, 3, 3)) * 0.5
    lin = gen.standard_normal((1, 4 * 3 * 3)) * 0.3
    key = 1234

    def net(x, w, lin):
        h = F.conv2d(x, w, None, 2, 1)
        assert layout.batch_last(h.data)
        h = F.batch_norm(h, None, None, training=True)
        h = F.leaky_relu(h, 0.2)
        mg.manual_seed(key)  # the same dropout mask at every evaluation
        h = F.dropout(h, 0.25)
        return F.linear(h.reshape(3, -1), lin)

    inputs = [mg.tensor(x, requires_grad=True), mg.tensor(w, requires_grad=True),
              mg.tensor(lin, requires_grad=True)]
    assert gradcheck(net, inputs, rtol=1e-5, atol=1e-7)
    assert gradgradcheck(net, inputs, rtol=1e-4, atol=1e-6)


def test_dcgan_float32_step_matches_float64():
    """The float32 DCGAN (shifted GEMMs, batch-last memory) against the same nets in float64
    (im2col + GEMM): D's and G's losses and every parameter gradient agree to float32 accuracy
    (relative to each gradient's largest entry; a 12-layer float32 chain is good to ~1e-5)."""
    results = []
    for dtype in (np.float32, np.float64):
        mg.manual_seed(0)
        G, D = dcgan((1, 28, 28), 16, width=16)
        G.to(dtype=dtype)
        D.to(dtype=dtype)
        gen = np.random.default_rng(9)
        z = mg.tensor(gen.standard_normal((6, 16)).astype(dtype))
        real = mg.tensor(gen.uniform(-1, 1, (6, 1, 28, 28)).astype(dtype))
        ones, zeros = np.ones((6, 1), dtype), np.zeros((6, 1), dtype)
        mg.manual_seed(1)
        fake = G(z)
        loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        gd = mg.grad(loss_d, list(D.parameters()))
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        gg = mg.grad(loss_g, list(G.parameters()))
        results.append((loss_d.item(), loss_g.item(), [g.data for g in gd + gg]))
    (d32, g32, grads32), (d64, g64, grads64) = results
    assert_close(np.array([d32, g32]), np.array([d64, g64]), 1e-5, 0, "losses")
    for a, b in zip(grads32, grads64):
        assert a.dtype == np.float32 and b.dtype == np.float64
        assert_close(a, b, 0, 1e-4 * np.abs(b).max(), f"gradient of shape {b.shape}")


def test_linear_output_is_batch_last_and_batchnorm1d_reads_it_as_rows():
    gen = np.random.default_rng(10)
    x = mg.tensor(gen.standard_normal((6, 5)), requires_grad=True)
    w = mg.tensor(gen.standard_normal((7, 5)), requires_grad=True)
    y = F.linear(x, w)
    assert layout.batch_last(y.data)
    assert_close(y.data, x.data @ w.data.T, 1e-14, 1e-14, "linear")
    z = F.batch_norm(y, None, None, training=True)
    assert layout.batch_last(z.data)
    z_ref = F.batch_norm(mg.tensor(np.ascontiguousarray(y.data)), None, None, training=True)
    assert_close(z.data, z_ref.data, 1e-12, 1e-12, "batchnorm1d on batch-last rows")
    assert gradcheck(lambda x, w: F.batch_norm(F.linear(x, w), None, None, training=True) ** 2,
                     [x, w], rtol=1e-6, atol=1e-8)


def test_upsample_and_its_adjoint_keep_batch_last_memory():
    x = batch_last_array((3, 2, 4, 5), 11)
    up = F.upsample_nearest2d(mg.tensor(x), 2)
    assert layout.batch_last(up.data)
    assert np.array_equal(up.data, np.ascontiguousarray(x).repeat(2, axis=2).repeat(2, axis=3))
    xt = mg.tensor(x, requires_grad=True)
    gy = batch_last_array((3, 2, 8, 10), 12)
    (gx,) = mg.grad(F.upsample_nearest2d(xt, 2), [xt], mg.tensor(gy))
    assert layout.batch_last(gx.data)
    want = np.ascontiguousarray(gy).reshape(3, 2, 4, 2, 5, 2).sum(axis=(3, 5))
    assert_close(gx.data, want, 1e-14, 1e-14, "upsample gradient (block sums)")
    assert gradgradcheck(lambda a: F.upsample_nearest2d(a, 2) ** 2, [xt])
