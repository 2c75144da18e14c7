"""The 2-D lab's benchmarks: the mode protocol over seeds, and the engine's per-op overhead.

    python benchmarks/toy2d.py step                 # minigan step / PyTorch step, same MLPs
    python benchmarks/toy2d.py protocol --seeds 0 1 2 --steps 4000 [--write]

`step` builds the lab's G (2 -> 4 x 400 ReLU -> 2) and D (2m -> 3 x 200 LeakyReLU -> 1) in
minigan, copies the weights into the same nets in PyTorch, and alternates one training step
(a D update on real and fake points, then a G update, BCE, Adam) of each in one process after a
warm-up; it prints the medians and their ratio. `protocol` trains the lab's runs (bce, wgan-gp
and packing, on the ring and the grid) for each seed, evaluates the PacGAN/VEEGAN protocol on
2,500 samples, and prints (with --write: adds to benchmarks/RESULTS.md) the table beside the
published figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minigan import backend, no_grad, randn
from minigan.gan.losses import make_loss
from minigan.gan.steps import d_update, g_update
from minigan.lab import LabConfig, LabTrainer, mixtures, models
from minigan.optim import Adam

# PacGAN Table 1 (10 trials) and VEEGAN's ring figure, as quoted in the issue
PUBLISHED = {
    ("ring", "bce", 1): "GAN 6.3 / 98.2 / 0.45 (PacGAN T1); GAN 1 mode (VEEGAN)",
    ("ring", "bce", 2): "PacGAN2 7.9 / 95.6 / 0.07",
    ("grid", "bce", 1): "GAN 17.3 / 94.8 / 0.70",
    ("grid", "bce", 4): "PacGAN4 24.8 / 93.6 / 0.04",
}
RUNS = (("ring", "bce", 1), ("ring", "bce", 2), ("ring", "wgan-gp", 1),
        ("grid", "bce", 1), ("grid", "bce", 4), ("grid", "wgan-gp", 1))


# ---- step: minigan against PyTorch -----------------------------------------------------------

def torch_nets(G, D):
    """PyTorch copies of the lab's G and D (the same layers, the same weights)."""
    import torch

    def build(net):
        layers = []
        for m in net:
            name = type(m).__name__
            if name == "Linear":
                layers.append(torch.nn.Linear(m.in_features, m.out_features))
            elif name == "ReLU":
                layers.append(torch.nn.ReLU())
            else:
                layers.append(torch.nn.LeakyReLU(m.negative_slope))
        t = torch.nn.Sequential(*layers)
        t.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in
                           net.state_dict().items()})
        return t

    return build(G), build(D.net)


def time_steps(batch: int, pack: int, steps: int, warmup: int) -> dict:
    import torch

    backend.manual_seed(0)
    G, D = models.generator(), models.discriminator(pack)
    tG, tD = torch_nets(G, D)
    loss = make_loss("bce")
    opt_g, opt_d = (Adam(G.parameters(), 1e-4, (0.8, 0.999)),
                    Adam(D.parameters(), 1e-4, (0.8, 0.999)))
    topt_g = torch.optim.Adam(tG.parameters(), 1e-4, (0.8, 0.999))
    topt_d = torch.optim.Adam(tD.parameters(), 1e-4, (0.8, 0.999))
    bce = torch.nn.BCEWithLogitsLoss()
    mix, rng, n = mixtures.ring(), np.random.default_rng(0), batch * pack

    def mg_step():
        real = mix.sample(n, rng)
        with no_grad():
            fake = G(randn(n, 2))
        d_update(D, opt_d, loss, real, fake)
        g_update(D, opt_g, loss, G(randn(n, 2)))

    def pt_step():
        real = torch.from_numpy(mix.sample(n, rng))
        fake = tG(torch.randn(n, 2)).detach()
        topt_d.zero_grad()
        rl, fl = tD(real.reshape(batch, -1)), tD(fake.reshape(batch, -1))
        (bce(rl, torch.ones_like(rl)) + bce(fl, torch.zeros_like(fl))).backward()
        topt_d.step()
        topt_g.zero_grad()
        fl = tD(tG(torch.randn(n, 2)).reshape(batch, -1))
        for p in tD.parameters():
            p.requires_grad_(False)
        bce(fl, torch.ones_like(fl)).backward()
        for p in tD.parameters():
            p.requires_grad_(True)
        topt_g.step()

    times = {"minigan": [], "torch": []}
    for i in range(warmup + steps):
        for name, fn in (("minigan", mg_step), ("torch", pt_step)):
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    mg, pt = statistics.median(times["minigan"]), statistics.median(times["torch"])
    return {"batch": batch, "pack": pack, "minigan_ms": 1e3 * mg, "torch_ms": 1e3 * pt,
            "ratio": mg / pt, "threads": torch.get_num_threads()}


