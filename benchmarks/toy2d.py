"""The 2-D lab's benchmarks: the mode protocol over seeds, and the engine's per-op overhead.

    python benchmarks/toy2d.py step                 # minigan step / PyTorch step, same MLPs
    python benchmarks/toy2d.py protocol --seeds 0 1 2 --steps 4000 [--write]

`step` builds the lab's G (2 -> 4 x 400 BatchNorm ReLU -> 2) and D (2m -> 3 x 200 LeakyReLU
-> 1) in minigan, copies the weights into the same nets in PyTorch, and alternates one training
step (a D update on real and fake points, then a G update, BCE, Adam) of each in one process
after a warm-up, and of minigan with Linear as three Functions plus the bias (as before the
fused Linear Function); it prints the medians and the ratios.

`protocol` trains the lab's runs (bce, wgan-gp and packing, on the ring and the grid) for each
seed, evaluates the PacGAN/VEEGAN protocol on 2,500 samples, and prints (with --write: adds to
benchmarks/RESULTS.md) the table beside the published figures.
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

import minigan.functional as F
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
    ("ring", "wgan-gp", 1): "(not in PacGAN's Table 1)",
    ("grid", "wgan-gp", 1): "(not in PacGAN's Table 1)",
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
                layers.append(torch.nn.Linear(m.in_features, m.out_features,
                                              bias=m.bias is not None))
            elif name == "BatchNorm1d":
                layers.append(torch.nn.BatchNorm1d(m.num_features, m.eps, m.momentum))
            elif name == "ReLU":
                layers.append(torch.nn.ReLU())
            else:
                layers.append(torch.nn.LeakyReLU(m.negative_slope))
        t = torch.nn.Sequential(*layers)
        state = {k: torch.from_numpy(np.array(getattr(v, "data", v)))
                 for k, v in net.state_dict().items()}
        missing, unexpected = t.load_state_dict(state, strict=False)
        assert not unexpected and all("num_batches" in k for k in missing), (missing, unexpected)
        return t

    return build(G), build(D.net)


def time_steps(batch: int, pack: int, steps: int, warmup: int, cpu_time: bool = False,
               widths: tuple[int, int] = (400, 200)) -> dict:
    """Median seconds of a step: wall time, or with `cpu_time` this process's CPU time (on a
    shared machine, with one thread each, the work done rather than the time waited)."""
    import torch

    backend.manual_seed(0)
    G, D = models.generator(hidden=widths[0]), models.discriminator(pack, hidden=widths[1])
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

    def unfused_step():
        """The step with Linear as it was before the fused Function: x W^T as three Functions
        (transpose, matmul, transpose) and the bias as a fourth."""
        fused = F.linear
        F.linear = _linear_unfused
        try:
            mg_step()
        finally:
            F.linear = fused

    calls = {"minigan": _count_functions(mg_step), "unfused": _count_functions(unfused_step)}
    clock = time.process_time if cpu_time else time.perf_counter
    times = {"minigan": [], "unfused": [], "torch": []}
    for i in range(warmup + steps):
        for name, fn in (("minigan", mg_step), ("unfused", unfused_step), ("torch", pt_step)):
            t = clock()
            fn()
            if i >= warmup:
                times[name].append(clock() - t)
    mg, un, pt = (statistics.median(times[k]) for k in ("minigan", "unfused", "torch"))
    return {"batch": batch, "pack": pack, "minigan_ms": 1e3 * mg, "unfused_ms": 1e3 * un,
            "torch_ms": 1e3 * pt, "ratio": mg / pt, "ratio_unfused": un / pt,
            "calls": calls["minigan"], "calls_unfused": calls["unfused"]}


def _count_functions(step) -> int:
    """Function calls (forward and backward together) in one step."""
    from minigan.autograd import Function

    n, call = [0], Function.__call__

    def counted(self, *inputs):
        n[0] += 1
        return call(self, *inputs)

    Function.__call__ = counted
    try:
        step()
    finally:
        Function.__call__ = call
    return n[0]


def _linear_unfused(x, weight, bias=None):
    y = F.transpose(F.matmul(weight, F.transpose(x)))
    return y if bias is None else y + bias


def step_main(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{'CPU' if args.cpu_time else 'wall'} time; G and D widths {args.widths}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; MINIGAN_THREADS="
          f"{os.environ.get('MINIGAN_THREADS', '(default)')}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| batch (packs) | pack | minigan (ms) | PyTorch (ms) | minigan / PyTorch | "
          "before the fused Linear (ms) | its ratio | Functions a step (before) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for batch in args.batch:
        for pack in args.pack:
            r = time_steps(batch, pack, args.steps, args.warmup, args.cpu_time, args.widths)
            print(f"| {batch} | {pack} | {r['minigan_ms']:.2f} | {r['torch_ms']:.2f} | "
                  f"{r['ratio']:.2f} | {r['unfused_ms']:.2f} | {r['ratio_unfused']:.2f} | "
                  f"{r['calls']} ({r['calls_unfused']}) |",
                  flush=True)


# ---- protocol: the table ---------------------------------------------------------------------

def protocol_main(args) -> None:
    rows, t_all = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        for mixture, loss, pack in RUNS:
            if (args.only and mixture not in args.only) or (args.loss and loss not in args.loss) \
                    or (args.pack and pack not in args.pack):
                continue
            results = []
            for seed in args.seeds:
                t = time.perf_counter()
                cfg = LabConfig(mixture=mixture, loss=loss, pack=pack, steps=args.steps,
                                batch_size=args.batch, lr=args.lr, beta1=args.beta1, seed=seed,
                                g_top_k=args.g_top_k, g_top_k_decay=args.g_top_k_decay,
                                g_top_k_every=args.g_top_k_every,
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


def table_main(args) -> None:
    """The table from kept run folders (--keep): each run's last protocol line at its last
    step, and its training seconds; runs still going are left out and counted."""
    import json

    rows, unfinished, seconds, settings = [], [], 0.0, set()
    for mixture, loss, pack in RUNS:
        results = []
        for folder in sorted(Path(args.folder).glob(f"{mixture}-{loss}-{pack}-*")):
            if not (folder / "metrics.jsonl").is_file():
                unfinished.append(folder.name)
                continue
            cfg = json.loads((folder / "config.json").read_text())
            lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
            last = [r for r in lines if "modes" in r and r["step"] == cfg["total_steps"]]
            if not last:
                unfinished.append(folder.name)
                continue
            c = cfg["config"]
            settings.add((c["steps"], c["batch_size"], c["lr"], c["beta1"]))
            m = {**last[-1], "seed": c["seed"], "seconds": lines[-1]["seconds"],
                 "most": max(r["modes"] for r in lines if "modes" in r)}
            m["reverse_kl"] = np.nan if m["reverse_kl"] is None else m["reverse_kl"]
            results.append(m)
            seconds += m["seconds"]
        if results:
            rows.append((mixture, loss, pack, results))
    (steps, batch, lr, beta1), = settings
    ns = argparse.Namespace(steps=steps, batch=batch, lr=lr, beta1=beta1, seeds=sorted(
        {r["seed"] for *_, rs in rows for r in rs}))
    print(_table(rows, ns, seconds, per_seed=True))
    if unfinished:
        print(f"not finished (left out): {', '.join(unfinished)}")


def _mean_sd(values) -> str:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else \
        f"{values[0]:.2f}"


def _table(rows, args, wall: float, per_seed: bool = False) -> str:
    what = "training seconds of all runs" if per_seed else "wall time"
    top_k = getattr(args, "g_top_k", 1.0)
    lines = [f"steps {args.steps}, batch {args.batch} packs, lr {args.lr or 'recipe'}, beta1 "
             f"{args.beta1 or 'recipe'}, "
             + (f"top-k {top_k} (decay {args.g_top_k_decay} every {args.g_top_k_every} steps), "
                if top_k != 1 else "") + f"seeds "
             f"{' '.join(map(str, args.seeds))}; {what} {wall / 60:.1f} min "
             f"({platform.processor() or platform.machine()}, load average "
             f"{os.getloadavg()[0]:.1f} at the end)", "",
             "| mixture | loss | pack | modes | high quality (%) | reverse KL | seed: modes"
             f"{' / most during training' if per_seed else ''} (seconds) | published (modes / "
             "HQ % / KL) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mixture, loss, pack, results in rows:
        lines.append(
            f"| {mixture} | {loss} | {pack} | {_mean_sd([r['modes'] for r in results])} | "
            f"{_mean_sd([r['high_quality'] for r in results])} | "
            f"{_mean_sd([r['reverse_kl'] for r in results])} | "
            + " ".join(f"{r.get('seed', i)}: {r['modes']}"
                       + (f" / {r['most']}" if "most" in r else "") + f" ({r['seconds']:.0f})"
                       for i, r in enumerate(results))
            + f" | {PUBLISHED.get((mixture, loss, pack), '')} |")
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
    s.add_argument("--widths", type=int, nargs=2, default=(400, 200), metavar=("G", "D"),
                   help="hidden units of G and D (default 400 200, PacGAN's; small widths "
                        "leave the per-Function cost alone)")
    s.add_argument("--cpu-time", action="store_true",
                   help="time with the process's CPU time (use with one thread each: "
                        "--threads 1 and MINIGAN_THREADS=1)")
    r = sub.add_parser("protocol", help="the mode protocol over seeds")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--steps", type=int, default=4000)
    r.add_argument("--batch", type=int, default=100)
    r.add_argument("--lr", type=float, help="both learning rates (default: the recipe's)")
    r.add_argument("--beta1", type=float, help="Adam's beta1 (default: the recipe's)")
    r.add_argument("--only", nargs="+", choices=("ring", "grid"))
    r.add_argument("--loss", nargs="+", choices=("bce", "wgan-gp"), help="these losses only")
    r.add_argument("--pack", type=int, nargs="+", help="these packings only")
    r.add_argument("--g-top-k", type=float, default=1.0, metavar="FRACTION",
                   help="top-k training (the lab's g_top_k; default 1: off)")
    r.add_argument("--g-top-k-decay", type=float, default=0.99, metavar="GAMMA")
    r.add_argument("--g-top-k-every", type=int, default=100, metavar="STEPS")
    r.add_argument("--write", action="store_true", help="add the table to RESULTS.md")
    r.add_argument("--keep", help="keep the run folders here (with frames and the GIF)")
    r.add_argument("--eval-every", type=int, default=0,
                   help="also log the protocol every N steps (metrics.jsonl)")
    r.add_argument("--frame-every", type=int, default=100, help="frames, with --keep")
    t = sub.add_parser("table", help="the table from the run folders of protocol --keep")
    t.add_argument("folder")
    args = p.parse_args(argv)
    {"step": step_main, "protocol": protocol_main, "table": table_main}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
