import numpy as np
import pytest

import minigan
from minigan import nn
from minigan.gan import ARCHS, build, recipe_for
from minigan.optim import Adam, RMSprop

# (arch, image shape); width 4 keeps every net small enough to run in milliseconds
SHAPES = [
    ("dcgan", (1, 28, 28)), ("dcgan", (3, 32, 32)), ("dcgan", (1, 8, 12)),
    ("atienza", (1, 28, 28)), ("atienza", (3, 16, 16)),
    ("dense", (1, 28, 28)), ("dense", (3, 10, 6)),
    ("radford", (1, 28, 28)), ("radford", (3, 32, 32)), ("radford", (1, 8, 8)),
    ("radford", (1, 14, 14)), ("radford", (3, 64, 64)),
]


@pytest.mark.parametrize("arch,shape", SHAPES)
def test_output_shapes(arch, shape):
    minigan.manual_seed(0)
    G, D, _ = build(arch, shape, z_dim=16, width=4)
    z = minigan.randn(3, 16)
    x = G(z)
    assert x.shape == (3, *shape), f"{arch} G: expected {(3, *shape)}, got {x.shape}"
    assert np.abs(x.numpy()).max() <= 1.0, f"{arch} G output leaves [-1, 1]"
    logits = D(x)
    assert logits.shape == (3, 1), f"{arch} D on {shape}: expected (3, 1), got {logits.shape}"
    G.eval(), D.eval()
    assert G(z).shape == (3, *shape) and D(x).shape == (3, 1)


def test_dcgan_matches_the_tutorial_layer_by_layer():
    G, D, recipe = build("dcgan")
    sizes = [tuple(p.shape) for p in G.parameters()]
    assert sizes[0] == (12544, 100)                              # Dense 7*7*256, no bias
    convs = [s for s in sizes if len(s) == 4]
    assert convs == [(256, 128, 5, 5), (128, 64, 5, 5), (64, 1, 5, 5)]
    assert sum(p.size for p in G.parameters()) == 2_305_472      # 2,330,944 in Keras incl. BN
    assert [tuple(p.shape) for p in D.parameters()][-2] == (1, 6272)
    assert sum(p.size for p in D.parameters()) == 212_865        # Keras's summary: 212,865
    assert (recipe.lr_g, recipe.beta1, recipe.batch_size) == (2e-4, 0.5, 64)
    tutorial = recipe_for("dcgan", "tutorial")
    assert (tutorial.lr_g, tutorial.beta1, tutorial.batch_size) == (1e-4, 0.9, 256)


def test_atienza_recipe_and_batchnorm_momentum_convention():
    G, D, recipe = build("atienza")
    bns = [m for m in G.modules() if type(m).__name__.startswith("BatchNorm")]
    assert bns and all(m.momentum == pytest.approx(0.1) for m in bns)   # Keras momentum 0.9
    opt_g, opt_d = recipe.optimizers(G, D)
    assert isinstance(opt_g, RMSprop) and isinstance(opt_d, RMSprop)
    assert (opt_d.lr, opt_d.defaults["decay"]) == (2e-4, 6e-8)
    assert (opt_g.lr, opt_g.defaults["decay"]) == (1e-4, 3e-8)


def test_radford_init():
    minigan.manual_seed(0)
    G, D, recipe = build("radford", (1, 64, 64))
    conv = [p for n, p in D.named_parameters() if p.ndim == 4]
    w = np.concatenate([p.numpy().ravel() for p in conv])
    assert abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002
    bn = [m.weight.numpy() for m in G.modules() if type(m).__name__ == "BatchNorm2d"]
    assert abs(np.concatenate(bn).mean() - 1.0) < 0.01
    opt_g, _ = recipe.optimizers(G, D)
    assert isinstance(opt_g, Adam) and opt_g.defaults["betas"] == (0.5, 0.999)


@pytest.mark.parametrize("arch,shape,words", [
    ("dcgan", (1, 30, 30), "multiples of 4"),
    ("atienza", (2, 28, 28), "C in {1, 3}"),
    ("radford", (1, 24, 24), "4*2^k or 7*2^k"),
    ("radford", (1, 28, 32), "square"),
    ("radford", (1, 4, 4), "k >= 1"),
    ("dense", (4, 8, 8), "C in {1, 3}"),
])
def test_wrong_image_shape_names_the_arch_and_what_it_takes(arch, shape, words):
    with pytest.raises(ValueError) as e:
        build(arch, shape)
    assert repr(arch) in str(e.value) and words in str(e.value) and str(shape) in str(e.value)


def test_unknown_arch_and_recipe():
    with pytest.raises(ValueError, match="choose one of dcgan, atienza, dense, radford"):
        build("resnet")
    with pytest.raises(ValueError, match="tutorial"):
        build("dcgan", recipe="fast")
    assert set(ARCHS) == {"dcgan", "atienza", "dense", "radford"}


def test_recipe_overrides():
    r = recipe_for("dcgan").with_overrides(lr=1e-3, beta1=0.9, batch_size=32)
    assert (r.lr_d, r.lr_g, r.beta1, r.batch_size) == (1e-3, 1e-3, 0.9, 32)
    r = recipe_for("atienza").with_overrides(lr_g=5e-5)
    assert (r.lr_d, r.lr_g) == (2e-4, 5e-5)
    r = recipe_for("dcgan").with_overrides(beta2=0.99)
    assert (r.beta1, r.beta2) == (0.5, 0.99)
    assert recipe_for("dcgan").beta2 == 0.999


