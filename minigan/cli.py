"""The command line: python -m minigan train | sample | interpolate | eval | inspect | export |
lab | sweep.

    python -m minigan train --dataset mnist --arch dcgan --epochs 5 --out runs/mnist
    python -m minigan train --loss wgan-gp --epochs 5 --out runs/mnist-wgan
    python -m minigan train --resume runs/mnist --epochs 10
    python -m minigan sample runs/mnist -n 64 -o digits.png
    python -m minigan interpolate runs/mnist -o walk.gif
    python -m minigan eval runs/mnist -n 2000
    python -m minigan inspect runs/mnist      # nearest training images, spectra, index.html
    python -m minigan export runs/mnist --format onnx -o G.onnx   # or safetensors, web
    python -m minigan lab ring --loss bce     # a GAN on 2-D points: frames, GIF, mode protocol
    python -m minigan sweep examples/sweep_mnist.toml   # many runs on Dask, one report
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from . import __version__

TRAIN_CHOICES = {"arch": ("dcgan", "atienza", "dense", "radford"),
                 "loss": ("bce", "hinge", "wgan-gp")}
# flags that define the computation: fixed once a run has started
RUN_FLAGS = ("dataset", "arch", "batch_size", "lr", "lr_d", "lr_g", "beta1", "beta2", "recipe",
             "seed", "limit", "min_enclosed_marks", "image_size", "channels", "flip", "z_dim",
             "width", "g_width", "d_width", "d_depth", "g_kernel", "loss", "label_smoothing",
             "lr_decay", "ema", "ema_rampup", "spectral_norm", "gp_lambda", "r1_gamma",
             "r1_every", "d_dropout", "augment", "n_critic", "data_root", "g_top_k",
             "g_top_k_decay")
# flags that only change what is measured and shown: may change when resuming
VIEW_FLAGS = ("device", "log_every", "checkpoint_every", "quality_every", "log_internals",
              "picture_budget")


def _run_flags(p, default_out: str, what: str) -> None:
    """The flags of a command that trains into a run folder (train, lab)."""
    p.add_argument("--seed", type=int, help="seeds everything (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument("--out", help=f"run folder (default {default_out})")
    p.add_argument("--resume", metavar="RUN", help=f"continue the {what} in this folder")
    p.add_argument("--overwrite", action="store_true", help="start over in an existing run folder")


def _top_k_flags(p, what: str, when: str, more: str = "") -> None:
    """--g-top-k and --g-top-k-decay (top-k training), for `what` G learns from."""
    p.add_argument("--g-top-k", type=float, metavar="FRACTION",
                   help=f"top-k training (Sinha et al. 2020): G learns only from the {what} D "
                        f"scores most realistic, all of them at first, then a share falling by "
                        f"--g-top-k-decay {when} down to FRACTION (e.g. 0.5; default 1: all)"
                        + more)
    p.add_argument("--g-top-k-decay", type=float, metavar="GAMMA",
                   help=f"the share's factor {when} with --g-top-k (default 0.99)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minigan", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"minigan {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GAN (or continue one with --resume)",
                       description="Train a GAN and write samples, curves and checkpoints "
                                   "to a run folder.")
    t.add_argument("--dataset", help="mnist | mnist:test | quickdraw:CATEGORY | ellipses | "
                                     "folder:PATH (default mnist)")
    t.add_argument("--arch", choices=TRAIN_CHOICES["arch"], help="default dcgan")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="epochs to train (default 5)")
    length.add_argument("--steps", type=int, help="steps to train instead of epochs")
    t.add_argument("--batch-size", type=int, help="default: the arch's recipe (64 for dcgan)")
    t.add_argument("--lr", type=float, help="learning rate of both nets")
    t.add_argument("--lr-d", type=float, help="learning rate of D")
    t.add_argument("--lr-g", type=float, help="learning rate of G")
    t.add_argument("--beta1", type=float, help="Adam's beta1")
    t.add_argument("--beta2", type=float,
                   help="Adam's beta2 (default: the recipe's, 0.999; 0.9 for wgan-gp)")
    t.add_argument("--recipe", help="optimizer recipe: default, or 'tutorial' for dcgan "
                                    "(the TensorFlow tutorial's Adam 1e-4, beta1 0.9, batch 256)")
    _run_flags(t, "runs/DATASET-ARCH", "run")
    t.add_argument("--limit", type=int, help="use only the first N images")
    t.add_argument("--min-enclosed-marks", type=int, metavar="N",
                   help="of those, train only on the drawings whose outline closes around N "
                        "marks or more (e.g. 2: the faces with a head around eyes and mouth; "
                        "minigan.data.drawings.enclosed_marks); default: all")
    t.add_argument("--image-size", type=int, help="image size for folder: and ellipses "
                                                  "datasets (default 28)")
    t.add_argument("--channels", type=int, choices=(1, 3), help="1 or 3, for folder: datasets")
    t.add_argument("--flip", action="store_true", default=None,
                   help="mirror images left-right at random")
    t.add_argument("--z-dim", type=int, help="noise dimension (default 100)")
    t.add_argument("--width", type=int, help="layer width multiplier (default 64, the recipes' "
                                             "own size; smaller trains faster)")
    t.add_argument("--g-width", type=int, help="G's width alone (default: --width), as "
                                               "ngf in PyTorch's DCGAN")
    t.add_argument("--d-width", type=int, help="D's width alone (default: --width), as ndf")
    t.add_argument("--d-depth", type=int, choices=(2, 3),
                   help="arch dcgan: D's stride-2 convolutions, 2 (the tutorial's, default) or 3 "
                        "(one more, 3x3 to twice the channels at 4x4)")
    t.add_argument("--g-kernel", type=int, choices=(3, 5),
                   help="arch dcgan: kernel size of G's first transposed convolution, 5 (the "
                        "tutorial's, default) or 3 (about half of G's multiply-adds at width 32)")
    t.add_argument("--loss", choices=TRAIN_CHOICES["loss"],
                   help="default bce; wgan-gp trains D as a critic (no BatchNorm, no dropout) "
                        "with Adam 1e-4, betas (0, 0.9) unless --lr/--beta1 say otherwise")
    t.add_argument("--label-smoothing", type=float,
                   help="one-sided: real label 1 - s for D (bce only)")
    t.add_argument("--lr-decay", type=float, metavar="FRACTION",
                   help="let both learning rates fall linearly to 0 over this last fraction of "
                        "training (e.g. 0.5; default 0: constant)")
    t.add_argument("--ema", type=float, metavar="DECAY",
                   help="draw samples, grids and metrics with an exponential moving average of "
                        "G's weights (e.g. 0.99; default 0: off)")
    t.add_argument("--ema-rampup", type=float, metavar="FRACTION",
                   help="keep the average's half-life at most this fraction of the steps so "
                        "far (e.g. 0.25), so that early grids follow G instead of its first "
                        "weights (StyleGAN2-ADA's ema_rampup; default 0: off)")
    t.add_argument("--spectral-norm", action="store_true", default=None,
                   help="spectrally normalise D's layers and drop its BatchNorm and dropout "
                        "(SNGAN's discriminator)")
    t.add_argument("--gp-lambda", type=float,
                   help="weight of the gradient penalty (wgan-gp only; default 10)")
    t.add_argument("--r1-gamma", type=float, metavar="GAMMA",
                   help="add GAMMA/2 * ||grad D(x)||^2 at real images to D's loss, the R1 "
                        "penalty (e.g. 10; default 0: off)")
    t.add_argument("--r1-every", type=int, metavar="K",
                   help="take the R1 penalty every K D steps only, weighted K times (default "
                        "1; 4 costs a quarter of the time)")
    _top_k_flags(t, "samples", "every epoch")
    t.add_argument("--d-dropout", type=float, metavar="P",
                   help="D's dropout rate (default: the arch's own, 0.3 for dcgan; 0: none)")
    t.add_argument("--augment", metavar="POLICY",
                   help="show D every image, real and generated, through the same random "
                        "transformations (DiffAugment): a comma-separated list of color, "
                        "translation, cutout (default: none)")
    t.add_argument("--n-critic", type=int,
                   help="D steps per G step, each on a fresh real batch (default: 5 for "
                        "wgan-gp, else 1)")
    t.add_argument("--log-every", type=int, help="steps per line of metrics.jsonl (default 10)")
    t.add_argument("--log-internals", action="store_true", default=None,
                   help="also log gradient and weight norms of every parameter of G and D")
    t.add_argument("--quality-every", type=int,
                   help="epochs between classifier metrics on 2000 samples (FD, modes, "
                        "collapse warning), MNIST and Quick Draw only (default 1; 0 = off)")
    t.add_argument("--checkpoint-every", type=int,
                   help="also save a checkpoint every N steps (default: every epoch)")
    t.add_argument("--picture-budget", type=float, metavar="F",
                   help="the most of the training time spent redrawing progress.gif, "
                        "curves.png and the run page after epochs (default 0.05; 1: after "
                        "every epoch); each epoch's grid is always saved, and all is redrawn "
                        "at the end")
    t.add_argument("--data-root", help="data folder (default $MINIGAN_DATA or the cache)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw images from a trained generator")
    s.add_argument("run", help="run folder")
    s.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("-o", "--output", required=True,
                   help=".npy (uint8 (N, H, W) or (N, H, W, 3)) or .png (a grid)")
    s.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    s.add_argument("--nrow", type=int, default=8, help="images per row in a .png grid")
    s.add_argument("--device", choices=("cpu", "cuda"), default="cpu")

    i = sub.add_parser("interpolate", help="walk through the latent space between random points")
    i.add_argument("run", help="run folder")
    i.add_argument("-o", "--output", required=True,
                   help=".png (one row per walk) or .gif (the walks animated)")
    i.add_argument("--steps", type=int, default=10, help="points along each walk (default 10)")
    i.add_argument("--rows", type=int, default=8, help="number of walks (default 8)")
    i.add_argument("--method", choices=("slerp", "lerp"), default="slerp",
                   help="spherical (default; stays where Gaussian noise lives) or straight")
    i.add_argument("--seed", type=int, default=0, help="seed of the end points (default 0)")
    i.add_argument("--device", choices=("cpu", "cuda"), default="cpu")

    e = sub.add_parser("eval", help="score a trained generator with the dataset's classifier",
                       description="Draw samples from a run's generator and print classifier "
                                   "metrics beside the scores of real test images "
                                   "(MNIST and Quick Draw runs).")
    e.add_argument("run", help="run folder")
    e.add_argument("-n", type=int, default=2000, help="number of samples (default 2000)")
    e.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    e.add_argument("--repeats", type=int, default=1, metavar="R",
                   help="also score R - 1 more noise draws (seeds SEED+1 ...) and print the "
                        "Frechet distance's mean and range (for Quick, Draw! runs the share "
                        "drawn whole's too): how much of a difference between two runs the "
                        "noise alone could make (default 1)")
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu")

    n = sub.add_parser("inspect", help="is G copying? samples beside their nearest training "
                                       "images, power spectra, and the run's index.html",
                       description="Write RUN/nearest.png (samples beside their nearest "
                                   "training images, in the classifier's feature space for "
                                   "MNIST and Quick Draw, else in pixels), RUN/spectrum.png, "
                                   "RUN/inspect.json, and rewrite RUN/index.html.")
    n.add_argument("run", help="run folder")
    n.add_argument("-n", type=int, default=8, help="samples shown in nearest.png (default 8)")
    n.add_argument("-k", type=int, default=5, help="neighbours shown per sample (default 5)")
    n.add_argument("--stats", type=int, default=500,
                   help="samples and held-out images behind the distance ratio (default 500)")
    n.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    n.add_argument("--device", choices=("cpu", "cuda"), default="cpu")

    x = sub.add_parser("export", help="write the generator as ONNX, safetensors or a web page",
                       description="Write a run's generator in inference form, its BatchNorm "
                                   "statistics calibrated as `minigan sample --seed SEED` "
                                   "calibrates them: ONNX (needs pip install "
                                   "'minigan[export]'), safetensors with PyTorch's state-dict "
                                   "keys, or a static web page that draws new samples.")
    x.add_argument("run", help="run folder")
    x.add_argument("--format", required=True, choices=("onnx", "safetensors", "web"))
    x.add_argument("-o", "--output", required=True,
                   help="G.onnx, G.safetensors, or a folder for web (index.html and 3 scripts)")
    x.add_argument("--seed", type=int, default=0,
                   help="seed of the BatchNorm calibration noise, as minigan sample's --seed "
                        "(default 0)")
    _lab_parser(sub)
    w = sub.add_parser("sweep", help="many runs across seeds and settings on Dask, and a "
                                     "report comparing them (pip install 'minigan[sweep]')",
                       description="Train the cross product of a grid of settings times seeds, "
                                   "each run a run folder under SWEEP/runs/, as tasks on a "
                                   "local Dask cluster or an existing scheduler; then write "
                                   "SWEEP/report.html and report.md. Running it again skips "
                                   "finished runs and continues the others.")
    w.add_argument("spec", nargs="?", help="a .toml or .yaml spec (title, out, seeds, workers, "
                                           "[settings], [grid]); the options below add to it")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="sweep a setting over values, e.g. loss=bce,wgan-gp (repeatable)")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of every run, e.g. epochs=2 (repeatable; the names of "
                        "`train`'s options, e.g. batch_size or batch-size)")
    w.add_argument("--seeds", help="seeds of every setting: 0-4 or 0,3,7 (default 0)")
    w.add_argument("--out", help="sweep folder (default sweeps/sweep)")
    w.add_argument("--workers", type=int, help="worker processes of the local cluster "
                                               "(default: one per core)")
    w.add_argument("--threads", type=int, help="BLAS and numba threads per run (default: the "
                                               "cores over the workers)")
    w.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    w.add_argument("--retry-failed", action="store_true",
                   help="train failed runs again (default: keep them as failed)")
    w.add_argument("--every", type=float, default=30.0,
                   help="seconds between progress lines (default 30)")
    return p


def _lab_parser(sub) -> None:
    lab = sub.add_parser("lab", help="a GAN on 2-D points (ring, grid, a .npy): D's heat map, "
                                     "G's mapping and the mode protocol over training",
                         description="Train small MLPs on a 2-D mixture and write frames, "
                                     "RUN/lab.gif, the mode protocol in metrics.jsonl and "
                                     "RUN/index.html.")
    lab.add_argument("mixture", nargs="?",
                     help="ring (8 Gaussians) | grid (25 Gaussians) | PATH.npy of (N, 2) points")
    lab.add_argument("--loss", choices=TRAIN_CHOICES["loss"], help="default bce")
    lab.add_argument("--pack", type=int, help="PacGAN packing: D judges m samples at once "
                                              "(default 1)")
    lab.add_argument("--steps", type=int, help="G steps (default 5000)")
    lab.add_argument("--batch-size", type=int, help="packs per D batch (default 100)")
    lab.add_argument("--lr", type=float, help="both learning rates (default 1e-4)")
    lab.add_argument("--beta1", type=float, help="Adam's beta1 (default 0.8; wgan-gp 0.5)")
    lab.add_argument("--lr-decay", type=float, metavar="FRACTION",
                     help="let both learning rates fall linearly to 0 over this last fraction "
                          "of training (default 0: constant)")
    lab.add_argument("--n-critic", type=int, help="D steps per G step (default: 5 for "
                                                  "wgan-gp, else 1)")
    _top_k_flags(lab, "packs", "every --g-top-k-every steps",
                 "; the frames' arrows show which points G learns from")
    lab.add_argument("--g-top-k-every", type=int, metavar="STEPS",
                     help="G steps between those factors (default 100)")
    _run_flags(lab, "runs/lab-MIXTURE-LOSS[-packM]", "lab run")
    lab.add_argument("--frame-every", type=int, help="steps between frames (default 250)")
    lab.add_argument("--eval-every", type=int, help="steps between protocol evaluations "
                                                    "(default 500)")
    lab.add_argument("--log-every", type=int, help="steps per line of metrics.jsonl "
                                                   "(default 50)")
    lab.add_argument("--checkpoint-every", type=int, help="steps between checkpoints "
                                                          "(default 1000, and at the end)")
    lab.add_argument("--no-progress", action="store_true", help="no progress bar")


LAB_RUN_FLAGS = ("mixture", "loss", "pack", "batch_size", "lr", "beta1", "lr_decay", "n_critic",
                 "g_top_k", "g_top_k_decay", "g_top_k_every", "seed")
LAB_VIEW_FLAGS = ("device", "frame_every", "eval_every", "log_every", "checkpoint_every")


def _lab(args, parser) -> int:
    from .lab import LabConfig, LabTrainer
    from .report import RunReport

    given = {k: v for k, v in vars(args).items() if v is not None}
    changes = {k: given[k] for k in LAB_VIEW_FLAGS if k in given}
    if args.no_progress:
        changes["progress"] = False
    if args.resume:
        clash = [k for k in LAB_RUN_FLAGS if k in given] + ["out"] * bool(args.out)
        if clash or args.overwrite:
            names = ", ".join("--" + k.replace("_", "-")
                              for k in clash + ["overwrite"] * args.overwrite)
            parser.error(f"{names} cannot be given "
                         "with --resume: a resumed run keeps its config (only --steps and "
                         "the --*-every, --device, --no-progress options may change)")
        lab = LabTrainer.resume(args.resume, steps=args.steps, **changes)
    else:
        if not args.mixture:
            parser.error("lab needs a mixture (ring, grid or PATH.npy), or --resume RUN")
        fields = {k: given[k] for k in LAB_RUN_FLAGS + ("steps",) if k in given}
        config = LabConfig(**fields, **changes)
        pack = f"-pack{config.pack}" if config.pack > 1 else ""
        config.out = args.out or f"runs/lab-{_slug(Path(config.mixture).stem)}-{config.loss}{pack}"
        lab = LabTrainer(config, overwrite=args.overwrite)
    lab.callbacks.append(RunReport())           # RUN/index.html at the end
    print(f"lab: {lab.mixture.name} with the {lab.loss.name} loss, pack {lab.config.pack}, "
          f"{lab.total_steps} steps of {lab.points_per_batch} points"
          f"{f' ({lab.n_critic} D steps each)' if lab.n_critic > 1 else ''}, from step "
          f"{lab.step} -> {lab.out}")
    summary = lab.fit()
    last = next((r for r in reversed(lab.records) if "modes" in r), None)
    if last:
        print(f"modes covered {last['modes']}/{len(lab.mixture.means)}, high quality "
              f"{last['high_quality']:.1f} %, reverse KL {last['reverse_kl']}")
    print(f"done: {summary['run']} (lab.gif, metrics.jsonl, index.html), step "
          f"{summary['step']}, {summary['seconds']} s")
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "run"


def _train(args, parser) -> int:
    from .gan import TrainConfig, Trainer

    given = {k: v for k, v in vars(args).items() if v is not None}
    if args.resume:
        clash = [k for k in RUN_FLAGS if k in given] + (["out"] if args.out else [])
        if clash or args.overwrite:
            names = ", ".join("--" + k.replace("_", "-") for k in clash + ["overwrite"] * bool(
                args.overwrite))
            parser.error(f"{names} cannot be given with --resume: a resumed run keeps its "
                         "config (only --epochs/--steps, --device, --log-every, "
                         "--checkpoint-every, --quality-every, --log-internals, "
                         "--picture-budget and --no-progress may change)")
        changes = {k: given[k] for k in VIEW_FLAGS if k in given}
        if args.no_progress:
            changes["progress"] = False
        trainer = Trainer.resume(args.resume, epochs=args.epochs, steps=args.steps, **changes)
    else:
        fields = {k: given[k] for k in RUN_FLAGS + VIEW_FLAGS + ("epochs", "steps")
                  if k in given}
        config = TrainConfig(**fields)
        config.out = args.out or f"runs/{_slug(config.dataset)}-{config.arch}"
        config.progress = not args.no_progress
        trainer = Trainer(config, overwrite=args.overwrite)
    from .report import RunReport

    trainer.callbacks.append(RunReport())       # RUN/index.html and its pictures
    if trainer.device == "cpu":
        from .precompile import compile_cpu_kernels

        compile_cpu_kernels()  # says so when the kernels are not in numba's cache yet
    critic = f", {trainer.n_critic} D steps each" if trainer.n_critic > 1 else ""
    print(f"training {trainer.config.arch} on {trainer.config.dataset} with the "
          f"{trainer.loss.name} loss ({len(trainer.images)} images {trainer.image_shape}), "
          f"{trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch, batch "
          f"{trainer.recipe.batch_size}{critic}), from step {trainer.step} -> {trainer.out}")
    summary = trainer.fit()
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    print(f"done: step {summary['step']}, epoch {summary['epoch']}, {summary['seconds']} s")
    for key in ("samples", "gif", "curves", "metrics", "checkpoint"):
        print(f"  {key:<10} {summary[key]}")


def load_generator(run: str | Path, device: str = "cpu"):
    """(G, info) from a run folder: G with the last checkpoint's weights, info from config."""
    from .gan import build, load_checkpoint, net_options

    run = Path(run)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.json)")
    info = json.loads(cfg_path.read_text())
    config = info["config"]
    G, _, _ = build(config["arch"], info["image_shape"], config["z_dim"], config["recipe"],
                    config.get("width", 64), **net_options(config))
    state = load_checkpoint(run / "checkpoints" / "last.npz")
    if "G_ema" in state:       # trained with --ema: the moving average draws, as in training
        G.load_state_dict({k.removeprefix("module."): v for k, v in state["G_ema"].items()
                           if k.startswith("module.")})
    else:
        G.load_state_dict(state["G"])
    G.to(device)
    info["trained_steps"] = state["step"]
    return G, info


