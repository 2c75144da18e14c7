"""Train a DCGAN on Quick, Draw! doodles and watch faces appear, epoch by epoch.

    python examples/doodles.py                       # "smiley face", writes runs/doodles/
    python examples/doodles.py --category cat --out runs/cats
    python examples/doodles.py --device cuda         # on a GPU, the nets at full width (64)

The drawings come from the data module's usual places: $MINIGAN_DATA/quickdraw/<category>.npy
if you have it (e.g. a 5000-drawing subset), else Google's full category file, downloaded once
into ~/.cache/minigan (the full "smiley face" file holds 124,386 drawings; --limit keeps the
first N so that an epoch stays short). Stop with Ctrl-C and run the same command again to go on
(a --category, --seed, --limit, --min-enclosed-marks or --width the run folder was not trained
with is refused: add --restart or give another --out).
"""

import json
from pathlib import Path

from _common import device, parser, run

from minigan.gan import TrainConfig

# 70 epochs = 10,920 steps of 32 drawings, G's first transposed convolution 3x3 (g_kernel 3; the
# tutorial's is 5x5, at width 32 three quarters of G's multiply-adds): trained alone on three
# seeds against 60 epochs with the 5x5 layer, 0.85-0.93 of the time, 0.6-2.5 points more samples
# drawn whole with bold strokes only (means of three draws) and a classifier FD 0.04-0.34 higher
# (means 1.29-1.54 against 1.20-1.34; docs/doodles.md). Adam at 6e-4 instead of 4.5e-4 on top, the
# same way: bold strokes 0.9-2.3 points higher again (means 45.0-45.9 %), the FD means 1.23-1.61
# against 1.29-1.54, in the same time. Adam (at 4.5e-4 then) with beta1 0 (no momentum), the
# learning rates falling linearly to 0 over the second half (lr_decay), and samples, grids and
# scores drawn by a moving average of G's weights (ema 0.9995, a half-life of about 1,400 steps):
# trained alone on three seeds with ema 0.999, these drew 3.0-3.3 points more samples whole than
# Adam at 3e-4 with beta1 0.5 and G's own weights (0.4-4.1 by the means of three other draws) and
# scored a classifier FD of 1.40-1.54 against 1.59-2.10; each of the three alone had moved the
# scores less than another seed does (docs/doodles.md). The longer average trains the same G and
# lowered the FD on each of three seeds against 0.999 (means 1.20-1.34 against 1.40-1.54, alone);
# its half-life ramps up (ema_rampup 0.25: at most a quarter of the steps so far, StyleGAN2-ADA's
# rule), so the first epochs' grids show G's heads, not the grey speckle of its first weights, and
# the end is level with the unramped average. D plays the original (non-saturating) game with the
# R1 penalty on its gradient at real drawings (Mescheder et al. 2018) in place of dropout, taken
# every 8th step at eight times the weight (lazy R1; every 4th step a step costs about 1.05 times
# as much, and on seed 0 the scores stayed where they were). G learns from the whole batch: top-k
# training (`g_top_k`, G's loss over the samples D scores highest only, Sinha et al. 2020) halved
# the classifier FD while D had the tutorial's two convolutions, but beside the third convolution
# below it cost 1.8-1.9 points of the share drawn whole and a higher FD on each of three seeds; it
# saves 3-6 % of a step, lost over a run in the host's drift.
# D has one convolution more than the tutorial's (d_depth 3: 3x3, stride 2, to 4x4): on three
# seeds (top-k kept then) the share of samples drawn whole, a closed head around two marks or
# more (eyes and a mouth), rose from 35-38 % to 43-46 % (held-out drawings: 52 %) and the
# classifier FD fell from 3.4-3.9 to 2.1-2.3, with R1 every 8th step for about 12 % more time a
# step; without top-k, 46-49 % and 1.6-2.1 (docs/doodles.md).
# Progress GIF, curves and run page are redrawn within 2 % of the training time (the trainer's
# default is 5 %): about 15 s less of a run on a 2-vCPU machine; every epoch's grid is saved.
EPOCHS = 70
RECIPE = dict(
    arch="dcgan", width=32,         # the TensorFlow tutorial's nets at half width: 4x cheaper
    d_depth=3, g_kernel=3,
    batch_size=32,
    loss="bce", r1_gamma=30.0, r1_every=8, d_dropout=0.0,
    lr=6e-4, beta1=0.0, lr_decay=0.5, ema=0.9995, ema_rampup=0.25,
)
PICTURE_BUDGET = 0.02


