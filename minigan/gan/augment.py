"""Differentiable augmentation of what D sees (DiffAugment: Zhao, Liu, Lin, Zhu and Han 2020,
"Differentiable Augmentation for Data-Efficient GAN Training").

With a few thousand training images D soon knows them by heart: its verdict on the real ones
stops carrying anything G can learn from. DiffAugment shows D every image, real and generated,
through the same random transformation, drawn afresh at every call: a brightness and contrast
change ('color'), a shift of up to 1/8 of the image with zero fill ('translation'), and a square
of half the image's side set to 0 ('cutout'). Every transformation is differentiable in the
image, so G learns through it, and since real and fake go through the same distribution of
transformations, G is not pushed to draw shifted or cut images: an augmentation that D could
tell apart on the real images alone would leak, and these ones cannot.

The transformations are linear in the image given their random draws (an offset, a mask, a
scale), so their gradients are themselves these transformations, and the R1 penalty, which
differentiates D's gradient at the real images, goes through them unchanged.

    D_seen = Augmented(D, "color,translation,cutout")
    D_seen(x)                   # D(T(x)), T drawn from minigan's seeded generator
"""

from __future__ import annotations

import numpy as np

from .. import backend, nn
from ..autograd import Function, Tensor, as_tensor

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> ()."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown augmentation {bad[0]!r} in {policy!r}: use a comma-separated "
                         f"list of {', '.join(POLICIES)} (DiffAugment's policies), or '' for none")
    return names


def _draw(n: int) -> np.ndarray:
    """n uniform [0, 1) numbers from minigan's generator, on the host."""
    return backend.rng.gen.random(n)


class Translate(Function):
    """Shift sample b by (dy[b], dx[b]) pixels, filling with 0: y[b, :, i, j] = x[b, :, i - dy,
    j - dx]. The adjoint of a zero-filled shift is the opposite shift, so the gradient (and the
    gradient's gradient) is a Translate too."""

    def __init__(self, dy: np.ndarray, dx: np.ndarray):
        self.dy, self.dx = dy, dx

    def forward(self, x):
        xp = backend.array_module(x)
        out = xp.zeros(x.shape, x.dtype)
        h, w = x.shape[2], x.shape[3]
        for b, (dy, dx) in enumerate(zip(self.dy.tolist(), self.dx.tolist())):
            if abs(dy) >= h or abs(dx) >= w:
                continue
            out[b, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                x[b, :, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out

    def backward(self, gy):
        return Translate(-self.dy, -self.dx)(gy)


def translate(x, dy, dx) -> Tensor:
    """Shift each sample of x (B, C, H, W) by its own whole number of pixels (dy[b], dx[b]),
    down and right for positive values, filling the uncovered pixels with 0."""
    x = as_tensor(x)
    dy, dx = np.asarray(dy, np.int64), np.asarray(dx, np.int64)
    if x.ndim != 4 or dy.shape != (x.shape[0],) or dx.shape != (x.shape[0],):
        raise ValueError(f"translate wants x (B, C, H, W) and one dy and dx per sample; got x "
                         f"{tuple(x.shape)}, dy {dy.shape}, dx {dx.shape}")
    return Translate(dy, dx)(x)


def _per_sample(values: np.ndarray, like: Tensor) -> Tensor:
    """(B,) host values as a constant (B, 1, 1, 1) Tensor of x's dtype and device."""
    arr = values.reshape(-1, 1, 1, 1).astype(like.dtype)
    return Tensor(backend.to_device(arr, backend.device_of(like.data)))


def color(x: Tensor) -> Tensor:
    """DiffAugment's colour policy: brightness + U[-0.5, 0.5), saturation (RGB only) times
    U[0, 2), contrast times U[0.5, 1.5), each drawn per sample, about the sample's means."""
    b = x.shape[0]
    x = x + _per_sample(_draw(b) - 0.5, x)
    if x.shape[1] > 1:
        m = x.mean(axis=1, keepdims=True)
        x = (x - m) * _per_sample(_draw(b) * 2.0, x) + m
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - m) * _per_sample(_draw(b) + 0.5, x) + m


def random_translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each sample by whole pixels drawn uniformly from [-s, s], s = round(ratio * side)."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = np.floor(_draw(b) * (2 * sy + 1)).astype(np.int64) - sy
    dx = np.floor(_draw(b) * (2 * sx + 1)).astype(np.int64) - sx
    return translate(x, dy, dx)


def cutout_mask(b: int, h: int, w: int, ratio: float = 0.5) -> np.ndarray:
    """(B, 1, H, W) float64 masks of 1 with one square of side round(ratio * side) set to 0,
    its centre uniform over the image (so it may hang over an edge)."""
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = np.floor(_draw(b) * (h + (1 - ch % 2))).astype(np.int64)
    cx = np.floor(_draw(b) * (w + (1 - cw % 2))).astype(np.int64)
    mask = np.ones((b, 1, h, w))
    for i in range(b):
        y0, x0 = cy[i] - ch // 2, cx[i] - cw // 2
        mask[i, 0, max(y0, 0):max(y0 + ch, 0), max(x0, 0):max(x0 + cw, 0)] = 0.0
    return mask


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    b, _, h, w = x.shape
    mask = cutout_mask(b, h, w, ratio).astype(x.dtype)
    return x * Tensor(backend.to_device(mask, backend.device_of(x.data)))


def diff_augment(x, policy: str | tuple = POLICIES) -> Tensor:
    """x (B, C, H, W) through DiffAugment's transformations named in `policy`, in the order
    color, translation, cutout, with fresh random draws."""
    names = parse_policy(policy) if isinstance(policy, str) else tuple(policy)
    x = as_tensor(x)
    if "color" in names:
        x = color(x)
    if "translation" in names:
        x = random_translation(x)
    if "cutout" in names:
        x = cutout(x)
    return x


class Augmented(nn.Module):
    """D seen through DiffAugment: forward(x) = D(diff_augment(x, policy)).

    The trainer hands this to its D and G updates in place of D; D itself is what is trained,
    saved and inspected (this module holds it as `.module`, so their parameters are the same)."""

    def __init__(self, module: nn.Module, policy: str):
        super().__init__()
        self.module = module
        self.policy = parse_policy(policy)

    def forward(self, x):
        if self.policy:
            x = diff_augment(x, self.policy)
        return self.module(x)