def _sample(args) -> int:
    from . import viz
    from .gan import generate, to_uint8

    G, info = load_generator(args.run, args.device)
    if args.n < 1:
        raise ValueError(f"-n must be at least 1, got {args.n}")
    z = np.random.default_rng(args.seed).standard_normal((args.n, info["config"]["z_dim"]),
                                                         dtype=np.float32)
    images = generate(G, z, batch_size=info["recipe"]["batch_size"], seed=args.seed)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        np.save(out, to_uint8(images))
    elif out.suffix.lower() == ".png":
        viz.save_grid(images, out, nrow=args.nrow)
    else:
        raise ValueError(f"-o must end in .npy or .png, got {out.name}")
    print(f"{args.n} samples from {args.run} (step {info['trained_steps']}) -> {out}")
    return 0


def _interpolate(args) -> int:
    from . import viz
    from .gan import generate, latent_walk

    G, info = load_generator(args.run, args.device)
    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".gif"):
        raise ValueError(f"-o must end in .png or .gif, got {out.name}")
    z = latent_walk(args.rows, args.steps, info["config"]["z_dim"], args.seed, args.method)
    images = generate(G, z, batch_size=info["recipe"]["batch_size"], seed=args.seed)
    if out.suffix.lower() == ".png":
        viz.save_grid(images, out, nrow=args.steps)
    else:
        walks = images.reshape(args.rows, args.steps, *images.shape[1:])
        order = list(range(args.steps)) + list(range(args.steps - 2, 0, -1))   # there and back
        nrow = int(np.ceil(np.sqrt(args.rows)))
        frames = [viz.image_grid(walks[:, t], nrow=nrow) for t in order]
        frames = [f.repeat(3, axis=0).repeat(3, axis=1) for f in frames]
        viz.save_gif(frames, out, duration_ms=120, hold_last_ms=120)
    print(f"{args.rows} {args.method} walks of {args.steps} steps from {args.run} -> {out}")
    return 0


