"""GAN objectives as small objects with two methods, so new ones plug into the trainer:

    d_loss(real_logits, fake_logits) -> scalar Tensor   (minimised by D)
    g_loss(fake_logits) -> scalar Tensor                (minimised by G)
    penalty(D, real, fake) -> scalar Tensor or None      (extra D term, e.g. a gradient penalty)

`critic = True` marks a loss whose D is a critic (an unbounded score, not a logit): the trainer
then builds D without BatchNorm or dropout and logs critic values instead of D's accuracy.
`n_critic` is the number of D steps per G step the loss is meant to train with.
"""

from __future__ import annotations

from .. import backend, rand
from .. import functional as F
from ..autograd import Tensor, grad


class GANLoss:
    """The interface; `penalty` is optional (WGAN-GP's gradient penalty would go there)."""

    name = "base"
    critic = False
    n_critic = 1

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def penalty(self, D, real: Tensor, fake: Tensor) -> Tensor | None:
        return None

    def config(self) -> dict:
        return {"name": self.name}


def _full_like(t: Tensor, value: float):
    return backend.array_module(t.data).full(t.shape, value, dtype=t.dtype)


class BCELoss(GANLoss):
    """The original GAN loss on logits, with the non-saturating generator loss.

    D: BCE(D(x), 1 - smoothing) + BCE(D(G(z)), 0); G: BCE(D(G(z)), 1), i.e. maximise
    log D(G(z)) (Goodfellow et al. 2014). `label_smoothing` is one-sided: only the real target
    moves (Salimans et al. 2016), which keeps D from growing over-confident.
    """

    name = "bce"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        real = F.binary_cross_entropy_with_logits(
            real_logits, _full_like(real_logits, 1.0 - self.label_smoothing))
        fake = F.binary_cross_entropy_with_logits(fake_logits, _full_like(fake_logits, 0.0))
        return real + fake

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(fake_logits, _full_like(fake_logits, 1.0))

    def config(self) -> dict:
        return {"name": self.name, "label_smoothing": self.label_smoothing}


class HingeLoss(GANLoss):
    """Hinge loss (Lim & Ye 2017; SAGAN): D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z))."""

    name = "hinge"

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


def _array(x):
    """The raw array of a Tensor (cut from its graph), or the array itself."""
    return x.data if isinstance(x, Tensor) else x


def gradient_penalty(D, x_hat, weight: float = 10.0) -> Tensor:
    """weight * mean over samples of (||grad_x D(x_hat)||_2 - 1)^2 (Gulrajani et al. 2017).

    `x_hat` (B, C, H, W) or (B, D) is an array or Tensor, taken as a constant. The gradient is
    taken with create_graph=True, so the penalty can itself be differentiated with respect to
    D's weights. 1e-12 under the square root keeps its derivative finite where a gradient
    vanishes. There is one norm per output of D: a D that judges packs of m samples at once
    (PacGAN) gives B / m outputs, and the norm runs over each pack's m samples.
    """
    x_hat = Tensor(_array(x_hat), requires_grad=True)
    out = D(x_hat)                                              # (B, 1), or (B / m, 1)
    (g,) = grad(out.sum(), [x_hat], create_graph=True)          # like x_hat
    norms = F.sqrt((g * g).reshape(out.shape[0], -1).sum(axis=1) + 1e-12)   # (outputs,)
    return ((norms - 1.0) ** 2).mean() * weight


def r1_penalty(D, real, gamma: float = 10.0) -> Tensor:
    """gamma / 2 * mean over samples of ||grad_x D(x)||_2^2 at real images x: the R1
    regulariser (Mescheder et al. 2018, "Which Training Methods for GANs do actually
    Converge?"), which pushes D's gradient to zero on the data, so that D cannot grow steep
    walls around the real images and G is not thrown back and forth across them.

    `real` (B, C, H, W) or (B, D), an array or Tensor, is taken as a constant; like
    `gradient_penalty`, the gradient is taken with create_graph=True so the penalty trains D.
    Unlike it, there is no interpolation and no target norm of 1, only the squared norm.
    """
    x = Tensor(_array(real), requires_grad=True)
    out = D(x)                                                  # (B, 1)
    (g,) = grad(out.sum(), [x], create_graph=True)              # like x
    return (g * g).reshape(x.shape[0], -1).sum(axis=1).mean() * (0.5 * gamma)


class WGANGPLoss(GANLoss):
    """Wasserstein loss with gradient penalty (Gulrajani et al. 2017, "Improved Training of
    Wasserstein GANs"): D: mean D(G(z)) - mean D(x) + lambda * GP; G: -mean D(G(z)).

    The penalty is taken on x_hat = eps * x + (1 - eps) * G(z), eps ~ U[0, 1) per sample from
    minigan's seeded generator. The paper trains with 5 critic steps per generator step and
    Adam(1e-4, betas (0, 0.9)); the critic has no BatchNorm, whose batch coupling would break
    the per-sample penalty.
    """

    name = "wgan-gp"
    critic = True
    n_critic = 5

    def __init__(self, gp_lambda: float = 10.0):
        if not gp_lambda >= 0:
            raise ValueError(f"gp_lambda must be >= 0, got {gp_lambda}")
        self.gp_lambda = float(gp_lambda)

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()

    def penalty(self, D, real, fake) -> Tensor:
        real, fake = _array(real), _array(fake)                           # (B, C, H, W)
        eps = rand(len(real), *(1,) * (real.ndim - 1), dtype=real.dtype,
                   device=backend.device_of(real)).data                   # (B, 1, ...)
        return gradient_penalty(D, eps * real + (1.0 - eps) * fake, self.gp_lambda)

    def config(self) -> dict:
        return {"name": self.name, "gp_lambda": self.gp_lambda}


LOSSES = {"bce": BCELoss, "hinge": HingeLoss, "wgan-gp": WGANGPLoss}


def make_loss(name: str = "bce", **options) -> GANLoss:
    """A loss by name: 'bce' (label_smoothing=...), 'hinge' or 'wgan-gp' (gp_lambda=...)."""
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}: choose one of {', '.join(LOSSES)}")
    return LOSSES[name](**options)
