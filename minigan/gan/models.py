"""Generator/discriminator pairs from well-known recipes, and the optimizer settings that go with
them. Every generator maps noise (N, z_dim) to images (N, C, H, W) in [-1, 1] (tanh); every
discriminator maps images to one logit per image, (N, 1).

    G, D, recipe = build("dcgan", image_shape=(1, 28, 28))
    opt_g, opt_d = recipe.optimizers(G, D)
    G, D, recipe = build("dcgan", critic=True, recipe="wgan-gp")   # a WGAN-GP critic
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .. import nn
from ..optim import Adam, Optimizer, RMSprop

ARCHS = ("dcgan", "atienza", "dense", "radford")


@dataclass(frozen=True)
class Recipe:
    """Optimizers and batch size for one architecture; `source` says where they come from."""

    optimizer: str              # "adam" or "rmsprop"
    lr_d: float
    lr_g: float
    batch_size: int = 64
    beta1: float = 0.5          # Adam
    beta2: float = 0.999        # Adam
    alpha: float = 0.9          # RMSprop smoothing (Keras rho)
    eps: float = 1e-8
    decay_d: float = 0.0        # RMSprop Keras-style time decay of the learning rate
    decay_g: float = 0.0
    source: str = ""

    def with_overrides(self, lr: float | None = None, lr_d: float | None = None,
                       lr_g: float | None = None, beta1: float | None = None,
                       batch_size: int | None = None, beta2: float | None = None) -> Recipe:
        """A copy with command-line overrides; `lr` sets both learning rates."""
        changes = {}
        if lr is not None:
            changes.update(lr_d=lr, lr_g=lr)
        for key, value in (("lr_d", lr_d), ("lr_g", lr_g), ("beta1", beta1),
                           ("beta2", beta2), ("batch_size", batch_size)):
            if value is not None:
                changes[key] = value
        return replace(self, **changes) if changes else self

    def optimizers(self, G: nn.Module, D: nn.Module) -> tuple[Optimizer, Optimizer]:
        """(optimizer of G, optimizer of D)."""
        if self.optimizer == "adam":
            betas = (self.beta1, self.beta2)
            return (Adam(G.parameters(), lr=self.lr_g, betas=betas, eps=self.eps),
                    Adam(D.parameters(), lr=self.lr_d, betas=betas, eps=self.eps))
        if self.optimizer == "rmsprop":
            return (RMSprop(G.parameters(), lr=self.lr_g, alpha=self.alpha, eps=self.eps,
                            decay=self.decay_g),
                    RMSprop(D.parameters(), lr=self.lr_d, alpha=self.alpha, eps=self.eps,
                            decay=self.decay_d))
        raise ValueError(f"unknown optimizer {self.optimizer!r}: use 'adam' or 'rmsprop'")

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, dict[str, Recipe]] = {
    "dcgan": {
        "default": Recipe("adam", 2e-4, 2e-4, 64, beta1=0.5,
                          source="Radford et al. 2015 (DCGAN paper): Adam 2e-4, beta1 0.5, "
                                 "batch 64"),
        "tutorial": Recipe("adam", 1e-4, 1e-4, 256, beta1=0.9, eps=1e-7,
                           source="TensorFlow DCGAN tutorial: Adam 1e-4 (Keras defaults), "
                                  "batch 256"),
    },
    "atienza": {
        "default": Recipe("rmsprop", 2e-4, 1e-4, 256, alpha=0.9, eps=1e-7, decay_d=6e-8,
                          decay_g=3e-8,
                          source="Atienza, 'GAN by Example using Keras': RMSprop lr 2e-4 "
                                 "decay 6e-8 (D), lr 1e-4 decay 3e-8 (G), batch 256"),
    },
    "dense": {
        "default": Recipe("adam", 2e-4, 2e-4, 64, beta1=0.5,
                          source="MLP GAN with DCGAN optimizer settings"),
    },
    "radford": {
        "default": Recipe("adam", 2e-4, 2e-4, 64, beta1=0.5,
                          source="PyTorch DCGAN example: Adam 2e-4, beta1 0.5"),
    },
}


# Gulrajani et al. 2017, Algorithm 1; the batch size is the arch's own.
WGAN_GP = Recipe("adam", 1e-4, 1e-4, 64, beta1=0.0, beta2=0.9,
                 source="Gulrajani et al. 2017 (WGAN-GP), Algorithm 1: Adam 1e-4, betas (0, 0.9), "
                        "5 critic steps per generator step, lambda 10")


def _check_channels(arch: str, image_shape, takes: str) -> None:
    if image_shape[0] not in (1, 3):
        raise ValueError(f"arch {arch!r} takes {takes}; got {tuple(image_shape)}, with "
                         f"{image_shape[0]} channels (use 1 or 3)")


def _quarter(arch: str, image_shape) -> tuple[int, int, int]:
    """(C, H/4, W/4) for the 28x28-style nets: two stride-2 upsamplings from a small map."""
    c, h, w = image_shape
    takes = "images (C, H, W) with C in {1, 3} and H, W multiples of 4, e.g. (1, 28, 28)"
    _check_channels(arch, image_shape, takes)
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError(f"arch {arch!r} takes {takes}; got {tuple(image_shape)}")
    return c, h // 4, w // 4


def dcgan(image_shape=(1, 28, 28), z_dim: int = 100, width: int = 64,
          d_depth: int = 2, g_kernel: int = 5) -> tuple[nn.Module, nn.Module]:
    """The TensorFlow DCGAN tutorial's MNIST nets (tensorflow.org/tutorials/generative/dcgan).

    Keras 'same' padding with kernel 5 becomes padding 2 (plus output_padding 1 when upsampling
    by 2); Keras BatchNormalization's momentum 0.99 and epsilon 1e-3 become PyTorch's momentum
    0.01 and eps 1e-3; LeakyReLU keeps Keras's default slope 0.3; weights use Keras's
    glorot-uniform with zero biases. `width` scales every layer (the tutorial's is 64).
    `d_depth` 3 gives D a third convolution, 3x3 with stride 2 to twice the channels (7x7 ->
    4x4 for 28x28 images), before its linear layer; 2 is the tutorial's D. `g_kernel` is the
    kernel size of G's first transposed convolution, the one at a quarter of the image size
    (5 is the tutorial's; 3 leaves that layer 9/25 of its multiply-adds, which at width 32 is
    three quarters of all of G's).
    """
    if d_depth not in (2, 3):
        raise ValueError(f"d_depth of arch 'dcgan' must be 2 (the tutorial's D) or 3 (one more "
                         f"stride-2 convolution), got {d_depth!r}")
    if g_kernel not in (3, 5):
        raise ValueError(f"g_kernel of arch 'dcgan' must be 5 (the tutorial's G) or 3 (a 3x3 "
                         f"first transposed convolution), got {g_kernel!r}")
    c, h, w = _quarter("dcgan", image_shape)
    c1, c2, c4 = width, 2 * width, 4 * width                      # 64, 128, 256

    def bn(cls, n):
        return cls(n, eps=1e-3, momentum=0.01)

    G = nn.Sequential(
        nn.Linear(z_dim, c4 * h * w, bias=False), bn(nn.BatchNorm1d, c4 * h * w),
        nn.LeakyReLU(0.3),
        nn.Unflatten(1, (c4, h, w)),                                       # (N, 256, 7, 7)
        nn.ConvTranspose2d(c4, c2, g_kernel, 1, g_kernel // 2, bias=False),
        bn(nn.BatchNorm2d, c2), nn.LeakyReLU(0.3),                         # (N, 128, 7, 7)
        nn.ConvTranspose2d(c2, c1, 5, 2, 2, output_padding=1, bias=False),
        bn(nn.BatchNorm2d, c1), nn.LeakyReLU(0.3),                         # (N, 64, 14, 14)
        nn.ConvTranspose2d(c1, c, 5, 2, 2, output_padding=1, bias=False),
        nn.Tanh(),                                                         # (N, C, 28, 28)
    )
    third, features = [], c2 * h * w                                   # (N, 6272)
    if d_depth == 3:
        third = [nn.Conv2d(c2, c4, 3, 2, 1), nn.LeakyReLU(0.3), nn.Dropout(0.3)]
        features = c4 * ((h + 1) // 2) * ((w + 1) // 2)                  # (N, 256 * 4 * 4)
    D = nn.Sequential(
        nn.Conv2d(c, c1, 5, 2, 2), nn.LeakyReLU(0.3), nn.Dropout(0.3),      # (N, 64, 14, 14)
        nn.Conv2d(c1, c2, 5, 2, 2), nn.LeakyReLU(0.3), nn.Dropout(0.3),     # (N, 128, 7, 7)
        *third,
        nn.Flatten(),
        nn.Linear(features, 1),                                            # logits (N, 1)
    )
    _glorot(G)
    _glorot(D)
    return G, D


def atienza(image_shape=(1, 28, 28), z_dim: int = 100, width: int = 64) -> tuple[nn.Module,
                                                                                 nn.Module]:
    """Rowel Atienza's Keras DCGAN ('GAN by Example using Keras on Tensorflow Backend', 2017),
    the network of the Quick, Draw! doodle study.

    Keras 'same' convolutions become padding 2; Keras BatchNormalization(momentum=0.9) means
    running = 0.9 running + 0.1 batch, which is PyTorch's momentum=0.1 (the two libraries
    name the opposite weight). The original ends in a sigmoid for images in [0, 1]; we train in
    [-1, 1], so tanh. Weights use Keras's glorot-uniform with zero biases. `width` scales
    every layer (the original's is 64).
    """
    c, h, w = _quarter("atienza", image_shape)
    c1, c2, c4, c8 = width, 2 * width, 4 * width, 8 * width        # 64, 128, 256, 512
    h8, w8 = -(-h // 2), -(-w // 2)                     # 'same' stride 2 rounds up: 7 -> 4

    def bn(cls, n):
        return cls(n, eps=1e-3, momentum=0.1)

    half = max(width // 2, 1)
    G = nn.Sequential(
        nn.Linear(z_dim, c4 * h * w), bn(nn.BatchNorm1d, c4 * h * w), nn.ReLU(),
        nn.Unflatten(1, (c4, h, w)), nn.Dropout(0.4),                       # (N, 256, 7, 7)
        nn.Upsample(2),                                                    # (N, 256, 14, 14)
        nn.ConvTranspose2d(c4, c2, 5, 1, 2), bn(nn.BatchNorm2d, c2), nn.ReLU(),
        nn.Upsample(2),                                                    # (N, 128, 28, 28)
        nn.ConvTranspose2d(c2, c1, 5, 1, 2), bn(nn.BatchNorm2d, c1), nn.ReLU(),
        nn.ConvTranspose2d(c1, half, 5, 1, 2), bn(nn.BatchNorm2d, half), nn.ReLU(),
        nn.ConvTranspose2d(half, c, 5, 1, 2), nn.Tanh(),                    # (N, C, 28, 28)
    )
    D = nn.Sequential(
        nn.Conv2d(c, c1, 5, 2, 2), nn.LeakyReLU(0.2), nn.Dropout(0.4),      # (N, 64, 14, 14)
        nn.Conv2d(c1, c2, 5, 2, 2), nn.LeakyReLU(0.2), nn.Dropout(0.4),     # (N, 128, 7, 7)
        nn.Conv2d(c2, c4, 5, 2, 2), nn.LeakyReLU(0.2), nn.Dropout(0.4),     # (N, 256, 4, 4)
        nn.Conv2d(c4, c8, 5, 1, 2), nn.LeakyReLU(0.2), nn.Dropout(0.4),     # (N, 512, 4, 4)
        nn.Flatten(),
        nn.Linear(c8 * h8 * w8, 1),                                        # logits (N, 1)
    )
    _glorot(G)
    _glorot(D)
    return G, D


def dense(image_shape=(1, 28, 28), z_dim: int = 100, width: int = 64) -> tuple[nn.Module,
                                                                               nn.Module]:
    """A multilayer-perceptron GAN (as in Goodfellow et al. 2014, with LeakyReLU): any size.

    Hidden layers 256, 512, 1024 for the default `width` 64 (they scale with it).
    """
    c, h, w = image_shape
    _check_channels("dense", image_shape, "images (C, H, W) of any size with C in {1, 3}")
    n = c * h * w
    h1, h2, h3 = 4 * width, 8 * width, 16 * width                  # 256, 512, 1024
    G = nn.Sequential(
        nn.Linear(z_dim, h1), nn.LeakyReLU(0.2),
        nn.Linear(h1, h2), nn.LeakyReLU(0.2),
        nn.Linear(h2, h3), nn.LeakyReLU(0.2),
        nn.Linear(h3, n), nn.Tanh(),
        nn.Unflatten(1, (c, h, w)),                                        # (N, C, H, W)
    )
    D = nn.Sequential(
        nn.Flatten(),                                                      # (N, C*H*W)
        nn.Linear(n, h3), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(h3, h2), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(h2, h1), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Linear(h1, 1),                                                  # logits (N, 1)
    )
    return G, D


def _doublings(arch: str, image_shape) -> tuple[int, int, int]:
    """(C, base, k) with H = W = base * 2**k, base 4 or 7, k >= 1."""
    c, h, w = image_shape
    takes = ("square images (C, S, S) with C in {1, 3} and S = 4*2^k or 7*2^k, k >= 1 "
             "(8, 14, 16, 28, 32, 56, 64, 112, 128, ...)")
    _check_channels(arch, image_shape, takes)
    for base in (4, 7):
        k = round(math.log2(h / base)) if h >= base else 0
        if h == w and k >= 1 and base * 2 ** k == h:
            return c, base, k
    raise ValueError(f"arch {arch!r} takes {takes}; got {tuple(image_shape)}")


def radford(image_shape=(1, 28, 28), z_dim: int = 100, width: int = 64) -> tuple[nn.Module,
                                                                                 nn.Module]:
    """The PyTorch DCGAN example (github.com/pytorch/examples, dcgan) after Radford et al.,
    generalised to any square size 4*2^k or 7*2^k: stride-2 kernel-4 (transposed) convolutions,
    BatchNorm, ReLU in G and LeakyReLU 0.2 in D, weights N(0, 0.02), BN weights N(1, 0.02).
    `width` is the example's ngf = ndf (64); channels double per halving of size, up to 8x.
    """
    c, base, k = _doublings("radford", image_shape)
    chans = [min(width * 2 ** i, width * 8) for i in range(k)]   # e.g. 28: [64, 128]
    g_layers = [nn.Unflatten(1, (z_dim, 1, 1)),
                nn.ConvTranspose2d(z_dim, chans[-1], base, 1, 0, bias=False),
                nn.BatchNorm2d(chans[-1]), nn.ReLU()]          # (N, width*2^(k-1), base, base)
    for i in range(k - 1, 0, -1):
        g_layers += [nn.ConvTranspose2d(chans[i], chans[i - 1], 4, 2, 1, bias=False),
                     nn.BatchNorm2d(chans[i - 1]), nn.ReLU()]  # spatial size doubles
    g_layers += [nn.ConvTranspose2d(chans[0], c, 4, 2, 1, bias=False), nn.Tanh()]
    d_layers = [nn.Conv2d(c, chans[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    for i in range(1, k):
        d_layers += [nn.Conv2d(chans[i - 1], chans[i], 4, 2, 1, bias=False),
                     nn.BatchNorm2d(chans[i]), nn.LeakyReLU(0.2)]  # spatial size halves
    d_layers += [nn.Conv2d(chans[-1], 1, base, 1, 0, bias=False),    # (N, 1, 1, 1)
                 nn.Flatten()]                                      # logits (N, 1)
    G, D = nn.Sequential(*g_layers), nn.Sequential(*d_layers)
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
    return G, D


def _glorot(net: nn.Module) -> None:
    """Keras's default initialisation: glorot-uniform kernels, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


BUILDERS = {"dcgan": dcgan, "atienza": atienza, "dense": dense, "radford": radford}


def recipe_for(arch: str, recipe: str = "default") -> Recipe:
    """The optimizer recipe `recipe` of an arch: 'default', 'wgan-gp' (any arch), or e.g.
    'tutorial' for dcgan."""
    _check_arch(arch)
    if recipe == "wgan-gp":
        return replace(WGAN_GP, batch_size=RECIPES[arch]["default"].batch_size)
    if recipe not in RECIPES[arch]:
        raise ValueError(f"arch {arch!r} has recipes {sorted(RECIPES[arch]) + ['wgan-gp']}, "
                         f"not {recipe!r}")
    return RECIPES[arch][recipe]


def as_critic(D: nn.Sequential) -> nn.Sequential:
    """D without its BatchNorm and Dropout layers: a WGAN-GP critic.

    The gradient penalty is a per-sample constraint, which BatchNorm's coupling of the samples
    in a batch breaks (Gulrajani et al. 2017, section 4); dropout makes D(x) random.
    """
    drop = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)
    return nn.Sequential(*(m for m in D._modules.values() if not isinstance(m, drop)))


def spectrally_normalized(D: nn.Sequential) -> nn.Sequential:
    """D with every convolution and linear layer spectrally normalised, in place (Miyato et al.
    2018, "Spectral Normalization for Generative Adversarial Networks"): each layer is then at
    most 1-Lipschitz, which steadies the game without a penalty term. Their discriminators
    have neither BatchNorm nor dropout; give this one `as_critic(D)` for that."""
    for m in D.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.utils.spectral_norm(m)
    return D


# build()'s options that shape the nets beyond the arch and width: a run's settings of the same
# names (TrainConfig fields) pass straight through
NET_OPTIONS = ("g_width", "d_width", "d_dropout", "d_depth", "g_kernel")


def net_options(config: dict) -> dict:
    """build()'s NET_OPTIONS from a run's config (TrainConfig as a dict, or config.json's
    "config"); a setting the run predates reads as None, its default."""
    return {k: config.get(k) for k in NET_OPTIONS}


def build(arch: str, image_shape=(1, 28, 28), z_dim: int = 100, recipe: str = "default",
          width: int = 64, critic: bool = False, spectral_norm: bool = False,
          g_width: int | None = None, d_width: int | None = None,
          d_dropout: float | None = None,
          d_depth: int | None = None,
          g_kernel: int | None = None) -> tuple[nn.Module, nn.Module, Recipe]:
    """(G, D, optimizer recipe) for an architecture name in ARCHS and images (C, H, W).

    `width` scales the layers (64 is every recipe's own size; smaller is faster); `g_width` and
    `d_width` scale G's or D's alone instead (as ngf and ndf in PyTorch's DCGAN); `critic`
    strips BatchNorm and Dropout from D (see `as_critic`); `spectral_norm` makes D an SNGAN
    discriminator (see `spectrally_normalized`); `d_dropout` sets the rate of every Dropout
    layer in D (0: none; None: the architecture's own); `d_depth` (dcgan only) gives D a third
    stride-2 convolution when 3 and `g_kernel` (dcgan only) sets the kernel of G's first
    transposed convolution, 3 or 5 (see `dcgan`). Each option draws its net again after the
    pair, so a run with `d_depth` alone keeps the G of the run without it, one with `g_kernel`
    alone the D.
    """
    _check_arch(arch)
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
    for name, w in (("width", width), ("g_width", g_width), ("d_width", d_width)):
        if w is not None and (int(w) != w or w < 1):
            raise ValueError(f"{name} must be a positive integer, got {w!r}")
    for name, value in (("d_depth", d_depth), ("g_kernel", g_kernel)):
        if value is not None and arch != "dcgan":
            raise ValueError(f"{name} applies to arch 'dcgan' (the TensorFlow tutorial's nets), "
                             f"not {arch!r}: leave it unset")
    d_options = {} if d_depth in (None, 2) else {"d_depth": d_depth}
    g_options = {} if g_kernel in (None, 5) else {"g_kernel": g_kernel}
    G, D = BUILDERS[arch](image_shape, z_dim, int(width))
    # a net drawn again after the pair, so that the other's weights stay those of the run
    # without the option
    if (g_width is not None and g_width != width) or g_options:
        G = BUILDERS[arch](image_shape, z_dim, int(g_width or width), **g_options)[0]
    if (d_width is not None and d_width != width) or d_options:
        D = BUILDERS[arch](image_shape, z_dim, int(d_width or width), **d_options)[1]
    if d_dropout is not None:
        if not 0.0 <= d_dropout < 1.0:
            raise ValueError(f"d_dropout must be in [0, 1), got {d_dropout}")
        if d_dropout and (critic or spectral_norm):
            raise ValueError("a critic or spectrally normalised D has no dropout; leave "
                             "d_dropout unset")
        drops = [m for m in D.modules() if isinstance(m, nn.Dropout)]
        if d_dropout and not drops:
            raise ValueError(f"arch {arch!r} has no dropout in D to set d_dropout on")
        for m in drops:
            m.p = float(d_dropout)
    if critic or spectral_norm:
        D = as_critic(D)
    if spectral_norm:
        D = spectrally_normalized(D)
    return G, D, recipe_for(arch, recipe)


def _check_arch(arch: str) -> None:
    if arch not in BUILDERS:
        raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
