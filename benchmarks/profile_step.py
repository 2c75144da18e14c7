"""Where a minigan DCGAN training step spends its time, by part, from cProfile's own-time.

Parts: GEMM (the shifted convolutions' BLAS calls, which a chunk's table runs in one numba
call, `_gemms_cpu`, and time spent inside the conv/linear Functions' forward, which is the BLAS
call, the kernels being counted apart); conv data movement
(im2col/col2im kernels, the shifted convolutions' phase images, tap matrices, zeroed outputs);
layout copies (ascontiguousarray and the (N, C, H, W) <-> (C, H, W, N) transpose kernel);
batchnorm kernels; elementwise (activations, dropout, losses, arithmetic Functions); optimizer
kernels;
everything else is Python overhead (graph bookkeeping, argument checks).

    python benchmarks/profile_step.py --batch 256 --steps 5
    python benchmarks/profile_step.py --model dcgan64 --batch 128 --steps 3 --top 25
    python benchmarks/profile_step.py --model tf --batch 64 --gemm    # the BLAS's speed
    python benchmarks/profile_step.py --device cuda --model doodles --batch 32 --top 30

On a GPU the parts above do not apply (the work is queued, not done, where the profiler looks):
it splits a step into the time spent waiting for the device (the synchronize at the step's end)
and the host's own time, queueing kernels and running Python; when the wait is small, the step
is bound by that queueing, not by the GPU, and the top functions say where it goes.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

from step import minigan_step

from minigan import backend
from minigan.functional.math import MatMul

MATMUL = MatMul.forward.__code__.co_firstlineno  # told apart from the other math Functions

PARTS = [
    ("GEMM", lambda f, fn: (f.endswith("kernels/shifted.py") and fn in ("_gemm", "_gemms_cpu"))
     or (f.endswith("functional/conv.py") and fn == "forward")
     or (f.endswith("functional/math.py") and fn == "forward@matmul")),
    ("conv data movement", lambda f, fn: (f.endswith("kernels/conv.py") and "col" in fn)
     or f.endswith(("kernels/shifted.py", "numpy/_core/shape_base.py"))
     or fn in ("<built-in method numpy.zeros>", "<built-in method numpy.empty>")),
    ("layout copies", lambda f, fn: "ascontiguousarray" in fn or "copy" in fn
     or fn == "_transpose_cpu"),
    ("batchnorm", lambda f, fn: f.endswith("kernels/norm.py") and fn.startswith("_bn")),
    ("elementwise", lambda f, fn: (f.endswith(("kernels/activation.py", "kernels/dropout.py",
                                               "kernels/loss.py")) and fn.startswith("_"))
     or (f.endswith(("functional/activation.py", "functional/loss.py",
                     "functional/dropout.py", "functional/math.py")) and fn == "forward")),
    ("optimizer", lambda f, fn: f.endswith("kernels/optim.py") and fn.startswith("_")),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--model", default="tf",
                   help="tf, torch-style, doodles or dcgan64 (benchmarks/step.py)")
    p.add_argument("--top", type=int, default=0, help="also list the N functions with the most "
                                                      "own time")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--gemm", action="store_true",
                   help="instead: time every shifted-convolution GEMM (no profiler) and print "
                        "GFLOP/s by shape (transposes, M, K), slowest first")
    a = p.parse_args()
    try:
        backend.check_device(a.device)
    except RuntimeError as e:
        p.error(str(e))
    step, _ = minigan_step(a.batch, a.device, a.model)
    for _ in range(2):
        step()
    if a.gemm:
        gemm_rates(step, a)
        return
    if a.device == "cuda":
        _, total, stats = part_times(step, a.steps)
        wait = device_wait(stats)
        print(f"{a.model}, batch {a.batch}, cuda: {total / a.steps:.4f} s per step (under the "
              f"profiler); waiting for the GPU {wait / a.steps:.4f} s "
              f"({100 * wait / total:.0f} %), the host's own work {(total - wait) / a.steps:.4f}"
              f" s in {sum(v[1] for v in stats.values()) // a.steps} calls")
        a.top = a.top or 25
        print_top(stats, a)
        return
    parts, total, stats = part_times(step, a.steps)
    print(f"{a.model}, batch {a.batch}: {total / a.steps:.3f} s per step (under the profiler)")
    for name, t in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:16s} {t / a.steps:7.3f} s  {100 * t / total:5.1f} %")
    print_top(stats, a)


def print_top(stats: dict, a) -> None:
    """The a.top functions with the most own time, per step."""
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:a.top]
    for (file, line, fn), (_, calls, tottime, _, _) in top:
        print(f"  {tottime / a.steps:7.4f} s  {calls // a.steps:6d} calls  {fn}  "
              f"{file.rsplit('/', 2)[-2:]}:{line}")


def device_wait(stats: dict) -> float:
    """Seconds of own time in functions that wait for a device (CuPy's and numba's
    synchronize), from pstats' table."""
    return sum(v[2] for (_, _, fn), v in stats.items() if "synchronize" in fn)


