"""Time the trainer's own step (`Trainer.train_step`) for variants of a recipe, side by side.

`step.py` times a plain step of bare nets; this times what a run pays per step: the trainer's
D update with its loss, the R1 penalty on its schedule, the G update, the schedulers. Each
variant (a JSON object of TrainConfig fields over the base recipe, by default the one
`python examples/doodles.py` trains) gets its own Trainer in this process, warmed up, and the
variants then alternate in rounds of --steps steps, so a change in the machine's load falls on
all of them alike. Medians per step and each variant's ratio to the first are printed.

    python benchmarks/trainer_step.py                                   # R1 every 4th / 2nd step
    python benchmarks/trainer_step.py '{}' '{"batch_size": 64}' --rounds 8
    python benchmarks/trainer_step.py '{}' '{"width": 48}' --base '{"dataset": "mnist"}'

Needs the data of the base recipe's dataset (MINIGAN_DATA, or the download cache).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from minigan.gan import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from doodles import RECIPE  # noqa: E402  (examples/ is not a package)

# examples/doodles.py's run, less its per-epoch pictures and scores
DOODLES = dict(dataset="quickdraw:smiley face", limit=5000, **RECIPE, epochs=1, seed=0,
               quality_every=0, fd_every=0, progress=False)


def make_trainer(fields: dict, out: str, n_batches: int) -> tuple[Trainer, list]:
    """A Trainer of `fields` (TrainConfig fields, complete) writing to `out`, and its first
    n_batches batches."""
    trainer = Trainer(TrainConfig(**{**fields, "out": out}), overwrite=True)
    return trainer, list(itertools.islice(trainer._batches(), n_batches))


def run_steps(trainer: Trainer, batches: list) -> float:
    """Seconds a step over one trainer step per batch, counting the steps as fit() does."""
    t = time.perf_counter()
    for b in batches:
        trainer.train_step(b)
        trainer.step += 1
    return (time.perf_counter() - t) / len(batches)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", default=['{}', '{"r1_every": 2}'],
                   help="JSON objects of TrainConfig fields over the base (default: the base, "
                        "and the base with R1 every 4th step)")
    p.add_argument("--base", default="{}",
                   help="JSON object of fields over the doodles example's recipe")
    p.add_argument("--steps", type=int, default=32, help="steps per round (default 32)")
    p.add_argument("--rounds", type=int, default=8, help="rounds per variant (default 8)")
    p.add_argument("--warmup", type=int, default=6, help="untimed steps first (default 6)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("--steps and --rounds must be at least 1, --warmup at least 0")
    base = {**DOODLES, **json.loads(args.base)}
    variants = [json.loads(v) for v in args.variants]
    runs = []
    with tempfile.TemporaryDirectory(prefix="minigan-trainer-step-") as tmp:
        for i, v in enumerate(variants):
            trainer, batches = make_trainer({**base, **v}, f"{tmp}/{i}",
                                            args.warmup + args.steps)
            if args.warmup:
                run_steps(trainer, batches[:args.warmup])
            runs.append((trainer, batches[args.warmup:]))
        times: list[list[float]] = [[] for _ in variants]
        for _ in range(args.rounds):
            for i, (trainer, batches) in enumerate(runs):
                times[i].append(run_steps(trainer, batches))
    first = statistics.median(times[0])
    for v, (trainer, _), ts in zip(variants, runs, times, strict=True):
        med = statistics.median(ts)
        print(json.dumps({"variant": v, "batch_size": trainer.recipe.batch_size,
                          "median_s": round(med, 6), "ratio_to_first": round(med / first, 3),
                          "rounds_s": [round(x, 6) for x in ts]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