# On a GPU a step of these small nets is the host's work (minigan launches its kernels from
# Python), so the tutorial's full width costs what half width does: 60 epochs at width 64 took
# 235 s on an H200 against 199-234 s at 32, and scored a classifier FD of 4.4 against 6-8 (with
# R1 every 2nd step and no top-k, the recipe of that day; benchmarks/RESULTS.md, "Third run on
# a GPU"). On a CPU a step's cost grows with the width's
# square, so the 10-minute default stays at 32 there.
GPU_WIDTH = 64


def default_width(device: str) -> int:
    """The nets' width when --width is not given: RECIPE's on the CPU, GPU_WIDTH on a GPU."""
    return GPU_WIDTH if device == "cuda" else RECIPE["width"]


CATEGORY, SEED, LIMIT = "smiley face", 0, 5000


def config(args, device: str) -> TrainConfig:
    """The run the command line asks for, on `device` (flags not given: their defaults)."""
    recipe = dict(RECIPE, width=args.width or default_width(device))
    limit = LIMIT if args.limit is None else args.limit
    return TrainConfig(
        dataset=f"quickdraw:{args.category or CATEGORY}", limit=limit or None, **recipe,
        min_enclosed_marks=args.min_enclosed_marks,
        epochs=args.epochs, out=args.out, seed=SEED if args.seed is None else args.seed,
        quality_every=args.quality_every, picture_budget=PICTURE_BUDGET, device=device,
    )


# the flags that choose what a run is, and the TrainConfig field each sets
RUN_FLAGS = {"category": "dataset", "seed": "seed", "limit": "limit", "width": "width",
             "min_enclosed_marks": "min_enclosed_marks"}


def clashes(args, wanted: TrainConfig, saved: dict) -> list[tuple[str, object, object]]:
    """(field, the run folder's value, the value asked for) for each of RUN_FLAGS given on
    the command line that the run in the folder was not trained with: continuing the run
    would ignore it."""
    return [(field, saved.get(field), getattr(wanted, field))
            for flag, field in RUN_FLAGS.items()
            if getattr(args, flag) is not None and getattr(wanted, field) != saved.get(field)]


def main() -> None:
    p = parser("Train a DCGAN on Quick, Draw! doodles.", EPOCHS, "runs/doodles")
    p.add_argument("--category", help=f"Quick, Draw! category (default {CATEGORY!r})")
    p.add_argument("--seed", type=int, help=f"default {SEED}")
    p.add_argument("--limit", type=int,
                   help=f"use the first N drawings (default {LIMIT}; 0 for all)")
    p.add_argument("--min-enclosed-marks", type=int, metavar="N",
                   help="train only on the drawings whose outline closes around N marks or more "
                        "(2: heads drawn around eyes and a mouth, 2,587 of the 5,000 smiley "
                        "faces; give --epochs 137 for about the default's 10,920 steps); "
                        "default: all")
    p.add_argument("--width", type=int, default=None,
                   help=f"layer width of both nets (default {RECIPE['width']} on the CPU, "
                        f"{GPU_WIDTH}, the tutorial's, on a GPU, where it costs no more time)")
    args = p.parse_args()
    if args.width is not None and args.width < 1:
        p.error(f"--width must be a positive number of channels, got {args.width}")
    wanted = config(args, device(p, args))
    saved = Path(args.out) / "config.json"
    if not args.restart and saved.is_file() and \
            (Path(args.out) / "checkpoints" / "last.npz").is_file():
        differ = clashes(args, wanted, json.loads(saved.read_text())["config"])
        if differ:
            was = ", ".join(f"{field} {old!r}" for field, old, _ in differ)
            now = ", ".join(f"{field} {new!r}" for field, _, new in differ)
            flags = " ".join("--" + flag.replace("_", "-") for flag, field in RUN_FLAGS.items()
                             if field in {f for f, _, _ in differ})
            asks = "asks" if len(differ) == 1 else "ask"
            p.error(f"the run in {args.out} was trained with {was}; {flags} {asks} for {now} and "
                    f"cannot continue it (the same command without them goes on with the run): "
                    f"add --restart to start over, or --out NEW_FOLDER for a second run")
    run(wanted, args.restart)


if __name__ == "__main__":
    main()