def _eval(args) -> int:
    from . import metrics
    from .gan import generate, has_quality_metrics

    G, info = load_generator(args.run, args.device)
    config = info["config"]
    dataset, root = config["dataset"], config.get("data_root")
    if not has_quality_metrics(dataset):
        raise ValueError(f"{args.run} was trained on {dataset!r}, which has no classifier to "
                         "score it with: eval works for mnist and quickdraw:CATEGORY runs "
                         "(for others, look at: python -m minigan sample RUN -o grid.png)")
    if args.n < 2:
        raise ValueError(f"-n must be at least 2, got {args.n}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    model = metrics.classifier(dataset, root, device=args.device)
    ref = metrics.reference(dataset, root, model)

    def score(seed: int) -> dict:
        z = np.random.default_rng(seed).standard_normal((args.n, config["z_dim"]),
                                                        dtype=np.float32)
        images = generate(G, z, batch_size=info["recipe"]["batch_size"], seed=seed)
        return metrics.evaluate(images, dataset, model=model, real=ref, seed=seed)

    got = score(args.seed)
    floor = metrics.real_floor(dataset, root, device=args.device, n=args.n, seed=args.seed)
    print(f"{args.run}: {args.n} samples (seed {args.seed}) from step {info['trained_steps']}, "
          f"{dataset}; beside them {floor['n']} real test images, the floor")
    k = got["num_classes"]
    rows = (("Frechet distance (classifier)", "fd", "{:.2f}"),
            ("modes covered", "modes", "{}/" + str(k)),
            ("KL to real class mix (nats)", "kl", "{:.4f}"),
            ("mean confidence", "confidence", "{:.3f}"),
            ("diversity (1 = real)", "diversity", "{:.3f}"),
            ("nearest-neighbour diversity", "nn_diversity", "{:.3f}"))
    if "marks2" in got:            # Quick, Draw!: drawn whole? (metrics.drawing_structure)
        rows += tuple((label, key, "{:.1%}") for key, label in metrics.DRAWING_STRUCTURE)
    print(f"  {'':<30}{'samples':>10}{'real':>10}")
    for label, key, fmt in rows:
        print(f"  {label:<30}{fmt.format(got[key]):>10}{fmt.format(floor[key]):>10}")
    print("  class histogram (% of images):")
    width = max(len(c) for c in got["classes"])
    for c, p, q in zip(got["classes"], got["histogram"], floor["histogram"], strict=True):
        print(f"    {c:<{width}}  {100 * p:5.1f}  {100 * q:5.1f}  {'#' * round(50 * p)}")
    warning = metrics.collapse_warning(got)
    print(f"  {warning}" if warning else "  no sign of mode collapse")
    record = {"samples": args.n, "seed": args.seed, "step": info["trained_steps"],
              "real images": floor["n"]}
    for label, key, fmt in rows:
        record[f"{label}: samples"] = fmt.format(got[key])
        record[f"{label}: real"] = fmt.format(floor[key])
    record["collapse warning"] = warning or "none"
    if args.repeats > 1:
        # the figures that move most with the noise, each over the noise seeds: the distance,
        # and for drawings the share drawn whole (2,000 samples' draws differ by a few points)
        seeds = list(range(args.seed, args.seed + args.repeats))
        runs = [got] + [score(s) for s in seeds[1:]]
        for label, key, fmt in (row for row in rows if row[1] in ("fd", "marks2", "marks2_bold",
                                                                   "marks3_bold")):
            values = [r[key] for r in runs]
            name = label.removesuffix(" (classifier)")
            print(f"  {name} over noise seeds {seeds[0]}-{seeds[-1]}: mean "
                  f"{fmt.format(np.mean(values))}, range {fmt.format(min(values))}-"
                  f"{fmt.format(max(values))} ({', '.join(fmt.format(v) for v in values)})")
            # strings, as the other fields, so that the run page's table shows them
            record[f"{label}: noise seeds"] = f"{seeds[0]}-{seeds[-1]}"
            record[f"{label}: per seed"] = ", ".join(fmt.format(v) for v in values)
            record[f"{label}: mean over seeds"] = fmt.format(np.mean(values))
    (Path(args.run) / "eval.json").write_text(json.dumps(record, indent=1) + "\n")
    from .report import refresh

    refresh(args.run)  # the run's index.html shows the table
    print(f"  written to {Path(args.run) / 'eval.json'}; the table is on "
          f"{Path(args.run) / 'index.html'}")
    return 0


def _export(args) -> int:
    from .export import export_generator

    checkpoint = Path(args.run) / "checkpoints" / "last.npz"
    if (Path(args.run) / "config.json").is_file() and not checkpoint.is_file():
        raise FileNotFoundError(
            f"{args.run} has no checkpoint to export ({checkpoint} is missing): a run saves one "
            "after every epoch (or every --checkpoint-every steps). Train it until it has one "
            f"(python -m minigan train --resume {args.run}), then export again")
    G, info = load_generator(args.run)
    out = export_generator(G, args.format, args.output, z_dim=info["config"]["z_dim"],
                           batch_size=info["recipe"]["batch_size"], seed=args.seed, info=info)
    what = {"onnx": "ONNX model", "safetensors": "state dict",
            "web": "page (open index.html; the folder is static)"}[args.format]
    print(f"generator of {args.run} (step {info['trained_steps']}) -> {out}: {what}")
    return 0


def _inspect(args) -> int:
    from .inspect import describe, inspect_run

    if args.n < 1 or args.k < 1:
        raise ValueError(f"-n and -k must be at least 1, got -n {args.n} -k {args.k}")
    result = inspect_run(args.run, n=args.n, k=args.k, n_stats=args.stats, seed=args.seed,
                         device=args.device)
    print(describe(result, args.run))
    return 0


def _sweep(args) -> int:
    from .sweep import build_spec, read_spec_file, run_sweep

    doc = read_spec_file(args.spec) if args.spec else {}
    spec = build_spec(doc, grid=args.grid, settings=args.set, seeds=args.seeds, out=args.out,
                      workers=args.workers, threads=args.threads, scheduler=args.scheduler)
    try:
        results = run_sweep(spec, interval=args.every, retry_failed=args.retry_failed)
    except KeyboardInterrupt:
        print(f"\ninterrupted: every run keeps its last checkpoint; the same command continues "
              f"the sweep in {spec.out}", file=sys.stderr)
        return 130
    return 0 if all(r["state"] == "finished" for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from .data import DataNotFoundError
    from .gan import NonFiniteLossError, TrainingInterrupted

    try:
        if args.command == "train":
            return _train(args, parser)
        if args.command == "sample":
            return _sample(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "export":
            return _export(args)
        if args.command == "lab":
            return _lab(args, parser)
        if args.command == "sweep":
            return _sweep(args)
        return _interpolate(args)
    except TrainingInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    except NonFiniteLossError as e:
        print(f"minigan: training stopped: {e}", file=sys.stderr)
        return 1
    except (DataNotFoundError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"minigan: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
