"""Trainer callbacks: what a run records beyond its losses, built on module and tensor hooks.

A callback has Keras/Lightning-shaped methods (all optional); a plain function fn(trainer, stats)
is a step-end callback. They only record numbers into the run folder; pictures of them are
drawn by `minigan.report`.

    RUN/internals.jsonl  (LayerStatistics, --log-internals) one line every `log_every` steps:
                         per layer of G and D, activation mean/std, the fraction of a
                         LeakyReLU's inputs below 0, BatchNorm batch vs running statistics, and
                         the norm of the gradient reaching the layer's output
    RUN/views.jsonl      (EpochViews, every run) one line per epoch: D's logits on a fixed real
                         and a fixed fake batch, and the mean power spectra of both
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import backend, nn, no_grad
from ..autograd import Tensor, is_grad_enabled


class Callback:
    """Override any of these; `trainer.step` counts the steps done so far."""

    def on_train_begin(self, trainer) -> None:
        """Before the first step of `fit()` (also after a resume)."""

    def on_step_begin(self, trainer) -> None:
        """Before step `trainer.step + 1`."""

    def on_step_end(self, trainer, stats: dict) -> None:
        """After a step; `stats` holds 0-d arrays on the training device."""

    def on_epoch_end(self, trainer) -> None:
        """After an epoch's grid and metrics, before its pictures and its checkpoint."""

    def on_pictures(self, trainer) -> None:
        """Redraw pictures of what was recorded: after an epoch while the trainer's
        `picture_budget` allows, and when training stops."""

    def on_train_end(self, trainer) -> None:
        """When `fit()` returns or stops (Ctrl-C, an error): release what was held."""


class StepFunction(Callback):
    """A plain fn(trainer, stats) called after every step."""

    def __init__(self, fn):
        self.fn = fn

    def on_step_end(self, trainer, stats: dict) -> None:
        self.fn(trainer, stats)


def as_callback(cb) -> Callback:
    """Callbacks pass through; a plain function becomes a step-end callback."""
    return cb if isinstance(cb, Callback) else StepFunction(cb)


def keep_lines(path: Path, upto_step: int) -> None:
    """Drop the JSON lines of `path` written after `upto_step` (a resumed run redoes them)."""
    if not path.is_file():
        return
    lines = [s for s in path.read_text().splitlines() if s.strip()]
    keep = [s for s in lines if json.loads(s).get("step", 0) <= upto_step]
    if len(keep) != len(lines):
        path.write_text("".join(s + "\n" for s in keep))


