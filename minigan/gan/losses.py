"""GAN objectives as small objects with two methods, so new ones plug into the trainer:

    d_loss(real_logits, fake_logits) -> scalar Tensor   (minimised by D)
    g_loss(fake_logits) -> scalar Tensor                (minimised by G)
    penalty(D, real, fake) -> scalar Tensor or None      (extra D term, e.g. a gradient penalty)
"""

from __future__ import annotations

from .. import backend
from .. import functional as F
from ..autograd import Tensor


class GANLoss:
    """The interface; `penalty` is optional (WGAN-GP's gradient penalty would go there)."""

    name = "base"

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


LOSSES = {"bce": BCELoss, "hinge": HingeLoss}


def make_loss(name: str = "bce", **options) -> GANLoss:
    """A loss by name: 'bce' (label_smoothing=...) or 'hinge'."""
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}: choose one of {', '.join(LOSSES)}")
    return LOSSES[name](**options)
