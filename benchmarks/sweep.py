"""Wall time of 4 runs as a sweep on a local cluster (one worker process per core, one BLAS and
numba thread each) against the same 4 runs one after another (`minigan train`, each with every
core: OpenBLAS's and numba's default threads), measured in turns in one script; medians.

    python benchmarks/sweep.py                        # 3 rounds, 4 runs of 28x28 ellipses
    python benchmarks/sweep.py --rounds 5 --set steps=120

Both sides start fresh processes (the sweep its cluster, each `train` its interpreter), so
both pay the same imports; numba's cache is warmed before the first round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = ["dataset=ellipses", "image_size=28", "limit=2048", "width=32", "batch_size=64",
            "steps=60", "log_every=20"]
GRID = "loss=bce,hinge"
SEEDS = (0, 1)


def _run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return seconds


def one_after_another(settings: list[str], out: Path) -> float:
    """The 4 runs as 4 `minigan train` commands in a row."""
    t0 = time.perf_counter()
    for loss in GRID.partition("=")[2].split(","):
        for seed in SEEDS:
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in (s.split("=") for s in settings)]
            _run([sys.executable, "-m", "minigan", "train", *flags, f"--loss={loss}",
                  f"--seed={seed}", "--no-progress", "--out", str(out / f"{loss}-{seed}")])
    return time.perf_counter() - t0


def as_sweep(settings: list[str], out: Path, workers: int) -> float:
    sets = [a for s in settings for a in ("--set", s)]
    return _run([sys.executable, "-m", "minigan", "sweep", "--grid", GRID, "--seeds",
                 ",".join(map(str, SEEDS)),
                 *sets, "--workers", str(workers), "--out", str(out), "--every", "600"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--set", action="append", default=[], help="override a setting: steps=120")
    args = p.parse_args()
    given = dict(s.split("=", 1) for s in SETTINGS)
    given.update(dict(s.split("=", 1) for s in args.set))
    settings = [f"{k}={v}" for k, v in given.items()]
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    print(f"4 runs ({GRID}, seeds {SEEDS}; {' '.join(settings)}) on "
          f"{len(os.sched_getaffinity(0))} cores; load average before: "
          f"{os.getloadavg()[0]:.1f}")
    _run([sys.executable, "-m", "minigan", "train", *[f"--{k.replace('_', '-')}={v}" for k, v
                                                      in given.items()], "--steps=2",
          "--no-progress", "--out", str(tmp / "warm")])          # numba's cache, once
    times = {"one after another": [], "sweep": []}
    try:
        for i in range(args.rounds):
            order = ["one after another", "sweep"][::1 if i % 2 == 0 else -1]
            for name in order:
                out = tmp / f"{name.replace(' ', '-')}-{i}"
                s = (one_after_another(settings, out) if name != "sweep"
                     else as_sweep(settings, out, args.workers))
                times[name].append(s)
                print(f"round {i + 1}: {name:<18} {s:7.1f} s   (load average "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seq, swp = (statistics.median(times[k]) for k in ("one after another", "sweep"))
    ratios = [a / b for a, b in zip(times["one after another"], times["sweep"], strict=True)]
    print(f"median: one after another {seq:.1f} s, sweep on {args.workers} workers "
          f"{swp:.1f} s; sequential / sweep per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