SKIPPED = (nn.Flatten, nn.Unflatten, nn.Sequential)        # reshapes and containers
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def layers(net: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """(name, module) for every leaf layer of `net` that changes values: 'G.0', 'G.1', ..."""
    return [(f"{prefix}.{name}" if name else prefix, m) for name, m in net.named_modules()
            if not m._modules and not isinstance(m, SKIPPED)]


def _channel_stats(x):
    """Batch mean and (biased) variance per channel of (N, C) or (N, C, ...) data, as BN uses."""
    xp = backend.array_module(x)
    axes = (0,) + tuple(range(2, x.ndim))
    x = x.astype(np.float64)
    mean = x.mean(axis=axes)
    return mean, xp.mean((x - mean.reshape((1, -1) + (1,) * (x.ndim - 2))) ** 2, axis=axes)


class LayerStatistics(Callback):
    """Every `trainer.config.log_every` steps, hooks on every layer of G and D record one step.

    Statistics are of each layer's first call in the step with gradients on: G's pass that its
    update trains on, and D's pass on the real batch of its (first) update, whose output
    gradient is that of D's loss. The hooks are registered only for that step and removed after
    it, and all numbers are read on the host in one transfer; other steps cost nothing.
    """

    def __init__(self, filename: str = "internals.jsonl"):
        self.filename = filename
        self._handles: list = []
        self._values: dict = {}                 # (layer, stat) -> 0-d device array
        self._order: list = []                  # (layer, type) of G, then of D

    def on_train_begin(self, trainer) -> None:
        keep_lines(trainer.out / self.filename, trainer.step)

    def on_step_begin(self, trainer) -> None:
        if (trainer.step + 1) % trainer.config.log_every == 0:
            self._arm(trainer)

    def on_step_end(self, trainer, stats: dict) -> None:
        if not self._handles:
            return
        self._disarm()
        values, self._values = self._values, {}
        if not values:
            return
        xp = backend.array_module(next(iter(values.values())))
        host = backend.to_numpy(xp.stack([v.reshape(()).astype(np.float64)
                                          for v in values.values()])).tolist()
        record: dict = {name: {"type": kind} for name, kind in self._order}  # G's, then D's
        for (name, _, stat), v in zip(values, host, strict=True):
            record[name][stat] = v if math.isfinite(v) else None
        record = {name: v for name, v in record.items() if len(v) > 1}     # layers that ran
        line = {"step": trainer.step,
                "epoch": trainer.epoch + trainer.loader._batch / len(trainer.loader),
                "layers": record}
        with open(trainer.out / self.filename, "a") as f:
            f.write(json.dumps(line) + "\n")

    def on_train_end(self, trainer) -> None:
        self._disarm()
        self._values = {}

    def _arm(self, trainer) -> None:
        self._order = []
        for prefix, net in (("G", trainer.G), ("D", trainer.D)):
            for name, m in layers(net, prefix):
                kind = type(m).__name__
                self._order.append((name, kind))
                done: set = set()
                self._handles.append(m.register_forward_pre_hook(self._pre(name, kind, done)))
                self._handles.append(m.register_forward_hook(self._post(name, kind, done)))

    def _disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _pre(self, name: str, kind: str, done: set):
        def hook(module, args):
            if done or not is_grad_enabled():
                return None
            x = args[0].data
            if isinstance(module, nn.LeakyReLU):
                self._values[(name, kind, "neg")] = (x < 0).mean()
            if isinstance(module, BATCHNORMS) and module.track_running_stats:
                xp = backend.array_module(x)
                mean, var = _channel_stats(x)            # (C,) before this batch updates them
                rm = module.running_mean.astype(np.float64)
                rv = module.running_var.astype(np.float64)
                self._values[(name, kind, "bn_shift")] = (
                    xp.abs(mean - rm) / xp.sqrt(rv + module.eps)).mean()
                self._values[(name, kind, "bn_log_var_ratio")] = xp.log(
                    (var + module.eps) / (rv + module.eps)).mean()
            return None
        return hook

    def _post(self, name: str, kind: str, done: set):
        def hook(module, args, output):
            if done or not is_grad_enabled():
                return None
            done.add(True)
            y = output.data.astype(np.float64)
            self._values[(name, kind, "mean")] = y.mean()
            self._values[(name, kind, "std")] = y.std()
            if output.requires_grad:
                def on_grad(g):
                    gd = g.data.astype(np.float64)
                    self._values[(name, kind, "grad")] = backend.array_module(gd).sqrt(
                        (gd * gd).sum())
                self._handles.append(output.register_hook(on_grad))
            return None
        return hook


def power_spectrum(images) -> np.ndarray:
    """log10 of the mean 2-D power spectrum |FFT|^2 of images (N, C, H, W), per pixel of
    image, fftshifted so the lowest frequency is in the middle: (H, W) float64."""
    x = np.asarray(backend.to_numpy(images), np.float64)
    if x.ndim == 3:
        x = x[:, None]
    power = np.abs(np.fft.fft2(x, axes=(-2, -1))) ** 2 / (x.shape[-2] * x.shape[-1])
    return np.log10(np.fft.fftshift(power.mean(axis=(0, 1)), axes=(-2, -1)) + 1e-12)


def d_logits(D: nn.Module, images, batch_size: int = 256) -> np.ndarray:
    """D's logits (N,) on float images (N, C, H, W) in [-1, 1], in eval mode (no dropout), with
    every module's training flag and minigan's random state left as they were."""
    flags = [(m, m.training) for m in D.modules()]
    rng_state = backend.rng.get_state()
    device = backend.device_of(next(D.parameters()).data)
    out = []
    try:
        D.eval()
        with no_grad():
            for lo in range(0, len(images), batch_size):
                x = backend.to_device(np.asarray(images[lo:lo + batch_size], np.float32), device)
                out.append(backend.to_numpy(D(Tensor(x)).data).reshape(-1))
    finally:
        for m, flag in flags:
            object.__setattr__(m, "training", flag)
        backend.rng.set_state(rng_state)
    return np.concatenate(out).astype(np.float64)


class EpochViews(Callback):
    """After every epoch: D's logits on the same real images and the same G(z), and the mean
    power spectra of both (the checkerboard of strided transposed convolutions shows at the
    highest frequencies), one line of `views.jsonl`."""

    def __init__(self, n: int = 256, filename: str = "views.jsonl"):
        self.n, self.filename = n, filename
        self._real: np.ndarray | None = None

    def on_train_begin(self, trainer) -> None:
        keep_lines(trainer.out / self.filename, trainer.step)

    def fixed_batches(self, trainer) -> tuple[np.ndarray, np.ndarray]:
        """(real, z): the same training images and noise every epoch, from the run's seed."""
        from .trainer import _seed_for

        if self._real is None:
            rng = np.random.default_rng(_seed_for(trainer.config.seed, 6))
            n = min(self.n, len(trainer.images))
            pick = np.sort(rng.choice(len(trainer.images), n, replace=False))
            imgs = trainer.images[pick]
            imgs = imgs[:, None] if imgs.ndim == 3 else imgs.transpose(0, 3, 1, 2)
            self._real = imgs.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        z = np.random.default_rng(_seed_for(trainer.config.seed, 7)).standard_normal(
            (len(self._real), trainer.config.z_dim), dtype=np.float32)
        return self._real, z

    def on_epoch_end(self, trainer) -> None:
        real, z = self.fixed_batches(trainer)
        fake = trainer.sample(z)                                     # (n, C, H, W)
        line = {"step": trainer.step, "epoch": trainer.epoch,
                "logits_real": _rounded(d_logits(trainer.D, real)),
                "logits_fake": _rounded(d_logits(trainer.D, fake)),
                "spectrum_real": _rounded(power_spectrum(real)),
                "spectrum_fake": _rounded(power_spectrum(fake))}
        with open(trainer.out / self.filename, "a") as f:
            f.write(json.dumps(line) + "\n")


def _rounded(a: np.ndarray) -> list:
    return np.round(np.nan_to_num(a, nan=0.0, posinf=1e30, neginf=-1e30), 5).tolist()


def read_jsonl(path: Path) -> list[dict]:
    """The lines of a JSON-lines file ([] when it does not exist); a torn last line is skipped."""
    if not Path(path).is_file():
        return []
    out = []
    for s in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(s))
        except json.JSONDecodeError:
            continue
    return out


__all__ = ["Callback", "EpochViews", "LayerStatistics", "StepFunction", "as_callback",
           "d_logits", "layers", "power_spectrum", "read_jsonl"]
