"""Train a DCGAN on Quick, Draw! doodles and watch faces appear, epoch by epoch.

    python examples/doodles.py                       # "smiley face", writes runs/doodles/
    python examples/doodles.py --category cat --out runs/cats

The drawings come from the data module's usual places: $MINIGAN_DATA/quickdraw/<category>.npy
if you have it (e.g. a 5000-drawing subset), else Google's full category file, downloaded once
into ~/.cache/minigan (the full "smiley face" file holds 124,386 drawings; --limit keeps the
first N so that an epoch stays short). Stop with Ctrl-C and run the same command again to go on.
"""

from _common import parser, run

from minigan.gan import TrainConfig

# 20 epochs = 1560 steps of 64: 3.7 min on this 2-core CPU (0.14 s a step) when it was quiet;
# more while other work shares the cores.
EPOCHS = 20


def main() -> None:
    p = parser("Train a DCGAN on Quick, Draw! doodles.", EPOCHS, "runs/doodles")
    p.add_argument("--category", default="smiley face", help="Quick, Draw! category")
    p.add_argument("--limit", type=int, default=5000,
                   help="use the first N drawings (default 5000; 0 for all)")
    args = p.parse_args()
    config = TrainConfig(
        dataset=f"quickdraw:{args.category}", limit=args.limit or None,
        arch="dcgan", width=32,     # the TensorFlow tutorial's nets at half width: 4x cheaper
        epochs=args.epochs, out=args.out, seed=0, quality_every=args.quality_every,
    )
    run(config, args.restart)


if __name__ == "__main__":
    main()
