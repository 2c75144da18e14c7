"""Time from `python` to the end of the first training step on a fresh install (empty numba cache).

    python benchmarks/first_step.py --repeats 3

Each measurement is a new process with NUMBA_CACHE_DIR pointing at an empty folder, so every
kernel compiles as on a fresh install; the doodles model (the DCGAN at half width, batch 64 of
28x28 images) then takes one step. Three ways, alternated run by run:
  lazy     each kernel compiles on its first call, inside the step (what a script that uses the
           Trainer directly gets)
  compile  minigan.precompile.compile_cpu_kernels() first (the CLI and the examples do this):
           the batchnorm kernels in a second process while this one compiles the rest
  cached   the same cache folder a second time: what every later run pays
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from minigan.gan import TrainConfig, Trainer
if sys.argv[1] != "lazy":
    from minigan.precompile import compile_cpu_kernels
    compile_cpu_kernels(say=None)
t1 = time.perf_counter()
images = (np.random.default_rng(0).random((256, 28, 28)) * 255).astype(np.uint8)
config = TrainConfig(dataset="ellipses", arch="dcgan", width=32, epochs=1, out=sys.argv[2],
                     progress=False, quality_every=0)
trainer = Trainer(config, images=images, overwrite=True)
trainer.train_step(next(iter(trainer.loader)))
t2 = time.perf_counter()
print(json.dumps({"to_first_step": t2 - t0, "precompile": t1 - t0}))
"""


def _measure(mode: str, cache: str, out: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    res = subprocess.run([sys.executable, "-c", _CHILD, mode, out], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    times: dict[str, list[float]] = {"lazy": [], "compile": [], "cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode in ("lazy", "compile"):
                cache = os.path.join(tmp, f"cache-{mode}-{r}")
                t = _measure(mode, cache, os.path.join(tmp, "run"))["to_first_step"]
                times[mode].append(t)
                if mode == "compile":
                    times["cached"].append(
                        _measure(mode, cache, os.path.join(tmp, "run"))["to_first_step"])
            print(f"run {r + 1}: " + ", ".join(f"{m} {v[-1]:.1f} s" for m, v in times.items()),
                  flush=True)
    print("medians: " + ", ".join(f"{m} {statistics.median(v):.1f} s" for m, v in times.items()))


if __name__ == "__main__":
    main()
