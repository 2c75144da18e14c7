"""Watch a GAN learn (or collapse on) the ring of 8 Gaussians, with and without packing.

    python examples/toy2d.py                          # plain GAN and PacGAN2, 1,000 steps each
    python examples/toy2d.py --steps 3000 --mixture grid --pack 4

Each run writes a folder (runs/toy2d-...) with frames of D's heat map and G's mapping,
lab.gif, the mode protocol over training in metrics.jsonl and protocol.png, and index.html.
Below: the same thing one update at a time, as in a notebook.
"""

from __future__ import annotations

import argparse

from minigan.lab import LabConfig, LabTrainer
from minigan.report import RunReport


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mixture", default="ring", help="ring | grid | PATH.npy (default ring)")
    p.add_argument("--steps", type=int, default=1000, help="default 1000")
    p.add_argument("--pack", type=int, default=2, help="packing of the second run (default 2)")
    p.add_argument("--lr", type=float, default=1e-3, help="default 1e-3")
    p.add_argument("--beta1", type=float, default=0.5, help="Adam's beta1 (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    # One update at a time: D learns to tell the ring from G's blob, then G follows D.
    lab = LabTrainer(LabConfig(mixture=args.mixture, out=f"runs/toy2d-{args.mixture}-steps",
                               lr=args.lr, beta1=args.beta1, seed=args.seed, progress=False),
                     overwrite=True)
    lab.frame(note=" (before any update)")
    print("D step:", {k: round(v, 3) for k, v in lab.d_step().items()})
    print("G step:", {k: round(v, 3) for k, v in lab.g_step().items()})
    lab.frame(lab.out / "after_one_d_and_one_g_step.png")

    for pack in (1, args.pack):
        name = f"runs/toy2d-{args.mixture}" + (f"-pack{pack}" if pack > 1 else "")
        lab = LabTrainer(LabConfig(mixture=args.mixture, pack=pack, steps=args.steps,
                                   lr=args.lr, beta1=args.beta1, seed=args.seed, out=name,
                                   eval_every=100,
                                   frame_every=100), overwrite=True, callbacks=[RunReport()])
        lab.fit()
        for r in lab.records:
            if "modes" in r and (r["step"] % 500 == 0 or r["step"] == args.steps):
                print(f"  pack {pack} step {r['step']}: {r['modes']} modes, "
                      f"{r['high_quality']:.1f} % high quality, reverse KL {r['reverse_kl']}")
        print(f"  -> {lab.out / 'lab.gif'}, {lab.out / 'index.html'}")


if __name__ == "__main__":
    main()
