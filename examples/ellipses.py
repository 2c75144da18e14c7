"""Train a small GAN on synthetic ellipses: no download, a few minutes on a laptop CPU.

    python examples/ellipses.py --epochs 10 --out runs/ellipses

A good first run to see the machinery work: the fixed-noise grids in runs/ellipses/samples/
go from grey noise to soft bright blobs of many sizes and angles.
"""

from _common import device, parser, run

from minigan.gan import TrainConfig


def main() -> None:
    p = parser("Train a GAN on synthetic ellipses.", 10, "runs/ellipses")
    args = p.parse_args()
    config = TrainConfig(dataset="ellipses", limit=4000, arch="radford", width=16,
                         epochs=args.epochs, out=args.out, seed=0,
                         device=device(p, args))
    run(config, args.restart)


if __name__ == "__main__":
    main()
