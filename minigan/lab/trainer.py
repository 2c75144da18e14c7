"""LabTrainer: a GAN on 2-D points, stepped one D or G update at a time or run to the end.

A run folder like the image trainer's (the same checkpoint format, atomic writes, exact
resume, config.json and metrics.jsonl), with what a 2-D run shows instead of sample grids:

    RUN/config.json           config, seed, optimizer recipe, mixture, versions
    RUN/metrics.jsonl         losses every `log_every` steps; the protocol's 'modes',
                              'high_quality' (%), 'reverse_kl' every `eval_every` steps
    RUN/frames/step_NNNNNNN.png  every `frame_every` steps: D's output over the plane with the
                              real and fake points and G's gradient arrows, and G's image of a
                              regular grid of noise points (lab.Frames)
    RUN/lab.gif               those frames in order
    RUN/curves.png, protocol.png   losses, and the protocol's numbers over training
    RUN/checkpoints/last.npz  G, D, both optimizers, every random state, the step

In a notebook: `lab = LabTrainer(LabConfig(...))`, then `lab.d_step()`, `lab.g_step()`,
`lab.frame()` show one update at a time; `lab.fit()` trains to `steps`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .. import backend, manual_seed, no_grad, randn, viz
from ..autograd import Tensor, grad
from ..gan.callbacks import Callback, as_callback
from ..gan.checkpoint import gan_state, load_checkpoint, load_gan_state, save_checkpoint
from ..gan.models import Recipe
from ..gan.steps import (
    check_top_k,
    d_update,
    decay_schedulers,
    g_update,
    restore_schedule,
    top_k,
    top_k_schedule,
)
from ..gan.trainer import (
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
    _prepare_out,
    _progress_bar,
    _read_records,
    _seed_for,
    _write_text,
    make_config_loss,
    versions,
)
from . import mixtures, models, protocol

RECIPES = {
    "bce": Recipe("adam", 1e-4, 1e-4, 100, beta1=0.8,
                  source="PacGAN's 2-D experiments: Adam 1e-4, beta1 0.8, batch 100"),
    "wgan-gp": Recipe("adam", 1e-4, 1e-4, 100, beta1=0.5, beta2=0.9,
                      source="WGAN-GP's toy experiments: Adam 1e-4, betas (0.5, 0.9)"),
}
RECIPES["hinge"] = RECIPES["bce"]


@dataclass
class LabConfig:
    """Everything that defines a 2-D run; None means the loss's recipe value."""

    mixture: str = "ring"               # ring | grid | path to a .npy of (N, 2) points
    out: str = "runs/lab"
    loss: str = "bce"                   # bce | hinge | wgan-gp
    pack: int = 1                       # PacGAN's m: D judges m samples at once
    steps: int = 5000
    batch_size: int | None = None       # packs per D batch (m * batch points); 100
    lr: float | None = None
    beta1: float | None = None
    lr_decay: float = 0.0               # fraction of training, at its end, over which both
                                        # learning rates fall linearly to 0 (0: constant)
    z_dim: int = 2
    g_hidden: int = 400
    g_layers: int = 4
    g_batchnorm: bool = True            # PacGAN's G: BatchNorm before every ReLU
    d_hidden: int = 200
    d_layers: int = 3
    n_critic: int | None = None         # D updates per G update (wgan-gp: 5)
    label_smoothing: float = 0.0        # bce only
    gp_lambda: float = 10.0             # wgan-gp only
    g_top_k: float = 1.0                # G learns from the fraction of each batch's packs D
                                        # scores highest, annealed to this from 1 (top-k
                                        # training, Sinha et al. 2020; 1: all of them, off)
    g_top_k_decay: float = 0.99         # ... the fraction's factor every g_top_k_every steps
    g_top_k_every: int = 100            # G steps between those factors (the lab has no epochs)
    seed: int = 0
    device: str = "cpu"
    log_every: int = 50
    eval_every: int = 500               # steps between protocol evaluations; 0 = end only
    frame_every: int = 250              # steps between frames; 0 = none
    checkpoint_every: int = 1000        # and always at the end
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> LabConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown lab config keys {unknown}")
        return cls(**d)


# settings that only change what is recorded: may change when resuming
VIEW_KEYS = ("progress", "log_every", "eval_every", "frame_every", "checkpoint_every", "device")