def part_times(step, steps: int) -> tuple[dict, float, dict]:
    """({part: own time in seconds}, the profiled total, pstats' table) over `steps` calls of
    step() under cProfile."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())
    parts = {name: 0.0 for name, _ in PARTS}
    parts["Python overhead"] = 0.0
    for (file, line, fn), (_, _, tottime, _, _) in stats.items():
        if fn == "forward" and line == MATMUL and file.endswith("functional/math.py"):
            fn = "forward@matmul"
        name = next((name for name, match in PARTS if match(file, fn)), "Python overhead")
        parts[name] += tottime
    return parts, total, stats


def gemm_rates(step, a) -> dict:
    """Run the shifted convolutions' GEMM tables one call at a time with a timer around each
    (instead of kernels/shifted.py's one numba call per table): the BLAS's own speed on this
    model's shapes (e.g. OPENBLAS_CORETYPE=Haswell against OpenBLAS's choice). Each call's time
    includes one ctypes call's overhead (a few microseconds)."""
    import time

    import numpy as np

    from minigan.kernels import shifted as S

    real, rows = S._Calls.run, {}

    def timed(calls):
        table = np.asarray(calls.rows, np.int64).reshape(-1, 12).tolist()  # ctypes takes ints
        for ta, tb, m, n, k, pa, lda, pb, ldb, beta, pc, ldc in table:
            t0 = time.perf_counter()
            S._gemm(ta == S._TRANS, tb == S._TRANS, m, n, k, pa, lda, pb, ldb, float(beta), pc,
                    ldc)
            r = rows.setdefault((ta == S._TRANS, tb == S._TRANS, m, k), [0.0, 0.0, 0])
            r[0] += time.perf_counter() - t0
            r[1] += 2.0 * m * n * k
            r[2] += 1

    S._Calls.run = timed
    try:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        wall = (time.perf_counter() - t0) / a.steps
    finally:
        S._Calls.run = real
    if not rows:
        raise SystemExit(f"{a.model} at batch {a.batch} made no shifted-convolution GEMMs "
                         "(float64, or MINIGAN_SHIFTED_GEMM=0?)")
    secs = sum(r[0] for r in rows.values()) / a.steps
    flop = sum(r[1] for r in rows.values()) / a.steps
    print(f"{a.model}, batch {a.batch}: {wall:.3f} s a step, {secs:.3f} s of it in "
          f"{flop / 1e9:.2f} GFLOP of shifted-convolution GEMMs ({flop / secs / 1e9:.0f} GFLOP/s)")
    for (ta, tb, m, k), (t, f, calls) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        print(f"  {'T' if ta else 'N'}{'T' if tb else 'N'} M {m:5d} K {k:5d}: "
              f"{1e3 * t / a.steps:7.1f} ms  {f / t / 1e9:5.0f} GFLOP/s  "
              f"{calls // a.steps:4d} calls, N ~{f / calls / 2 / m / k:.0f}")
    return rows


if __name__ == "__main__":
    main()
