"""The GAN training loop, and everything it leaves in the run folder to show what happened.

    RUN/config.json             the full config, seed, optimizer recipe and library versions
    RUN/metrics.jsonl           one JSON line every `log_every` steps, and one per epoch with the
                                pixel 'fd' and, for MNIST and Quick Draw, classifier metrics
                                ('fd_cls', 'modes', 'kl', ...) and any 'collapse' warning
    RUN/curves.png              losses, D accuracy (or critic values), D outputs and quality,
                                with mode-collapse warnings marked in red; redrawn every epoch
    RUN/samples/epoch_NNN.png   the same 64 fixed noise vectors through G after every epoch
    RUN/progress.gif            all those grids in order, refreshed every epoch
    RUN/checkpoints/last.npz    G, D, both optimizers, random states, loader position, step
    RUN/views.jsonl             per epoch, D's logits on fixed real and fake batches and their
                                power spectra (callbacks.EpochViews)
    RUN/internals.jsonl         with log_internals, per-layer statistics of G and D every
                                `log_every` steps (callbacks.LayerStatistics)

Per-step and per-epoch work beyond the loop itself is done by callbacks (callbacks.py); the
pictures of what they record, and RUN/index.html, are drawn by minigan.report.

A step: D descends on real images and on a batch of G(z) (detached, so G is untouched), then
G descends on D's verdict on the same G(z). With `n_critic` > 1 (WGAN-GP) D takes that many
descents per step, each on a fresh real batch and fresh noise, and G uses the last one's G(z);
a step is one G update. Everything random comes from one seed, and a checkpoint holds every
random state, so a resumed run takes exactly the steps it would have.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .. import __version__, backend, manual_seed, no_grad, randn, viz
from ..atomic import atomic_open
from ..data import DataLoader, load_dataset
from ..data.drawings import enclosed_marks
from ..kernels import shifted
from ..kernels import threads as T
from ..optim import AveragedModel, ema_decay, get_ema_multi_avg_fn
from .augment import Augmented, parse_policy
from .callbacks import EpochViews, LayerStatistics, as_callback
from .checkpoint import gan_state, load_checkpoint, load_gan_state, save_checkpoint
from .distance import PixelFrechet
from .losses import GANLoss, make_loss
from .models import Recipe, build, net_options
from .sampling import generate, to_uint8
from .steps import (
    check_top_k,
    d_update,
    decay_schedulers,
    g_update,
    linear_decay,
    restore_schedule,
    top_k_schedule,
)

OUTPUTS = ("config.json", "metrics.jsonl", "curves.png", "progress.gif", "samples",
           "checkpoints", "views.jsonl", "internals.jsonl", "index.html", "internals.png",
           "d_logits.png", "spectra.png", "nearest.png", "spectrum.png", "inspect.json",
           "eval.json")


@dataclass
class TrainConfig:
    """Everything that defines a run; None means 'the architecture recipe's value'."""

    dataset: str = "mnist"
    arch: str = "dcgan"
    out: str = "runs/run"
    epochs: int | None = None           # train this many epochs (5 when neither is given) ...
    steps: int | None = None            # ... or this many steps
    batch_size: int | None = None
    lr: float | None = None             # both learning rates
    lr_d: float | None = None
    lr_g: float | None = None
    beta1: float | None = None
    beta2: float | None = None          # Adam's second-moment decay (None: the recipe's)
    recipe: str = "default"             # e.g. 'tutorial' for arch dcgan
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None            # keep the first N images
    min_enclosed_marks: int | None = None   # of those, keep the drawings whose outline closes
                                        # around at least this many marks (data.drawings;
                                        # None: all)
    image_size: int | None = None       # for folder: and ellipses datasets (default 28)
    channels: int = 1                   # for folder: datasets
    flip: bool = False
    z_dim: int = 100
    width: int = 64                     # layer width multiplier (64: the recipes' own size)
    g_width: int | None = None          # G's alone (None: width), as PyTorch's DCGAN's ngf
    d_width: int | None = None          # D's alone (None: width), as its ndf
    d_depth: int | None = None          # arch dcgan: 3 gives D a third stride-2 convolution
    g_kernel: int | None = None         # arch dcgan: kernel of G's first transposed convolution
                                        # (3 or 5, the tutorial's)
    loss: str = "bce"                   # bce | hinge | wgan-gp
    label_smoothing: float = 0.0        # bce only
    lr_decay: float = 0.0               # fraction of training, at its end, over which both
                                        # learning rates fall linearly to 0 (0: constant)
    ema: float = 0.0                    # decay of an exponential moving average of G's weights
                                        # that draws every sample, grid and metric (0: off, G's
                                        # own weights draw)
    ema_rampup: float = 0.0             # the average's half-life at most this fraction of the
                                        # steps so far (StyleGAN2-ADA's rampup; 0: the decay
                                        # from the first step)
    spectral_norm: bool = False         # D's layers spectrally normalised, no BatchNorm or
                                        # dropout in D (SNGAN's discriminator)
    gp_lambda: float = 10.0             # wgan-gp only: weight of the gradient penalty
    r1_gamma: float = 0.0               # weight of the R1 penalty on D's gradient at real
                                        # images (Mescheder et al. 2018; 0: off)
    r1_every: int = 1                   # take R1 every this many D steps, its weight times
                                        # this ("lazy" R1, Karras et al. 2020)
    d_dropout: float | None = None      # D's dropout rate (None: the architecture's own)
    g_top_k: float = 1.0                # G learns from the fraction of each batch D scores
                                        # highest, annealed to this from 1 (top-k training,
                                        # Sinha et al. 2020; 1: every sample, off)
    g_top_k_decay: float = 0.99         # ... the fraction's factor per epoch on the way down
    augment: str = ""                   # DiffAugment policy for everything D sees in training,
                                        # e.g. "translation,cutout" (augment.py; "": none)
    n_critic: int | None = None         # D steps per G step (None: the loss's own, 5 for wgan-gp)
    log_every: int = 10                 # steps per metrics line (values are window means)
    host_every: int | None = None       # steps between reads of the logged scalars on the host
                                        # (None: 1 on the CPU, log_every on a GPU, so a GPU
                                        # step never waits for the device)
    log_internals: bool = False         # also log gradient and weight norms of every parameter,
                                        # and per-layer statistics (internals.jsonl)
    checkpoint_every: int = 0           # steps; 0 = at the end of every epoch only
    fd_every: int = 1                   # epochs between pixel Frechet distances; 0 = never
    quality_every: int = 1              # epochs between classifier metrics (mnist, quickdraw)
    quality_samples: int = 2000         # samples (from fixed noise) behind those metrics
    picture_budget: float = 0.05        # the most of the training time that redrawing
                                        # progress.gif, curves.png and callbacks' pictures (the
                                        # run page) may take: after an epoch they are redrawn
                                        # only while within it (1: after every epoch). The
                                        # epoch's grid is always saved, and everything is
                                        # redrawn when training stops.
    data_root: str | None = None
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**d)

    def total_steps(self, batches_per_epoch: int, n_critic: int = 1) -> int:
        """`steps`, or enough steps (of n_critic batches each) to finish `epochs` epochs."""
        if self.steps is not None:
            return int(self.steps)
        epochs = int(self.epochs if self.epochs is not None else 5)
        return -(-epochs * batches_per_epoch // n_critic)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stopped without saving the bad weights."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a whole step, and a checkpoint was saved."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


def versions() -> dict:
    import numba

    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "minigan": __version__, "platform": platform.platform()}


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def _seed_for(seed: int, purpose: int) -> int:
    """Independent streams from one seed: the loader, fixed noise, sampling noise..."""
    return int(np.random.SeedSequence([seed, purpose]).generate_state(1)[0])


