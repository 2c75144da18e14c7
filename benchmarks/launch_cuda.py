"""What a CUDA kernel launch costs the host, and what that is worth in a training step.

A launch through numba's dispatcher types every argument and wraps every array again; minigan's
direct path (`kernels/_cuda.py`, DIRECT) hands the compiled kernel its parameters itself. This
measures both, side by side in one process:

1. the host's time per launch of a small kernel (leaky ReLU on 1,024 values), each path
   `--launches` times in a row, beside a CuPy elementwise op of the same size (CuPy's own
   launch cost, for scale);
2. a whole training step of benchmarks/step.py's models with the direct path off and on,
   alternating blocks of steps (medians).

    python benchmarks/launch_cuda.py --models doodles:32 dcgan64:64 --steps 20

Needs a GPU with CuPy and numba-cuda. One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from minigan import backend  # noqa: E402
from minigan.kernels import _cuda, activation  # noqa: E402


def per_launch(launches: int) -> dict:
    """Host microseconds per launch: numba's dispatcher, the direct path, a CuPy op."""
    cp = backend.xp_for("cuda")
    x = cp.asarray(np.random.default_rng(0).standard_normal(1024).astype(np.float32))

    def timed(fn):
        fn()
        backend.synchronize("cuda")
        t = time.perf_counter()
        for _ in range(launches):
            fn()
        host = time.perf_counter() - t
        backend.synchronize("cuda")
        return host / launches * 1e6

    out = {}
    for _ in range(3):  # alternate, keep the best of three rounds for each
        for name, direct in (("dispatcher_us", False), ("direct_us", True)):
            _cuda.DIRECT = direct
            us = timed(lambda: activation.leaky_relu(x, 0.2))
            out[name] = min(us, out.get(name, us))
        us = timed(lambda: x * 0.2)
        out["cupy_op_us"] = min(us, out.get("cupy_op_us", us))
    _cuda.DIRECT = True
    return out


def step_ab(model: str, batch: int, steps: int, block: int = 5) -> dict:
    """Median step of benchmarks/step.py's minigan step, direct path off and on."""
    import step as S

    fn, _ = S.minigan_step(batch, "cuda", model)
    times = {False: [], True: []}
    for direct in (False, True):  # compile everything, build the direct launchers
        _cuda.DIRECT = direct
        for _ in range(3):
            fn()
    while min(map(len, times.values())) < steps:
        for direct in (False, True):
            _cuda.DIRECT = direct
            fn()
            for _ in range(block):
                t = time.perf_counter()
                fn()                      # ends with a synchronize
                times[direct].append(time.perf_counter() - t)
    _cuda.DIRECT = True
    off, on = (statistics.median(times[d]) for d in (False, True))
    return {"model": model, "batch": batch, "steps": steps, "dispatcher_s": off,
            "direct_s": on, "ratio": on / off}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--launches", type=int, default=2000)
    p.add_argument("--models", nargs="*", default=["doodles:32", "dcgan64:64"],
                   help="model:batch pairs from benchmarks/step.py")
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args(argv)
    if not backend.cuda_available():
        p.error(f"needs a GPU: {backend.cuda_unavailable_reason()}")
    print(json.dumps({"launch": per_launch(a.launches)}), flush=True)
    for spec in a.models:
        model, batch = spec.split(":")
        print(json.dumps(step_ab(model, int(batch), a.steps)), flush=True)


if __name__ == "__main__":
    main()
