"""Train the TensorFlow tutorial's DCGAN on MNIST digits.

    python examples/mnist.py --epochs 5 --out runs/mnist

MNIST is read from $MINIGAN_DATA/mnist/ or downloaded once into ~/.cache/minigan. An epoch is
937 steps of 64 digits; a step takes about 0.55 s on a quiet 2-core CPU (5 epochs: 41-48
minutes), so --limit helps for a first look (e.g. --limit 10000).
"""

from _common import device, parser, run

from minigan.gan import TrainConfig


def main() -> None:
    p = parser("Train a DCGAN on MNIST.", 5, "runs/mnist")
    p.add_argument("--limit", type=int, default=None, help="use the first N digits")
    args = p.parse_args()
    config = TrainConfig(dataset="mnist", limit=args.limit, arch="dcgan", epochs=args.epochs,
                         out=args.out, seed=0, quality_every=args.quality_every,
                         device=device(p, args))
    run(config, args.restart)


if __name__ == "__main__":
    main()