def make_config_loss(config: TrainConfig) -> GANLoss:
    """The GAN loss a config names, with its options; options of another loss are an error."""
    if config.label_smoothing and config.loss != "bce":
        raise ValueError(f"label_smoothing applies to the bce loss, not {config.loss!r}")
    if config.gp_lambda != TrainConfig.gp_lambda and config.loss != "wgan-gp":
        raise ValueError(f"gp_lambda applies to the wgan-gp loss, not {config.loss!r}")
    options = {"bce": {"label_smoothing": config.label_smoothing},
               "wgan-gp": {"gp_lambda": config.gp_lambda}}.get(config.loss, {})
    return make_loss(config.loss, **options)


def has_quality_metrics(dataset: str) -> bool:
    """True for the datasets minigan.metrics has a classifier for (mnist, quickdraw:...)."""
    return dataset.partition(":")[0].strip().lower() in ("mnist", "quickdraw")


def load_images(config: TrainConfig) -> np.ndarray:
    """The dataset named in the config, uint8 (N, H, W) or (N, H, W, 3)."""
    kind = config.dataset.partition(":")[0].strip().lower()
    if config.image_size is not None and kind not in ("folder", "ellipses"):
        raise ValueError(f"--image-size applies to folder: and ellipses datasets; "
                         f"{config.dataset!r} has a fixed size (28x28)")
    images = load_dataset(config.dataset, root=config.data_root, limit=config.limit,
                          size=config.image_size or 28, channels=config.channels)
    if config.min_enclosed_marks is None:
        return images
    if config.min_enclosed_marks < 0:
        raise ValueError(f"min_enclosed_marks is a number of marks, 0 or more; got "
                         f"{config.min_enclosed_marks}")
    if images.ndim != 3:
        raise ValueError(f"min_enclosed_marks selects line drawings, one channel; "
                         f"{config.dataset!r} has {images.shape[3]} channels")
    keep = enclosed_marks(images) >= config.min_enclosed_marks
    if not keep.any():
        raise ValueError(f"none of the {len(images)} images of {config.dataset!r} has a closed "
                         f"outline around {config.min_enclosed_marks} marks or more: lower "
                         "--min-enclosed-marks, or leave it out to train on all of them")
    return images[keep]


