"""One D update and one G update, shared by the image trainer and the 2-D lab.

Both work on any input shape D accepts (image batches, 2-D points, packed points) and return
their statistics as 0-d arrays on the training device, so a caller decides when to read them.
"""

from __future__ import annotations

import math

from .. import backend, nn
from ..autograd import Tensor
from ..optim import Optimizer
from ..optim.lr_scheduler import LambdaLR
from .losses import GANLoss, r1_penalty


def _sigmoid(x):
    return 0.5 * (1.0 + backend.array_module(x).tanh(0.5 * x))


def d_update(D: nn.Module, opt_d: Optimizer, loss: GANLoss, real, fake: Tensor,
             r1_gamma: float | None = None) -> dict:
    """One D descent on a real batch and a batch of G(z) (detached, so G is untouched).

    `r1_gamma` adds `r1_penalty(D, real, r1_gamma)` to D's loss, logged as 'r1' (0 when the
    weight is 0, a lazy R1's step without it); None: no R1, nothing logged."""
    opt_d.zero_grad()
    real_logits = D(real)                                           # (B, 1)
    fake_logits = D(fake.detach())                                  # (B, 1)
    loss_d = loss.d_loss(real_logits, fake_logits)
    stats = {}
    penalty = loss.penalty(D, real, fake.detach())
    if penalty is not None:
        stats["gp"] = penalty.data.astype("float64")
        loss_d = loss_d + penalty
    stats["loss_d"] = loss_d.data.astype("float64")
    if r1_gamma:                        # apart from loss_d: a lazy R1 would make it jump
        r1 = r1_penalty(D, real, r1_gamma)
        stats["r1"] = r1.data.astype("float64")
        loss_d = loss_d + r1
    elif r1_gamma is not None:
        stats["r1"] = backend.array_module(real_logits.data).zeros((), "float64")
    loss_d.backward()
    opt_d.step()

    # All on the device (0-d arrays): reading them here would wait for the GPU every step.
    r = real_logits.data.astype("float64")
    f = fake_logits.data.astype("float64")
    if loss.critic:                     # scores, not logits: no accuracy, no sigmoid
        stats.update(critic_real=r.mean(), critic_fake=f.mean(),
                     wasserstein=r.mean() - f.mean())
    else:
        stats.update(acc_real=(r > 0).mean(), acc_fake=(f < 0).mean(),
                     d_x=_sigmoid(r).mean(), d_g_z=_sigmoid(f).mean())
    return stats


def top_k(scores: Tensor, k: int | None) -> Tensor:
    """The k rows of D's scores (B, 1) that D finds most realistic (the highest), in the
    batch's order; all of them when k is None or at least B. Only these reach G's loss: the
    others' gradient is exactly 0 ("top-k training", Sinha et al. 2020)."""
    b = scores.shape[0]
    if k is None or k >= b:
        return scores
    if k < 1:
        raise ValueError(f"top_k: k must be at least 1, got {k}")
    xp = backend.array_module(scores.data)
    # argsort is stable: among equal scores the earlier sample wins, on either device
    order = xp.argsort(-scores.data.reshape(b).astype("float64"), kind="stable")
    keep = xp.sort(order[:k])
    return scores[keep]


def g_update(D: nn.Module, opt_g: Optimizer, loss: GANLoss, fake: Tensor,
             k: int | None = None) -> dict:
    """One G descent on D's verdict on `fake` = G(z) (with its graph); D's weights stay.

    `k`: G learns from the k samples D scores highest only (`top_k`); None: from all."""
    d_params = list(D.parameters())
    for p in d_params:                  # G's step needs gradients through D, not of D
        p.requires_grad = False
    try:
        opt_g.zero_grad()
        loss_g = loss.g_loss(top_k(D(fake), k))
        stats = {"loss_g": loss_g.data.astype("float64")}
        loss_g.backward()
    finally:
        for p in d_params:
            p.requires_grad = True
    opt_g.step()
    return stats


def check_top_k(fraction: float, decay: float) -> None:
    """A ValueError unless 0 < fraction <= 1 and 0 < decay <= 1 (top-k training's settings)."""
    if not 0 < fraction <= 1 or not 0 < decay <= 1:
        raise ValueError(f"top-k training needs 0 < fraction <= 1 and 0 < decay <= 1, got "
                         f"fraction {fraction} and decay {decay}")


def top_k_schedule(epoch: int, batch: int, fraction: float, decay: float) -> int | None:
    """How many of a batch of `batch` G learns from in `epoch` (0-based, epochs completed):
    the whole batch at first, times `decay` every epoch, never under `fraction` of it (both
    rounded up), as Sinha et al. (2020) anneal k; None when `fraction` is 1 (off)."""
    check_top_k(fraction, decay)
    if fraction == 1:
        return None
    # (less 1e-9: 0.7 * 10 comes out as 7.000000000000001 and must not round up to 8)
    floor = math.ceil(fraction * batch - 1e-9)
    return max(floor, math.ceil(decay ** epoch * batch - 1e-9))


def linear_decay(step: int, total: int, fraction: float) -> float:
    """The learning rates' factor at `step` of `total`: 1, then falling linearly over the last
    `fraction` of training to 1/L at the last step (0 after it), L the decay's length."""
    start = total - round(fraction * total)
    return 1.0 if step < start else max(0.0, (total - step) / (total - start))


def decay_schedulers(optimizers, fraction: float, total_steps) -> list[LambdaLR]:
    """A LambdaLR per optimizer following `linear_decay` over the last `fraction` of
    `total_steps()` (read at every step, so a run lengthened when resumed stretches its
    decay); [] when `fraction` is 0."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"lr_decay is the fraction of training over which the learning rates "
                         f"fall to 0, in [0, 1]; got {fraction}")
    if not fraction:
        return []
    return [LambdaLR(opt, lambda step: linear_decay(step, total_steps(), fraction))
            for opt in optimizers]


def restore_schedule(schedulers, step: int) -> None:
    """Set `schedulers` to `step`: the schedule is a function of the step alone."""
    for sched in schedulers:
        sched.last_epoch = step - 1
        sched.step()
