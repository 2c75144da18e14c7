"""The shifted convolutions' weight gradient on OpenBLAS's threads, both ways, in turns: its GEMMs
dealt out to threads whole (OpenBLAS single-threaded meanwhile, what minigan does) against each
GEMM one call that OpenBLAS's own threads share out (what it did before), on the 4x4, stride-2
layers of the PyTorch examples' 64x64 DCGAN (and any others given).

    python benchmarks/weight_grad.py                    # dcgan64's three pairs at batch 64
    python benchmarks/weight_grad.py --batch 128
    python benchmarks/weight_grad.py --layer 64 128 32  # channels in, out, input size

Medians of --repeats timed calls of each way after one untimed, the two ways taking turns call by
call, with MINIGAN_THREADS=blas (OpenBLAS's threads throughout); GFLOP/s, and whether both
give the same numbers bit for bit (they should: each block of the result is summed by the same
GEMMs over all its pixels either way).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

LAYERS = [(64, 128, 32), (128, 256, 16), (256, 512, 8), (128, 64, 32)]  # the last: G10's twin


def measure(ci: int, co: int, size: int, batch: int, repeats: int, threads: int) -> dict:
    """Both ways for one layer (4x4 kernel, stride 2, padding 1): medians in ms, GFLOP/s."""
    from minigan.kernels import shifted as S

    rng = np.random.default_rng(0)
    out = size // 2
    x = rng.standard_normal((ci, size, size, batch), dtype=np.float32)    # (C, H, W, N)
    gy = rng.standard_normal((co, out, out, batch), dtype=np.float32)
    xs = S.split(x, 2, 2, 4, 4, 1, 1, out, out)
    grid = S.on_grid(gy, 2, 2, 1, 1, 4, 4, size, size)
    pool, width, controller = S.POOL, S._blas_width, S.THREADS
    ways = {"dealt": lambda: threads, "one call": lambda: 1}
    results, times = {}, {k: [] for k in ways}
    before = S._GET_THREADS()
    S.POOL = S.T.RowPool(width=1, max_chunks=1)      # OpenBLAS's threads, whole GEMMs,
    S.THREADS = None                                 # whatever the machine's load
    S._SET_THREADS(threads)
    try:
        for name, w in ways.items():
            S._blas_width = w
            results[name] = S.conv2d_weight_grad(xs, grid, 2, 2, 1, 1, 4, 4)
        for _ in range(repeats):
            for name, w in ways.items():
                S._blas_width = w
                t = time.perf_counter()
                S.conv2d_weight_grad(xs, grid, 2, 2, 1, 1, 4, 4)
                times[name].append(time.perf_counter() - t)
    finally:
        S.POOL, S._blas_width, S.THREADS = pool, width, controller
        S._SET_THREADS(before)
    gflop = 2.0 * ci * co * 16 * out * out * batch / 1e9
    row = {"layer": f"{ci}->{co} at {size}x{size}", "batch": batch, "threads": threads,
           "same_bits": bool(np.array_equal(results["dealt"], results["one call"]))}
    for name, ts in times.items():
        ms = statistics.median(ts) * 1e3
        row[f"{name}_ms"] = ms
        row[f"{name}_gflops"] = gflop / ms * 1e3
    row["ratio"] = row["dealt_ms"] / row["one call_ms"]
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=2, help="OpenBLAS's threads (default 2)")
    p.add_argument("--layer", type=int, nargs=3, action="append", metavar=("CI", "CO", "SIZE"),
                   help="a layer to time (repeatable; default dcgan64's)")
    a = p.parse_args(argv)
    for size in {s for *_, s in a.layer or LAYERS}:
        if size < 4 or size % 2:
            p.error(f"--layer: the input size must be even and at least 4, got {size}")
    # OpenBLAS's threads throughout: the default would move to minigan's pool (and OpenBLAS to
    # one thread) when it sees the machine busy, which is not what this compares. Read as
    # minigan's kernels load, so set before they are imported.
    os.environ["MINIGAN_THREADS"] = "blas"
    from minigan.kernels import shifted as S

    if S.BLAS.sgemm is None or S._GET_THREADS is None:
        raise SystemExit("needs NumPy's OpenBLAS with its CBLAS and thread functions")
    for ci, co, size in a.layer or LAYERS:
        print(json.dumps(measure(ci, co, size, a.batch, a.repeats, a.threads)), flush=True)


if __name__ == "__main__":
    main()
