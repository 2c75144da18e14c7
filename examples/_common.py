"""What the examples share: flags, the device, start-or-continue, and telling where things are."""

from __future__ import annotations

import argparse
from pathlib import Path

from minigan import backend
from minigan.gan import TrainConfig, Trainer
from minigan.precompile import compile_cpu_kernels
from minigan.report import RunReport


def parser(description: str, epochs: int, out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs, help=f"default {epochs}")
    p.add_argument("--out", default=out, help=f"run folder (default {out})")
    p.add_argument("--restart", action="store_true",
                   help="start over even if the run folder holds a checkpoint")
    p.add_argument("--quality-every", type=int, default=0, metavar="N",
                   help="score 2,000 samples with a small classifier every N epochs (FD, modes, "
                        "collapse warning); the first use trains the classifier, minutes on a "
                        "CPU. Default 0: off (python -m minigan eval RUN scores a finished run)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where to train (default: $MINIGAN_DEVICE, else cpu); cuda needs "
                        "pip install '.[cuda13]' (or [cuda12]) and an NVIDIA GPU")
    return p


def device(p: argparse.ArgumentParser, args) -> str:
    """The device asked for (--device, else $MINIGAN_DEVICE, else cpu), or a usage error that
    says why it cannot be used."""
    try:
        return backend.check_device(args.device)
    except (RuntimeError, ValueError) as e:
        p.error(str(e))


def run(config: TrainConfig, restart: bool = False) -> dict:
    """Train, continuing a stopped run in the same folder unless `restart` (on config.device,
    which a continued run may change)."""
    out = Path(config.out)
    if not restart and (out / "checkpoints" / "last.npz").is_file():
        print(f"continuing the run in {out} (pass --restart to start over)")
        trainer = Trainer.resume(out, epochs=config.epochs, device=config.device,
                                 callbacks=[RunReport()])
    else:
        trainer = Trainer(config, overwrite=True, callbacks=[RunReport()])
    print(f"{config.arch} (width {trainer.config.width}) on {config.dataset}: "
          f"{len(trainer.images)} images "
          f"{trainer.image_shape}, batch {trainer.recipe.batch_size}, "
          f"{trainer.steps_per_epoch} steps an epoch, {config.epochs} epochs")
    if trainer.device == "cpu":
        compile_cpu_kernels()  # says so when the kernels are not in numba's cache yet
    try:
        summary = trainer.fit()
    except KeyboardInterrupt as e:
        print(f"\n{e}")
        raise SystemExit(130) from None
    print(f"\nfinished {summary['epoch']} epochs ({summary['step']} steps) in "
          f"{summary['seconds'] / 60:.1f} min")
    print(f"  sample grids: {summary['samples']}/epoch_NNN.png")
    print(f"  progress GIF: {summary['gif']}")
    print(f"  curves:       {summary['curves']}")
    print(f"  checkpoint:   {summary['checkpoint']}")
    print(f"  the run page: {out / 'index.html'}")
    print(f"more samples:   python -m minigan sample {out} -n 64 -o {out}/more.png")
    return summary
