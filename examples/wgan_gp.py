"""Train a WGAN-GP on MNIST digits (Gulrajani et al. 2017, "Improved Training of Wasserstein
GANs"): the TensorFlow tutorial's DCGAN nets with the discriminator as a critic (no dropout,
no sigmoid), the Wasserstein loss with a gradient penalty of weight 10, five critic steps per
generator step, each on a fresh batch, and Adam(1e-4, betas (0, 0.9)).

    python examples/wgan_gp.py --epochs 5 --out runs/wgan_gp
    python examples/wgan_gp.py --epochs 1 --limit 10000 --out runs/wgan_gp_small

An epoch of MNIST is 937 critic steps and 188 generator steps. On a 2-core CPU shared with three
other training runs a generator step took 6.8 s (2.6 s at half width): 5 epochs in 107 minutes;
--limit makes a first look shorter. After those 5 epochs the samples are recognisable but rough
digits of all ten classes; the DCGAN of examples/mnist.py is cleaner after as many epochs.
curves.png shows the critic's Wasserstein estimate, the gradient penalty, and after every epoch
the classifier Frechet distance and the digit classes covered.
"""

from _common import device, parser, run

from minigan.gan import TrainConfig


def main() -> None:
    p = parser("Train a WGAN-GP on MNIST.", 5, "runs/wgan_gp")
    p.add_argument("--limit", type=int, default=None, help="use the first N digits")
    args = p.parse_args()
    config = TrainConfig(dataset="mnist", limit=args.limit, arch="dcgan", loss="wgan-gp",
                         epochs=args.epochs, out=args.out, seed=0,
                         quality_every=args.quality_every,
                         device=device(p, args))
    run(config, args.restart)


if __name__ == "__main__":
    main()