class Trainer:
    """Build everything a run needs from a TrainConfig; `fit()` trains and writes RUN/.

    `images` (uint8) replaces loading `config.dataset`; `loss` replaces `config.loss`;
    `callbacks` are `callbacks.Callback`s (on_train_begin, on_step_begin, on_step_end,
    on_epoch_end, on_train_end) or plain functions called as fn(trainer, stats) after every
    step; the values of `stats` are 0-d arrays on the training device (float(v) reads one,
    waiting for the device). EpochViews, and LayerStatistics with `log_internals`, come first.

    The logged scalars (losses, D's accuracy, ...) stay on the device as 0-d arrays and are
    read on the host in one transfer every `host_every` steps, at each metrics line, before
    every checkpoint and at the end of an epoch; that read is where a non-finite loss is
    caught, and it names the exact step. On the CPU the default reads every step.
    """

    def __init__(self, config: TrainConfig, images: np.ndarray | None = None,
                 loss: GANLoss | None = None, callbacks=(), overwrite: bool = False,
                 _resuming: bool = False):
        self.config = config
        self.out = Path(config.out)
        if not _resuming:
            _prepare_out(self.out, overwrite)
        self.device = backend.check_device(config.device)
        self.images = load_images(config) if images is None else images
        if self.images.ndim not in (3, 4):
            raise ValueError(f"images must be (N, H, W) or (N, H, W, 3), got {self.images.shape}")
        h, w = self.images.shape[1:3]
        self.image_shape = (1 if self.images.ndim == 3 else self.images.shape[3], h, w)

        self.loss = loss if loss is not None else make_config_loss(config)
        self.n_critic = int(config.n_critic if config.n_critic is not None
                            else self.loss.n_critic)
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be at least 1, got {self.n_critic}")
        recipe = "wgan-gp" if self.loss.critic and config.recipe == "default" else config.recipe
        manual_seed(config.seed)
        self.G, self.D, base = build(config.arch, self.image_shape, config.z_dim, recipe,
                                     config.width, critic=self.loss.critic,
                                     spectral_norm=config.spectral_norm,
                                     **net_options(asdict(config)))
        if config.r1_gamma < 0 or int(config.r1_every) != config.r1_every or config.r1_every < 1:
            raise ValueError(f"r1_gamma must be >= 0 and r1_every a positive integer, got "
                             f"{config.r1_gamma} and {config.r1_every}")
        if config.ema_rampup < 0 or (config.ema_rampup and not config.ema):
            raise ValueError(f"ema_rampup must be >= 0 and needs a moving average to ramp up "
                             f"(--ema DECAY, e.g. 0.9995 with --ema-rampup 0.25); got ema_rampup "
                             f"{config.ema_rampup} with ema {config.ema}")
        check_top_k(config.g_top_k, config.g_top_k_decay)
        self.recipe: Recipe = base.with_overrides(config.lr, config.lr_d, config.lr_g,
                                                  config.beta1, config.batch_size,
                                                  config.beta2)
        self.G.to(self.device)
        self.D.to(self.device)
        # what the D and G updates call: D itself, or D behind DiffAugment (D is what is saved)
        self.D_seen = Augmented(self.D, config.augment) if parse_policy(config.augment) else self.D
        self.opt_g, self.opt_d = self.recipe.optimizers(self.G, self.D)
        self.G_ema = (AveragedModel(self.G, multi_avg_fn=get_ema_multi_avg_fn(
            config.ema, config.ema_rampup or None)) if config.ema else None)
        self.loader = DataLoader(self.images, self.recipe.batch_size, shuffle=True,
                                 drop_last=True, flip=config.flip,
                                 seed=_seed_for(config.seed, 1), device=self.device)
        self.schedulers = decay_schedulers((self.opt_g, self.opt_d), config.lr_decay,
                                           lambda: self.total_steps)
        self.fixed_noise = np.random.default_rng(_seed_for(config.seed, 2)).standard_normal(
            (64, config.z_dim), dtype=np.float32)
        self.callbacks = [EpochViews()] + [LayerStatistics()] * bool(config.log_internals) + [
            as_callback(c) for c in callbacks]
        self.step = 0
        self.epochs_drawn = 0            # epochs whose grid has been saved
        self.elapsed = 0.0               # training seconds before this session
        self.records: list[dict] = []
        self._window: dict[str, float] = {}
        self._window_n = 0
        self._pending: list[tuple[int, dict]] = []   # (step, stats) not yet read on the host
        self.host_every = int(config.host_every or (1 if self.device == "cpu"
                                                    else max(1, config.log_every)))
        self._distance = None
        self._quality: tuple | None = None       # (classifier, reference) once set up
        self._quality_off = not (config.quality_every and has_quality_metrics(config.dataset))
        self._collapse: str | None = None        # the latest warning, shown in the bar
        self._bar = None
        self._stop_requested = False
        self._consistent = True
        self._saved_step = None
        self._last_grid: tuple[int, Path] | None = None
        self._calibration: dict = {}             # BatchNorm statistics to sample with, until G
                                                 # changes (a step, a loaded state)
        self._threads_said = 0                   # kernels.threads.Detect switches reported
        self._pictures_step: int | None = None   # the step the pictures were last drawn at
        self._picture_seconds = 0.0              # time spent drawing them in this fit()
        self._t0: float | None = None

    # ---- state -------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.loader.epoch

    @property
    def steps_per_epoch(self) -> int:
        """G steps per pass over the data (rounded up: with n_critic > 1, steps straddle
        epochs)."""
        return -(-len(self.loader) // self.n_critic)

    @property
    def total_steps(self) -> int:
        return self.config.total_steps(len(self.loader), self.n_critic)

    def lr_factor(self, step: int) -> float:
        """The learning rates' factor at `step` (`steps.linear_decay` over `lr_decay`)."""
        return linear_decay(step, self.total_steps, self.config.lr_decay)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoints" / "last.npz"

    def state_dict(self) -> dict:
        self._read_pending()
        return {"format": 1, "step": self.step, "epoch": self.epoch,
                "epochs_drawn": self.epochs_drawn, "elapsed": self._seconds(),
                **gan_state(self.G, self.D, self.opt_g, self.opt_d),
                **({"G_ema": dict(self.G_ema.state_dict())} if self.G_ema else {}),
                "loader": self.loader.state_dict(),
                "fixed_noise": self.fixed_noise, "config": asdict(self.config),
                "window": {"n": self._window_n, "sums": dict(self._window)},
                # how the CPU convolutions were threaded, which decides their rounding: a
                # resumed run keeps it (see kernels/threads.py, MINIGAN_THREADS unset)
                "threads": shifted.thread_family() if self.device == "cpu" else None}

    def load_state_dict(self, state: dict) -> None:
        self._calibration = {}
        if self.device == "cpu":
            shifted.use_thread_family(state.get("threads"))
        load_gan_state(state, self.G, self.D, self.opt_g, self.opt_d)
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self.loader.load_state_dict(state["loader"])
        self.fixed_noise = np.asarray(state["fixed_noise"], np.float32)
        self.step, self.epochs_drawn = int(state["step"]), int(state["epochs_drawn"])
        self.elapsed = float(state["elapsed"])
        restore_schedule(self.schedulers, self.step)
        self._window_n = int(state["window"]["n"])
        self._window = {k: float(v) for k, v in state["window"]["sums"].items()}
        self._saved_step = self.step

    def save_checkpoint(self) -> Path:
        """Write RUN/checkpoints/last.npz (atomically), refusing non-finite weights."""
        self._read_pending()                 # a non-finite loss since the last read stops here
        for name, net in (("G", self.G), ("D", self.D)):
            for pname, p in net.named_parameters():
                if not np.isfinite(backend.to_numpy(p.data)).all():
                    raise NonFiniteLossError(
                        f"{name}.{pname} holds non-finite values at step {self.step}; not "
                        f"saving, so {self.checkpoint_path} keeps the last good weights")
        path = save_checkpoint(self.checkpoint_path, self.state_dict())
        self._saved_step = self.step
        return path

    @classmethod
    def resume(cls, run: str | os.PathLike, epochs: int | None = None,
               steps: int | None = None, images: np.ndarray | None = None,
               loss: GANLoss | None = None, callbacks=(), **changes) -> Trainer:
        """Rebuild a run from RUN/config.json and RUN/checkpoints/last.npz.

        `epochs` or `steps` set a new length (e.g. to train longer); `changes` may set other
        config fields that do not alter the computation (progress, log_every, device).
        """
        run = Path(run)
        cfg_path, ckpt = run / "config.json", run / "checkpoints" / "last.npz"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{run} is not a run folder (no config.json); start a run "
                                    "with: python -m minigan train --out RUN ...")
        if not ckpt.is_file():
            raise FileNotFoundError(f"{run} has no checkpoint ({ckpt}) to resume from; start "
                                    "it again with --overwrite")
        saved = json.loads(cfg_path.read_text())
        config = TrainConfig.from_dict(saved["config"])
        config.out = str(run)
        if epochs is not None:
            config.epochs, config.steps = int(epochs), None
        if steps is not None:
            config.steps = int(steps)
        for key, value in changes.items():
            if key not in ("progress", "log_every", "host_every", "device", "checkpoint_every",
                           "fd_every", "quality_every", "quality_samples", "log_internals",
                           "picture_budget"):
                raise ValueError(f"cannot change {key!r} when resuming: it would change the "
                                 "computation")
            setattr(config, key, value)
        trainer = cls(config, images=images, loss=loss, callbacks=callbacks, _resuming=True)
        trainer.load_state_dict(load_checkpoint(ckpt))
        trainer.records = _read_records(run / "metrics.jsonl", trainer.step)
        return trainer

    # ---- one step ----------------------------------------------------------------------
    def train_step(self, *reals) -> dict:
        """One D update per real batch (B, C, H, W) given, then one G update.

        D sees a fresh G(z) each time; G descends on D's verdict on the last one. The returned
        statistics are means over the D updates.
        """
        G = self.G
        self._calibration = {}              # G changes: sample() calibrates afresh
        sums: dict = {}                     # 0-d arrays on the device
        for i, real in enumerate(reals):
            z = randn(real.shape[0], self.config.z_dim, device=self.device)
            if i == len(reals) - 1:
                fake = G(z)                                         # (B, C, H, W)
            else:
                with no_grad():                                     # G's graph is not needed
                    fake = G(z)
            for k, v in self._d_step(real, fake, self._r1_weight(
                    self.step * len(reals) + i)).items():
                sums[k] = sums.get(k, 0.0) + v
        stats = {k: v / len(reals) for k, v in sums.items()}

        stats.update(g_update(self.D_seen, self.opt_g, self.loss, fake,
                              self.top_k(fake.shape[0])))
        for sched in self.schedulers:
            sched.step()
        if self.G_ema is not None:
            self.G_ema.update_parameters(G)
        return stats

    def top_k(self, batch: int | None = None, step: int | None = None) -> int | None:
        """How many of a batch G learns from at `step` (0-based; default the next one),
        by the epoch it falls in (`g_top_k`); None: all of it."""
        c = self.config
        epoch = (self.step if step is None else step) // self.steps_per_epoch
        return top_k_schedule(epoch, batch or self.recipe.batch_size, c.g_top_k,
                              c.g_top_k_decay)

    def _r1_weight(self, d_step: int) -> float | None:
        """R1's weight at this D step (counted over the run): r1_gamma * r1_every on every
        r1_every-th, 0 between them; None when R1 is off."""
        c = self.config
        if not c.r1_gamma:
            return None
        return c.r1_gamma * c.r1_every if d_step % c.r1_every == 0 else 0.0

    def _d_step(self, real, fake, r1_gamma: float | None = None) -> dict:
        """One D update on a real batch and a batch of G(z) (detached)."""
        return d_update(self.D_seen, self.opt_d, self.loss, real, fake, r1_gamma)

    def _read_pending(self) -> None:
        """Read the stats of the steps since the last read (one transfer), check that every
        loss is finite, and add them to the metrics window and the progress bar."""
        if not self._pending:
            return
        flat = [v.reshape(()) for _, st in self._pending for v in st.values()]
        values = iter(backend.to_numpy(backend.array_module(flat[0]).stack(flat)).tolist())
        host = [(step, {k: next(values) for k in st}) for step, st in self._pending]
        self._pending = []
        for step, stats in host:
            for name in ("loss_d", "loss_g"):
                self._check_finite(name, stats[name], step)
            for k, v in stats.items():
                self._window[k] = self._window.get(k, 0.0) + v
            self._window_n += 1
        self._show(host[-1][1])

    def _show(self, stats: dict) -> None:
        epoch = self.epoch + (self.loader._batch > 0)
        if self.loss.critic:
            what = f"W {stats['wasserstein']:.3f} GP {stats.get('gp', 0.0):.3f}"
        else:
            what = f"D(x) {stats['d_x']:.2f} D(G(z)) {stats['d_g_z']:.2f}"
        note = f" | {self._collapse}" if self._collapse else ""
        if self._bar is not None:
            self._bar.set_postfix_str(f"epoch {epoch} D {stats['loss_d']:.3f} "
                                      f"G {stats['loss_g']:.3f} {what}{note}", refresh=False)

    def _check_finite(self, name: str, value: float, step: int) -> None:
        if math.isfinite(value):
            return
        kept = (f"the last good checkpoint, {self.checkpoint_path}, is kept"
                if self.checkpoint_path.is_file() else "no checkpoint had been written yet")
        epoch = (step - 1) // self.steps_per_epoch + 1
        raise NonFiniteLossError(
            f"{name} became {value} at step {step} (epoch {epoch}); training "
            f"stopped and {kept}. Try a lower learning rate (--lr), another --seed, or "
            "--label-smoothing 0.1")

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to `total_steps`, writing the run folder; returns a short summary."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._t0 = time.perf_counter()
        self._picture_seconds = 0.0
        self._stop_requested = False
        total = self.total_steps
        if self.step >= total:
            print(f"{self.out} already finished at step {self.step} of {total}; to train "
                  f"longer, give a larger --epochs or --steps: minigan train --resume "
                  f"{self.out} --epochs N, or an example's own command with --epochs N")
            self._t0 = None
            return self.summary()
        bar = self._bar = _progress_bar(total, self.step, self.config.progress)
        old_handler = self._install_sigint()
        try:
            for cb in self.callbacks:
                cb.on_train_begin(self)
            if self.epoch > self.epochs_drawn:   # stopped between an epoch and its grid
                self._end_of_epoch()
            batches = self._batches()
            while self.step < total:
                for cb in self.callbacks:
                    cb.on_step_begin(self)
                self._consistent = False
                stats = self.train_step(*(next(batches) for _ in range(self.n_critic)))
                self.step += 1
                self._consistent = True
                self._after_step(stats, bar)
                if self._stop_requested:
                    raise KeyboardInterrupt
                if self.epoch > self.epochs_drawn:
                    self._end_of_epoch()
            self._read_pending()
            if self._window_n:
                self._log()
            if self._last_grid is None or self._last_grid[0] != self.step:
                self._draw(f"step_{self.step:07d}.png")
            if self._pictures_step != self.step:
                self.redraw()
            if self._saved_step != self.step:
                self.save_checkpoint()
        except KeyboardInterrupt:
            bar.close()
            if not self._consistent:
                print(f"interrupted in the middle of a step: {self.checkpoint_path} is left as "
                      "it was", file=sys.stderr)
                raise
            path = self.save_checkpoint()
            raise TrainingInterrupted(
                f"interrupted at step {self.step}; checkpoint saved to {path}. Continue with: "
                f"python -m minigan train --resume {self.out}", path) from None
        finally:
            self._redraw_stale()
            for cb in self.callbacks:
                cb.on_train_end(self)
            bar.close()
            self._bar = None
            self._restore_sigint(old_handler)
            self.elapsed, self._t0 = self._seconds(), None
        return self.summary()

    def summary(self) -> dict:
        return {"run": str(self.out), "step": self.step, "epoch": self.epoch,
                "seconds": round(self._seconds(), 1), "checkpoint": str(self.checkpoint_path),
                "samples": str(self.out / "samples"), "gif": str(self.out / "progress.gif"),
                "curves": str(self.out / "curves.png"), "metrics": str(self.out / "metrics.jsonl")}

    def _batches(self):
        """Real batches without end, one epoch after another (the loader counts epochs)."""
        while True:
            yield from self.loader

    def _after_step(self, stats: dict, bar) -> None:
        self._say_threads()
        self._pending.append((self.step, stats))
        bar.update(1)
        if len(self._pending) >= self.host_every or self.step % self.config.log_every == 0:
            self._read_pending()
        if self.step % self.config.log_every == 0:
            self._log(**(self.internals() if self.config.log_internals else {}))
        if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
            self.save_checkpoint()
        for cb in self.callbacks:
            cb.on_step_end(self, stats)

    def _say_threads(self) -> None:
        """A line above the progress bar when the default CPU threading (MINIGAN_THREADS
        unset) picks OpenBLAS's threads or the pool, or changes with the machine's load."""
        detect = shifted.THREADS
        if self.device != "cpu" or not isinstance(detect, T.Detect):
            return
        for _, family, busy in detect.switches[self._threads_said:]:
            load = "not known" if busy is None else f"{busy:.1f} cores"
            how = ("OpenBLAS's own" if family == "blas"
                   else "a pool of minigan's (a busy machine)")
            self._write(f"CPU threads: {how}; other processes use {load} (MINIGAN_THREADS="
                        f"blas or pool keeps one)")
        self._threads_said = len(detect.switches)

    def _log(self, **extra) -> None:
        record = {"step": self.step, "epoch": self.epoch + self.loader._batch / len(self.loader)}
        n = self._window_n
        if n:
            record.update({k: v / n for k, v in self._window.items()})
        if self.schedulers:
            record["lr_g"], record["lr_d"] = self.opt_g.lr, self.opt_d.lr
        if self.config.g_top_k != 1:
            record["g_top_k"] = self.top_k(step=max(self.step - 1, 0))   # the last step's
        record.update(extra)
        record["seconds"] = round(self._seconds(), 3)
        self._window, self._window_n = {}, 0
        self.records.append(record)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def internals(self) -> dict:
        """L2 norms of every parameter of G and D and of its latest gradient, and the totals
        per net: {'grad_norm/G.0.weight': ..., 'weight_norm/D': ...}. D's gradients are from
        its last update of the step, G's from its update."""
        out = {}
        for net_name, net in (("G", self.G), ("D", self.D)):
            total = {"grad_norm": 0.0, "weight_norm": 0.0}
            for name, p in net.named_parameters():
                for key, a in (("grad_norm", None if p.grad is None else p.grad.data),
                               ("weight_norm", p.data)):
                    sq = 0.0 if a is None else float((a.astype(np.float64) ** 2).sum())
                    total[key] += sq
                    out[f"{key}/{net_name}.{name}"] = math.sqrt(sq)
            for key, sq in total.items():
                out[f"{key}/{net_name}"] = math.sqrt(sq)
        return out

    def _end_of_epoch(self) -> None:
        self._read_pending()
        self._draw(f"epoch_{self.epoch:03d}.png")
        self.epochs_drawn = self.epoch
        extra = {}
        if self.config.fd_every and self.epoch % self.config.fd_every == 0:
            extra["fd"] = round(self.frechet_distance(), 4)
        if (not self._quality_off and self.epoch % self.config.quality_every == 0
                and self._quality_ready()):
            extra.update(self._quality_record())
        if extra:
            self._log(**extra)
        for cb in self.callbacks:
            cb.on_epoch_end(self)
        if self._pictures_due():
            self.redraw()
        self.save_checkpoint()

    def _pictures_due(self) -> bool:
        """Whether redrawing now keeps the time spent on pictures in this fit() within
        `picture_budget` of the time since it began (the first epoch always draws)."""
        budget = self.config.picture_budget
        if budget >= 1 or self._t0 is None:
            return True
        return self._picture_seconds <= budget * (time.perf_counter() - self._t0)

    def redraw(self) -> None:
        """Redraw progress.gif and curves.png, and call every callback's `on_pictures`."""
        start = time.perf_counter()
        self._refresh_pictures()
        for cb in self.callbacks:
            cb.on_pictures(self)
        self._pictures_step = self.step
        self._picture_seconds += time.perf_counter() - start

    def _redraw_stale(self) -> None:
        """Bring the pictures up to date when training stops early; a failure to draw is
        reported, never raised over what stopped training."""
        if self._pictures_step == self.step or not self.records:
            return
        try:
            self.redraw()
        except Exception as e:  # noqa: BLE001
            print(f"could not redraw the pictures of {self.out}: {e}", file=sys.stderr)

    def _quality_ready(self) -> bool:
        """Load the dataset's classifier and real statistics once; turn the metrics off with a
        note when they cannot be had (e.g. Quick Draw with a single category on disk)."""
        if self._quality is None:
            from .. import metrics
            from ..data import DataNotFoundError

            dataset, root = self.config.dataset, self.config.data_root
            try:
                model = metrics.classifier(dataset, root, device=self.device)
                self._quality = (model, metrics.reference(dataset, root, model))
            except (ValueError, DataNotFoundError) as e:
                self._quality_off = True
                self._write(f"classifier metrics are off for this run: {e}")
                return False
        return True

    def quality(self, n: int | None = None, own: bool = False) -> dict:
        """`metrics.evaluate` of n samples (default `quality_samples`) from fixed noise, against
        the training images of the dataset, through its classifier; `own`: of G's own weights
        even when the samples come from their moving average."""
        from .. import metrics

        if not self._quality_ready():
            raise ValueError(f"no classifier metrics for dataset {self.config.dataset!r}")
        n = int(n or self.config.quality_samples)
        z = np.random.default_rng(_seed_for(self.config.seed, 5)).standard_normal(
            (n, self.config.z_dim), dtype=np.float32)
        model, ref = self._quality
        return metrics.evaluate(self.sample(z, own=own), self.config.dataset, model=model,
                                real=ref, seed=self.config.seed)

    def _quality_record(self) -> dict:
        """The metrics.jsonl fields of `quality()`, with a 'collapse' warning when one fires
        (never at the end of the first epoch: an untrained G is collapsed by design)."""
        from .. import metrics

        m = self.quality()
        record = {"fd_cls": round(m["fd"], 4), "modes": m["modes"],
                  "num_classes": m["num_classes"]}
        for key in ("kl", "confidence", "diversity", "nn_diversity", "class_entropy_ratio"):
            record[key] = round(m[key], 4) if math.isfinite(m[key]) else None
        for key, _ in metrics.DRAWING_STRUCTURE:              # Quick, Draw! only
            if key in m:
                record[key] = round(m[key], 4)
        record["class_hist"] = [round(h, 4) for h in m["histogram"]]
        self._collapse = metrics.collapse_warning(m) if self.epoch > 1 else None
        young = self._young_average() if self._collapse and self.G_ema is not None else ""
        note = ""
        if young:
            # the average may only lag behind G: the warning is G's own to give
            own = self.quality(own=True)
            self._collapse = metrics.collapse_warning(own)
            if self._collapse:
                self._collapse += f" (G's own weights; {young})"
            else:
                note = (f" ({young}; G's own weights: diversity {own['diversity']:.2f}, "
                        f"{own['modes']} of {own['num_classes']} classes, no sign of collapse)")
        if self._collapse:
            record["collapse"] = self._collapse
            self._write(f"epoch {self.epoch}: {self._collapse}", always=True)
        else:
            self._write(f"epoch {self.epoch}: classifier FD {m['fd']:.2f}, {m['modes']} of "
                        f"{m['num_classes']} classes covered, diversity {m['diversity']:.2f}"
                        f"{note}")
        return record

    def _young_average(self) -> str:
        """Whether G's moving average, which draws the samples, still holds much of the first
        step's weights, said in words: after n updates at decay d the first one's share is
        d ** (n - 1) (the first update copies G); '' once it is under 5 %. While it is young,
        samples that look collapsed may only be the average lagging behind G, so a collapse
        warning is then decided on G's own weights."""
        n = int(self.G_ema.n_averaged)
        c = self.config
        # update k (k = 1 .. n-1 earlier ones) keeps the share ema_decay(k) of what it held
        share = float(np.prod([ema_decay(c.ema, k, c.ema_rampup or None) for k in range(1, n)]))
        if n == 0 or share < 0.05:
            return ""
        rampup = f" --ema-rampup {c.ema_rampup}" if c.ema_rampup else ""
        return (f"the samples' moving average, --ema {c.ema}{rampup}, after {n} updates "
                f"still holds {share:.0%} of the first step's weights")

    def _write(self, message: str, always: bool = False) -> None:
        """A line above the progress bar (shown with the bar, or always)."""
        if not (always or self.config.progress):
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def frechet_distance(self, n: int = 512) -> float:
        """Pixel-PCA Frechet distance from n samples of G to the training images."""
        if self._distance is None:
            self._distance = PixelFrechet(self.images, seed=self.config.seed)
        z = np.random.default_rng(_seed_for(self.config.seed, 3)).standard_normal(
            (n, self.config.z_dim), dtype=np.float32)
        return self._distance.distance(to_uint8(self.sample(z)))

    @property
    def sampler(self):
        """The generator that draws samples: the weights' moving average when `ema` is set."""
        return self.G_ema.module if self.G_ema is not None else self.G

    def sample(self, z, own: bool = False) -> np.ndarray:
        """G(z) as float (N, C, H, W) in [-1, 1], without side effects (see sampling.py); from
        `sampler`, or with `own` from G's own weights (calibrated afresh, not cached)."""
        if own and self.G_ema is not None:
            return generate(self.G, z, batch_size=self.recipe.batch_size,
                            seed=_seed_for(self.config.seed, 4))
        return generate(self.sampler, z, batch_size=self.recipe.batch_size,
                        seed=_seed_for(self.config.seed, 4), calibration=self._calibration)

    def _draw(self, name: str) -> Path:
        path = viz.save_grid(self.sample(self.fixed_noise), self.out / "samples" / name, nrow=8)
        self._last_grid = (self.step, path)
        return path

    def _refresh_pictures(self) -> None:
        grids = sorted((self.out / "samples").glob("epoch_*.png"))
        extra = sorted((self.out / "samples").glob("step_*.png"))
        frames = grids + extra[-1:]
        if frames:
            viz.save_gif(frames, self.out / "progress.gif", duration_ms=300)
        if self.records:
            marks = [r["step"] for r in self.records if r.get("collapse")]
            viz.plot_curves(self.records, self.out / "curves.png", marks=marks,
                            title=f"{self.config.arch} on {self.config.dataset}"
                                  f"{f' ({self.loss.name})' if self.loss.name != 'bce' else ''}")

    def _seconds(self) -> float:
        t0 = getattr(self, "_t0", None)
        return self.elapsed + (time.perf_counter() - t0 if t0 is not None else 0.0)

    def _write_config(self) -> None:
        path = self.out / "config.json"
        history = []
        if path.is_file():
            history = json.loads(path.read_text()).get("sessions", [])
        history.append({"started_at_step": self.step, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "argv": sys.argv})
        doc = {"config": asdict(self.config), "seed": self.config.seed,
               "recipe": self.recipe.to_dict(), "loss": self.loss.config(),
               "n_critic": self.n_critic,
               "image_shape": list(self.image_shape), "num_images": len(self.images),
               "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
               "versions": versions(), "sessions": history}
        _write_text(path, json.dumps(doc, indent=2) + "\n")

    # ---- Ctrl-C ------------------------------------------------------------------------
    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\nCtrl-C: stopping after this step and saving a checkpoint "
                  "(press again to stop at once without saving)", file=sys.stderr)

        return signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self, old) -> None:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", disable=not enabled,
                dynamic_ncols=True, file=sys.stderr)


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse to write into an existing non-empty run folder unless asked to overwrite."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty: continue it with "
                              f"--resume {out}, start it over with --overwrite, or choose "
                              "another --out")
    for name in OUTPUTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _read_records(path: Path, upto_step: int) -> list[dict]:
    """Metric lines up to a checkpoint's step; later ones (from after it) are dropped."""
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= upto_step:
            keep.append(record)
    _write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
    return keep


def train(config: TrainConfig | None = None, overwrite: bool = False, **options) -> dict:
    """Train a new run: train(dataset='ellipses', arch='dcgan', epochs=2, out='runs/e')."""
    return Trainer(config or TrainConfig(**options), overwrite=overwrite).fit()


__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "TrainingInterrupted",
           "has_quality_metrics", "load_images", "make_config_loss", "train", "versions"]