def test_d_depth_3_adds_one_stride_2_convolution_to_the_tutorials_d_and_leaves_g_as_it_was():
    minigan.manual_seed(0)
    G0, D0, _ = build("dcgan", width=32)
    minigan.manual_seed(0)
    G3, D3, _ = build("dcgan", width=32, d_depth=3, d_dropout=0.0)
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
             for m in D3.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(1, 32, (5, 5), (2, 2), (2, 2)), (32, 64, (5, 5), (2, 2), (2, 2)),
                     (64, 128, (3, 3), (2, 2), (1, 1))]
    assert D3[-1].in_features == 128 * 4 * 4                     # 28 -> 14 -> 7 -> 4
    assert all(m.p == 0.0 for m in D3.modules() if isinstance(m, nn.Dropout))
    assert D3(minigan.randn(5, 1, 28, 28)).shape == (5, 1)
    for (ka, va), (kb, vb) in zip(G0.state_dict().items(), G3.state_dict().items(), strict=True):
        assert ka == kb and np.array_equal(va, vb)
    _, D2, _ = build("dcgan", width=32, d_depth=2)            # the tutorial's, as without it
    assert len(D2) == len(D0) and D2[-1].in_features == 64 * 7 * 7
    _, D12, _ = build("dcgan", (3, 12, 12), width=4, d_depth=3)      # odd maps round up: 3 -> 2
    assert D12[-1].in_features == 16 * 2 * 2 and D12(minigan.randn(2, 3, 12, 12)).shape == (2, 1)
    with pytest.raises(ValueError, match="d_depth of arch 'dcgan' must be 2 .* or 3"):
        build("dcgan", d_depth=4)
    with pytest.raises(ValueError, match="d_depth applies to arch 'dcgan'.*not 'radford'"):
        build("radford", d_depth=3)


def test_g_kernel_3_shrinks_gs_first_transposed_convolution_and_leaves_d_as_it_was():
    minigan.manual_seed(0)
    G0, D0, _ = build("dcgan", width=32)
    minigan.manual_seed(0)
    G3, D3, _ = build("dcgan", width=32, g_kernel=3)
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
             for m in G3.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convs == [(128, 64, (3, 3), (1, 1), (1, 1)), (64, 32, (5, 5), (2, 2), (2, 2)),
                     (32, 1, (5, 5), (2, 2), (2, 2))]
    assert G3(minigan.randn(5, 100)).shape == (5, 1, 28, 28)
    # the layer's multiply-adds: 9/25 of the 5x5's; at width 32 that is G's largest layer
    first = [m.weight.data.size for m in G0.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert first[0] * 9 // 25 == G3[4].weight.data.size == 128 * 64 * 9
    for (ka, va), (kb, vb) in zip(D0.state_dict().items(), D3.state_dict().items(), strict=True):
        assert ka == kb and np.array_equal(va, vb)
    minigan.manual_seed(0)
    G5, _, _ = build("dcgan", width=32, g_kernel=5)           # the tutorial's, as without it
    assert all(np.array_equal(a, b) for a, b in zip(G0.state_dict().values(),
                                                    G5.state_dict().values(), strict=True))
    Gw, Dw, _ = build("dcgan", width=32, g_kernel=3, d_depth=3, g_width=16)  # all three at once
    assert [(m.in_channels, m.kernel_size) for m in Gw.modules()
            if isinstance(m, nn.ConvTranspose2d)][0] == (64, (3, 3))        # 4 * g_width in
    assert len([m for m in Dw.modules() if isinstance(m, nn.Conv2d)]) == 3
    with pytest.raises(ValueError, match="g_kernel of arch 'dcgan' must be 5 .* or 3"):
        build("dcgan", g_kernel=4)
    with pytest.raises(ValueError, match="g_kernel applies to arch 'dcgan'.*not 'atienza'"):
        build("atienza", g_kernel=3)


def test_g_width_and_d_width_scale_one_net_and_leave_the_other_as_it_was():
    """As ngf / ndf: G's first layer and every channel count follow g_width; D is the very net
    (same weights from the same seed) that width alone builds, and the other way round."""
    minigan.manual_seed(0)
    G0, D0, _ = build("dcgan", width=32)
    minigan.manual_seed(0)
    G1, D1, _ = build("dcgan", width=32, g_width=48)
    minigan.manual_seed(0)
    G2, D2, _ = build("dcgan", width=32, d_width=16)
    assert G1[0].out_features == 4 * 48 * 7 * 7 and G0[0].out_features == 4 * 32 * 7 * 7
    convs = [m.out_channels for m in G1.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convs == [96, 48, 1]
    assert [m.out_channels for m in D2.modules() if isinstance(m, nn.Conv2d)] == [16, 32]
    for a, b in ((D0, D1), (G0, G2)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and np.array_equal(va, vb)
    assert G1(minigan.randn(2, 100)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="g_width must be a positive integer"):
        build("dcgan", g_width=0)
