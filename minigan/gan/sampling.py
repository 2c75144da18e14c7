"""Drawing images from a generator, and walks through its latent space.

A generator with BatchNorm is trained on batch statistics, and its running averages lag behind
it (Keras's momentum 0.99 averages over ~100 steps of a moving target), so neither eval mode
nor one arbitrary batch shows faithfully what it has learnt. `generate` first re-estimates the
BatchNorm statistics from fresh batches of noise the size of a training batch, exactly as
training computes them ("precise BatchNorm", Wu & Johnson 2021), then draws every image with
those fixed statistics: each image depends only on its own z, not on the batch it comes in.
Dropout is off. The generator's stored state and minigan's random generator are left untouched,
so sampling never changes training.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import backend, nn, no_grad
from ..autograd import Tensor

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

# Noise samples behind the re-estimated statistics: 2,048, in batches of the training batch size
# (32 of 64, 64 of 32). An estimate from 256 samples is noisy enough to show in the pictures: a
# doodles G's classifier FD moved between 7.9 and 10.4 with the calibration noise alone (4
# batches of 64), and between 7.9 and 8.3, lower on the whole, with 64 batches. 2,048 cost about
# a second for a half-width DCGAN on two cores.
CALIBRATION_SAMPLES = 2048


def default_calibration_batches(batch_size: int) -> int:
    """How many batches of `batch_size` make up CALIBRATION_SAMPLES (rounded up)."""
    return -(-CALIBRATION_SAMPLES // max(int(batch_size), 2))


@contextlib.contextmanager
def _preserved(G: nn.Module):
    """Restore every module's training flag and every BatchNorm's buffers and momentum."""
    flags = [(m, m.training) for m in G.modules()]
    saved = [(m, m.momentum, {k: v.copy() for k, v in m._buffers.items()})
             for m in G.modules() if isinstance(m, _BATCHNORMS)]
    try:
        yield
    finally:
        for m, flag in flags:
            object.__setattr__(m, "training", flag)
        for m, momentum, buffers in saved:
            m.momentum = momentum
            for k, v in buffers.items():
                m._buffers[k] = v


def _noise(rng: np.random.Generator, n: int, z_dim: int, device: str) -> Tensor:
    return Tensor(backend.to_device(rng.standard_normal((n, z_dim), dtype=np.float32), device))


def _calibrate(G: nn.Module, z_dim: int, device: str, batch_size: int, batches: int | None,
               seed: int) -> None:
    """Set BatchNorm running statistics to the mean of `batches` batches' statistics (None:
    CALIBRATION_SAMPLES noise vectors' worth; 0: leave them)."""
    batch_size = max(int(batch_size), 2)
    if batches is None:
        batches = default_calibration_batches(batch_size)
    bns = [m for m in G.modules() if isinstance(m, _BATCHNORMS) and m.track_running_stats]
    if not bns or batches < 1:
        return
    rng = np.random.default_rng(seed)
    for m in G.modules():
        object.__setattr__(m, "training", isinstance(m, _BATCHNORMS))  # dropout off
    head = _through_last_batchnorm(G, bns)
    for i in range(batches):
        for m in bns:
            m.momentum = 1.0 / (i + 1)          # a running mean of the batch statistics
        head(_noise(rng, batch_size, z_dim, device))
    G.eval()


def _through_last_batchnorm(G: nn.Module, bns: list):
    """G's forward as far as its statistics go: for a plain Sequential without hooks of its
    own, its layers up to the last one holding a BatchNorm (what follows, e.g. the output layer
    and tanh, cannot change them; about 13 % of a doodles G's forward); any other G whole (a
    subclass may have a forward of its own, a pre-hook may change the input)."""
    if type(G) is not nn.Sequential or (G._hooks and any(G._hooks.values())):
        return G
    layers = list(G)
    last = max(i for i, layer in enumerate(layers)
               if any(m is bn for m in layer.modules() for bn in bns))

    def head(x):
        for layer in layers[:last + 1]:
            x = layer(x)
        return x

    return head