def step_main(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MINIGAN_THREADS="
          f"{os.environ.get('MINIGAN_THREADS', '(default)')}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| batch (packs) | pack | minigan (ms) | PyTorch (ms) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for batch in args.batch:
        for pack in args.pack:
            r = time_steps(batch, pack, args.steps, args.warmup)
            print(f"| {batch} | {pack} | {r['minigan_ms']:.2f} | {r['torch_ms']:.2f} | "
                  f"{r['ratio']:.2f} |", flush=True)


# ---- protocol: the table ---------------------------------------------------------------------

def protocol_main(args) -> None:
    rows, t_all = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        for mixture, loss, pack in RUNS:
            if args.only and mixture not in args.only:
                continue
            results = []
            for seed in args.seeds:
                t = time.perf_counter()
                cfg = LabConfig(mixture=mixture, loss=loss, pack=pack, steps=args.steps,
                                batch_size=args.batch, lr=args.lr, beta1=args.beta1, seed=seed,
                                out=f"{tmp}/{mixture}-{loss}-{pack}-{seed}",
                                eval_every=args.eval_every, checkpoint_every=0, progress=False,
                                frame_every=args.frame_every if args.keep and
                                seed == args.seeds[0] else 0)
                lab = LabTrainer(cfg, overwrite=True)
                lab.fit()
                m = lab.evaluate()
                m["seconds"] = time.perf_counter() - t
                results.append(m)
                print(f"{mixture} {loss} pack {pack} seed {seed}: {m['modes']} modes, "
                      f"{m['high_quality']:.1f} % high quality, reverse KL "
                      f"{m['reverse_kl']:.3f}, {m['seconds']:.0f} s", flush=True)
            rows.append((mixture, loss, pack, results))
    wall = time.perf_counter() - t_all
    table = _table(rows, args, wall)
    print(table)
    if args.write:
        path = Path(__file__).with_name("RESULTS.md")
        path.write_text(path.read_text().rstrip("\n") + "\n\n" + table)
        print(f"added to {path}")


def _mean_sd(values) -> str:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else \
        f"{values[0]:.2f}"


def _table(rows, args, wall: float) -> str:
    lines = [f"steps {args.steps}, batch {args.batch} packs, lr {args.lr or 'recipe'}, beta1 "
             f"{args.beta1 or 'recipe'}, seeds "
             f"{' '.join(map(str, args.seeds))}; wall time {wall / 60:.1f} min "
             f"({platform.processor() or platform.machine()}, load average "
             f"{os.getloadavg()[0]:.1f} at the end)", "",
             "| mixture | loss | pack | modes | high quality (%) | reverse KL | per seed (modes) "
             "| published (modes / HQ % / KL) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mixture, loss, pack, results in rows:
        lines.append(
            f"| {mixture} | {loss} | {pack} | {_mean_sd([r['modes'] for r in results])} | "
            f"{_mean_sd([r['high_quality'] for r in results])} | "
            f"{_mean_sd([r['reverse_kl'] for r in results])} | "
            f"{' '.join(str(r['modes']) for r in results)} | "
            f"{PUBLISHED.get((mixture, loss, pack), '')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("step", help="minigan step against PyTorch, same MLPs")
    s.add_argument("--batch", type=int, nargs="+", default=[100])
    s.add_argument("--pack", type=int, nargs="+", default=[1, 4])
    s.add_argument("--steps", type=int, default=60)
    s.add_argument("--warmup", type=int, default=10)
    s.add_argument("--threads", type=int, help="PyTorch's intra-op threads (default: its own)")
    r = sub.add_parser("protocol", help="the mode protocol over seeds")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--steps", type=int, default=4000)
    r.add_argument("--batch", type=int, default=100)
    r.add_argument("--lr", type=float, help="both learning rates (default: the recipe's)")
    r.add_argument("--beta1", type=float, help="Adam's beta1 (default: the recipe's)")
    r.add_argument("--only", nargs="+", choices=("ring", "grid"))
    r.add_argument("--write", action="store_true", help="add the table to RESULTS.md")
    r.add_argument("--keep", help="keep the run folders here (with frames and the GIF)")
    r.add_argument("--eval-every", type=int, default=0,
                   help="also log the protocol every N steps (metrics.jsonl)")
    r.add_argument("--frame-every", type=int, default=100, help="frames, with --keep")
    args = p.parse_args(argv)
    step_main(args) if args.what == "step" else protocol_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