class LabTrainer:
    """G and D on a 2-D mixture; `d_step()`, `g_step()`, `train_step()`, `fit()`."""

    def __init__(self, config: LabConfig, callbacks=(), overwrite: bool = False,
                 _resuming: bool = False):
        self.config = config
        self.out = Path(config.out)
        if not _resuming:
            _prepare_out(self.out, overwrite)
        self.device = backend.check_device(config.device)
        self.mixture = mixtures.load(config.mixture)
        self.loss = make_config_loss(config)
        self.n_critic = int(config.n_critic or self.loss.n_critic)
        if config.pack < 1 or self.n_critic < 1 or config.steps < 0:
            raise ValueError(f"pack and n_critic must be at least 1 and steps >= 0, got pack "
                             f"{config.pack}, n_critic {self.n_critic}, steps {config.steps}")
        check_top_k(config.g_top_k, config.g_top_k_decay)
        if config.g_top_k_every < 1:
            raise ValueError(f"g_top_k_every is the number of G steps between top-k's decays, "
                             f"at least 1; got {config.g_top_k_every}")
        self.recipe = RECIPES[self.loss.name].with_overrides(
            lr=config.lr, beta1=config.beta1, batch_size=config.batch_size)
        manual_seed(config.seed)
        self.G = models.generator(config.z_dim, config.g_hidden, config.g_layers,
                                  config.g_batchnorm)
        self.D = models.discriminator(config.pack, config.d_hidden, config.d_layers)
        self.G.to(self.device)
        self.D.to(self.device)
        self.opt_g, self.opt_d = self.recipe.optimizers(self.G, self.D)
        self.schedulers = decay_schedulers((self.opt_g, self.opt_d), config.lr_decay,
                                           lambda: self.total_steps)
        self.rng = np.random.default_rng(_seed_for(config.seed, 1))     # real points
        self.fixed_noise = np.random.default_rng(_seed_for(config.seed, 2)).standard_normal(
            (500 - 500 % config.pack, config.z_dim), dtype=np.float32)
        self.fixed_real = self.mixture.sample(500, np.random.default_rng(_seed_for(config.seed, 6)))
        self.eval_noise = np.random.default_rng(_seed_for(config.seed, 5)).standard_normal(
            (protocol.SAMPLES, config.z_dim), dtype=np.float32)
        self.callbacks = [ModeProtocol(), Frames()] + [as_callback(c) for c in callbacks]
        self.step = 0
        self.elapsed = 0.0
        self.records: list[dict] = []
        self._window: dict[str, float] = {}
        self._window_n = 0
        self._saved_step: int | None = None
        self._t0: float | None = None
        self._stop_requested = False

    # ---- one update at a time ----------------------------------------------------------
    @property
    def points_per_batch(self) -> int:
        """Real (and fake) points per D update: packs per batch times the pack size."""
        return self.recipe.batch_size * self.config.pack

    def real_batch(self) -> Tensor:
        pts = self.mixture.sample(self.points_per_batch, self.rng)          # (B * m, 2)
        return Tensor(backend.to_device(pts, self.device))

    def d_step(self) -> dict:
        """One D update on a fresh real batch and fresh G(z) (G untouched); host floats."""
        real = self.real_batch()
        with no_grad():
            fake = self.G(randn(self.points_per_batch, self.config.z_dim, device=self.device))
        return _floats(d_update(self.D, self.opt_d, self.loss, real, fake))

    def top_k(self, step: int | None = None, batch: int | None = None) -> int | None:
        """How many of `batch` packs (default: a training batch's) G learns from at G step
        `step` (default: the next one): top_k_schedule with `g_top_k_every` steps in place of
        an epoch, as the image Trainer's `top_k`; None: all."""
        c = self.config
        step = self.step if step is None else step
        return top_k_schedule(step // c.g_top_k_every, batch or self.recipe.batch_size,
                              c.g_top_k, c.g_top_k_decay)

    def g_step(self) -> dict:
        """One G update on D's verdict on fresh G(z) (D untouched), from the `top_k()` packs
        D scores highest; host floats."""
        fake = self.G(randn(self.points_per_batch, self.config.z_dim, device=self.device))
        return _floats(g_update(self.D, self.opt_g, self.loss, fake, self.top_k()))

    def train_step(self) -> dict:
        """`n_critic` D updates, then one G update; D's statistics are their means."""
        sums: dict = {}
        for _ in range(self.n_critic):
            for k, v in self.d_step().items():
                sums[k] = sums.get(k, 0.0) + v
        stats = {k: v / self.n_critic for k, v in sums.items()}
        stats.update(self.g_step())
        for sched in self.schedulers:
            sched.step()
        return stats

    # ---- what G and D are doing now ----------------------------------------------------
    def sample(self, z) -> np.ndarray:
        """G(z) as host float32 (N, 2), in eval mode (BatchNorm's running statistics), without
        recording a graph."""
        self.G.eval()
        try:
            with no_grad():
                return backend.to_numpy(self.G(Tensor(backend.to_device(
                    np.asarray(z, np.float32), self.device))).data)
        finally:
            self.G.train()

    def evaluate(self) -> dict:
        """The protocol on G's 2,500 fixed-noise samples (needs a mixture with modes)."""
        if not self.mixture.has_modes:
            raise ValueError(f"{self.mixture.name} is a point set without modes: the mode "
                             "protocol needs the ring or the grid")
        return protocol.evaluate(self.sample(self.eval_noise), self.mixture.means,
                                 self.mixture.sigma)

    def d_surface(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """D's output at every (x, y) of the grid xs x ys, (len(ys), len(xs)): the probability
        'real' (sigmoid of the logit), or the raw score of a critic. A packed D judges a
        pack of m copies of the point."""
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
        pts = np.repeat(pts, self.config.pack, axis=0)                     # (P * m, 2)
        with no_grad():
            out = backend.to_numpy(self.D(Tensor(backend.to_device(pts, self.device))).data)
        out = out.astype(np.float64).reshape(gy.shape)
        return out if self.loss.critic else 1.0 / (1.0 + np.exp(-out))

    def g_gradients(self, z) -> tuple[np.ndarray, np.ndarray]:
        """(G(z), -d loss_G / d G(z)): where each fake point is, and where G's loss pushes
        it (len(z) must be a multiple of the pack size). With top-k training the loss is
        over the share of these packs that a G step now takes of its batch, D's favourites:
        the others' push is 0, as in a G step."""
        x = Tensor(backend.to_device(self.sample(z), self.device), requires_grad=True)
        scores = self.D(x)
        (g,) = grad(self.loss.g_loss(top_k(scores, self.top_k(batch=scores.shape[0]))), [x])
        return backend.to_numpy(x.data), -backend.to_numpy(g.data)

    def noise_grid(self, lines: int = 15, points: int = 60, span: float = 2.5) -> np.ndarray:
        """G's image of a regular grid of noise: (2 * lines, points, 2) polylines, the lines
        of constant z1 and constant z2 over [-span, span] (other noise coordinates 0)."""
        t = np.linspace(-span, span, points)
        c = np.linspace(-span, span, lines)
        z = np.zeros((2, lines, points, self.config.z_dim), np.float32)
        z[0, :, :, 0], z[0, :, :, 1] = c[:, None], t[None, :]
        z[1, :, :, 0], z[1, :, :, 1] = t[None, :], c[:, None]
        return self.sample(z.reshape(-1, self.config.z_dim)).reshape(2 * lines, points, 2)

    def frame(self, path: str | os.PathLike | None = None, note: str = "") -> Path:
        """Draw the current state (see viz.plot_lab_frame) to `path` (default
        RUN/frames/step_NNNNNNN.png)."""
        x0, x1, y0, y1 = self.mixture.extent(0.5 if self.mixture.name == "ring" else 1.0)
        xs, ys = np.linspace(x0, x1, 90), np.linspace(y0, y1, 90)
        fake, push = self.g_gradients(self.fixed_noise)
        k = self.top_k()
        path = Path(path) if path is not None else (
            self.out / "frames" / f"step_{self.step:07d}.png")
        title = (f"{self.mixture.name}, {self.loss.name}"
                 f"{f', pack {self.config.pack}' if self.config.pack > 1 else ''}"
                 f"{f', G learns from the top {k} of {self.recipe.batch_size}' if k else ''}: "
                 f"step {self.step}{note}")
        return viz.plot_lab_frame(path, self.d_surface(xs, ys), (x0, x1, y0, y1),
                                  self.fixed_real, fake, push, self.noise_grid(),
                                  critic=self.loss.critic, title=title)

    # ---- state -------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return int(self.config.steps)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoints" / "last.npz"

    def state_dict(self) -> dict:
        return {"format": 1, "kind": "lab", "step": self.step, "elapsed": self._seconds(),
                **gan_state(self.G, self.D, self.opt_g, self.opt_d),
                "data_rng": self.rng.bit_generator.state,
                "config": asdict(self.config),
                "window": {"n": self._window_n, "sums": dict(self._window)}}

    def load_state_dict(self, state: dict) -> None:
        load_gan_state(state, self.G, self.D, self.opt_g, self.opt_d)
        self.rng.bit_generator.state = state["data_rng"]
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        restore_schedule(self.schedulers, self.step)
        self._window_n = int(state["window"]["n"])
        self._window = {k: float(v) for k, v in state["window"]["sums"].items()}
        self._saved_step = self.step

    def save_checkpoint(self) -> Path:
        """RUN/checkpoints/last.npz, written atomically."""
        path = save_checkpoint(self.checkpoint_path, self.state_dict())
        self._saved_step = self.step
        return path

    @classmethod
    def resume(cls, run: str | os.PathLike, steps: int | None = None, callbacks=(),
               **changes) -> LabTrainer:
        """Rebuild a lab run from RUN/config.json and its checkpoint; `steps` may lengthen it,
        `changes` may set the settings that do not change the computation (VIEW_KEYS)."""
        run = Path(run)
        cfg_path, ckpt = run / "config.json", run / "checkpoints" / "last.npz"
        if not cfg_path.is_file() or json.loads(cfg_path.read_text()).get("kind") != "lab":
            raise FileNotFoundError(f"{run} is not a lab run folder (no lab config.json); "
                                    "start one with: python -m minigan lab ring --out RUN")
        if not ckpt.is_file():
            raise FileNotFoundError(f"{run} has no checkpoint ({ckpt}) to resume from; start "
                                    "it again with --overwrite")
        config = LabConfig.from_dict(json.loads(cfg_path.read_text())["config"])
        config.out = str(run)
        if steps is not None:
            config.steps = int(steps)
        for key, value in changes.items():
            if key not in VIEW_KEYS:
                raise ValueError(f"cannot change {key!r} when resuming: it would change the "
                                 "computation")
            setattr(config, key, value)
        trainer = cls(config, callbacks=callbacks, _resuming=True)
        trainer.load_state_dict(load_checkpoint(ckpt))
        trainer.records = _read_records(run / "metrics.jsonl", trainer.step)
        for frame in (run / "frames").glob("step_*.png"):     # drawn after the checkpoint
            if int(frame.stem.split("_")[1]) > trainer.step:
                frame.unlink()
        return trainer

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to `steps`, writing the run folder; returns a short summary."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_config()
        total = self.total_steps
        if self.step >= total:
            print(f"{self.out} already finished at step {self.step} of {total}; resume with a "
                  "larger --steps to train longer")
            return self.summary()
        self._t0 = time.perf_counter()
        bar = _progress_bar(total, self.step, self.config.progress)
        # the image trainer's Ctrl-C handler: the first press sets _stop_requested, and the
        # loop stops after the step in progress with a checkpoint; a second stops at once
        self._stop_requested = False
        old_handler = Trainer._install_sigint(self)
        try:
            for cb in self.callbacks:
                cb.on_train_begin(self)
            while self.step < total:
                for cb in self.callbacks:
                    cb.on_step_begin(self)
                stats = self.train_step()
                self.step += 1
                for k, v in stats.items():
                    self._window[k] = self._window.get(k, 0.0) + v
                self._window_n += 1
                bar.update(1)
                if self.step % self.config.log_every == 0 or self.step == total:
                    self._log_window()
                    bar.set_postfix_str(f"D {stats['loss_d']:.3f} G {stats['loss_g']:.3f}",
                                        refresh=False)
                for cb in self.callbacks:
                    cb.on_step_end(self, stats)
                if self.config.checkpoint_every and self.step % self.config.checkpoint_every \
                        == 0 and self.step < total:
                    self.save_checkpoint()
                if self._stop_requested:
                    path = self.save_checkpoint()
                    raise TrainingInterrupted(
                        f"interrupted at step {self.step}; checkpoint saved to {path}. Continue "
                        f"with: python -m minigan lab --resume {self.out}", path)
            if self._saved_step != self.step:
                self.save_checkpoint()
        finally:
            Trainer._restore_sigint(self, old_handler)
            bar.close()
            self.elapsed, self._t0 = self._seconds(), None
            for cb in self.callbacks:
                cb.on_train_end(self)
        return self.summary()

    def log(self, **record) -> None:
        """Append one line to RUN/metrics.jsonl (with the step and the training seconds)."""
        record = {"step": self.step, **record, "seconds": round(self._seconds(), 3)}
        self.records.append(record)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _log_window(self) -> None:
        n = self._window_n
        if not n:
            return
        means = {k: v / n for k, v in self._window.items()}
        for name in ("loss_d", "loss_g"):
            if not math.isfinite(means[name]):
                raise NonFiniteLossError(
                    f"{name} became {means[name]} by step {self.step}; training stopped and "
                    f"{self.checkpoint_path} keeps the last good weights. Try a lower --lr or "
                    "another --seed")
        self._window, self._window_n = {}, 0
        if self.schedulers:
            means["lr_g"], means["lr_d"] = self.opt_g.lr, self.opt_d.lr
        if self.config.g_top_k != 1:
            means["g_top_k"] = self.top_k(self.step - 1)             # the last step's
        self.log(**means)

    def summary(self) -> dict:
        return {"run": str(self.out), "step": self.step, "seconds": round(self._seconds(), 1),
                "gif": str(self.out / "lab.gif"), "metrics": str(self.out / "metrics.jsonl"),
                "checkpoint": str(self.checkpoint_path)}

    def _seconds(self) -> float:
        return self.elapsed + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def _write_config(self) -> None:
        path = self.out / "config.json"
        history = json.loads(path.read_text()).get("sessions", []) if path.is_file() else []
        history.append({"started_at_step": self.step, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "argv": sys.argv})
        m = self.mixture
        doc = {"kind": "lab", "config": asdict(self.config), "seed": self.config.seed,
               "recipe": self.recipe.to_dict(), "loss": self.loss.config(),
               "n_critic": self.n_critic, "total_steps": self.total_steps,
               "points_per_batch": self.points_per_batch,
               "mixture": {"name": m.name, "modes": None if m.means is None else len(m.means),
                           "sigma": m.sigma},
               "protocol": {"samples": protocol.SAMPLES, "threshold_sigma": protocol.THRESHOLD},
               "versions": versions(), "sessions": history}
        _write_text(path, json.dumps(doc, indent=2) + "\n")


def _floats(stats: dict) -> dict:
    return {k: float(v) for k, v in stats.items()}


class ModeProtocol(Callback):
    """Log the protocol's modes, high-quality % and reverse KL every `eval_every` steps and
    at the last step (mixtures with modes only)."""

    def on_step_end(self, trainer, stats: dict) -> None:
        every = trainer.config.eval_every
        if not trainer.mixture.has_modes:
            return
        if (every and trainer.step % every == 0) or trainer.step == trainer.total_steps:
            m = trainer.evaluate()
            trainer.log(modes=m["modes"], high_quality=round(m["high_quality"], 3),
                        reverse_kl=None if math.isnan(m["reverse_kl"])
                        else round(m["reverse_kl"], 5), mode_hist=m["histogram"])


class Frames(Callback):
    """Draw a frame every `frame_every` steps (and of the start), and at the end the GIF,
    curves.png and protocol.png."""

    def on_train_begin(self, trainer) -> None:
        if trainer.config.frame_every and not (
                trainer.out / "frames" / f"step_{trainer.step:07d}.png").is_file():
            trainer.frame()

    def on_step_end(self, trainer, stats: dict) -> None:
        every = trainer.config.frame_every
        if every and (trainer.step % every == 0 or trainer.step == trainer.total_steps):
            last = next((r for r in reversed(trainer.records)
                         if r.get("step") == trainer.step and "modes" in r), None)
            note = (f" | {last['modes']}/{trainer.mixture.means.shape[0]} modes, "
                    f"{last['high_quality']:.0f}% high quality") if last else ""
            trainer.frame(note=note)

    def on_train_end(self, trainer) -> None:
        frames = sorted((trainer.out / "frames").glob("step_*.png"))
        if frames:
            viz.save_gif(frames, trainer.out / "lab.gif", duration_ms=250)
        if trainer.records:
            viz.plot_curves(trainer.records, trainer.out / "curves.png",
                            title=f"{trainer.mixture.name} ({trainer.loss.name})")
        if any("modes" in r for r in trainer.records):
            viz.plot_protocol(trainer.records, trainer.out / "protocol.png",
                              num_modes=len(trainer.mixture.means))


def train(config: LabConfig | None = None, overwrite: bool = False, **options) -> dict:
    """Train a new lab run: train(mixture='ring', loss='bce', steps=2000, out='runs/ring')."""
    return LabTrainer(config or LabConfig(**options), overwrite=overwrite).fit()