def generate(G: nn.Module, z, batch_size: int = 64,
             calibration_batches: int | None = None,
             seed: int = 0, calibration: dict | None = None) -> np.ndarray:
    """Images G(z) as float32 NumPy (N, C, H, W) in [-1, 1]; see the module docstring.

    `batch_size` is the size of the calibration batches (use the training batch size), and
    `calibration_batches` their number (default: CALIBRATION_SAMPLES noise vectors in all);
    `seed` seeds their noise. `z` is (N, z_dim), a NumPy array or a Tensor. `calibration`, a
    dict, keeps the calibrated statistics for later calls with G unchanged: an empty one is
    filled, a filled one is used instead of calibrating again (the images are the same).
    """
    z = z.data if isinstance(z, Tensor) else z
    device = backend.check_device(_device(G))
    z = backend.to_device(np.asarray(z, np.float32) if not backend.is_cuda_array(z) else z,
                          device)
    if z.ndim != 2:
        raise ValueError(f"generate: z must be (N, z_dim), got shape {tuple(z.shape)}")
    out = []
    with no_grad(), _preserved(G):
        bns = [m for m in G.modules() if isinstance(m, _BATCHNORMS)]
        if calibration:
            for m, buffers in zip(bns, calibration["buffers"], strict=True):
                m._buffers.update(buffers)
        else:
            _calibrate(G, z.shape[1], device, batch_size, calibration_batches, seed)
            if calibration is not None:
                calibration["buffers"] = [dict(m._buffers) for m in bns]
        G.eval()
        for lo in range(0, z.shape[0], 256):
            out.append(backend.to_numpy(G(Tensor(z[lo:lo + 256])).data))
    return np.concatenate(out).astype(np.float32, copy=False)


def _device(G: nn.Module) -> str:
    p = next(G.parameters(), None)
    return p.device if p is not None else "cpu"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W) for one channel, (N, H, W, 3) for three."""
    a = np.rint(np.clip((np.asarray(images, np.float64) + 1.0) * 127.5, 0, 255))
    a = a.astype(np.uint8).transpose(0, 2, 3, 1)                       # (N, H, W, C)
    return a[..., 0] if a.shape[-1] == 1 else a


def lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The straight line from a to b."""
    return (1.0 - t) * a + t * b


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation (White 2016, 'Sampling Generative Networks'): Gaussian noise
    lives near a sphere, and the straight line between two points passes through its
    low-norm inside, where the generator saw no training noise; the great circle does not."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a64, axis=-1, keepdims=True), np.linalg.norm(b64, axis=-1,
                                                                         keepdims=True)
    cos = np.clip(np.sum(a64 * b64, axis=-1, keepdims=True) / (na * nb), -1.0, 1.0)
    omega = np.arccos(cos)
    so = np.sin(omega)
    safe = so > 1e-6
    wa = np.where(safe, np.sin((1.0 - t) * omega) / np.where(safe, so, 1.0), 1.0 - t)
    wb = np.where(safe, np.sin(t * omega) / np.where(safe, so, 1.0), t)
    return (wa * a64 + wb * b64).astype(np.asarray(a).dtype)


def latent_walk(rows: int, steps: int, z_dim: int, seed: int = 0,
                method: str = "slerp") -> np.ndarray:
    """(rows * steps, z_dim) noise: each row walks from one random point to another."""
    if method not in ("slerp", "lerp"):
        raise ValueError(f"interpolation method must be 'slerp' or 'lerp', got {method!r}")
    if rows < 1 or steps < 2:
        raise ValueError(f"need rows >= 1 and steps >= 2, got rows={rows}, steps={steps}")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, z_dim), dtype=np.float32)
    b = rng.standard_normal((rows, z_dim), dtype=np.float32)
    f = slerp if method == "slerp" else lerp
    ts = np.linspace(0.0, 1.0, steps)
    return np.stack([f(a, b, t) for t in ts], axis=1).reshape(rows * steps, z_dim)


def calibrate(G: nn.Module, z_dim: int, batch_size: int = 64,
              calibration_batches: int | None = None, seed: int = 0) -> nn.Module:
    """Give G, in place, the BatchNorm statistics `generate` draws with, and put it in eval mode:
    what an exported generator holds (`generate(G, z)` and `G.eval()(z)` then agree)."""
    with no_grad():
        _calibrate(G, z_dim, _device(G), batch_size, calibration_batches, seed)
    G.eval()
    return G
