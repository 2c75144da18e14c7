"""What bfloat16 GEMMs (AMX) would do for a training step: a probe, not a minigan feature.

The shifted convolutions' GEMMs (kernels/shifted.py) take float32 operands and OpenBLAS, which
has no bfloat16 GEMM in NumPy's wheels. On CPUs with AMX, MKL's `cblas_gemm_bf16bf16f32`
multiplies bfloat16 operands into float32 sums. This script swaps each convolution's operands
(the phase images, the tap weights, the output gradient) for bfloat16 copies, rounded to
nearest even, and runs its GEMMs through MKL, then times the trainer's own step
(`Trainer.train_step` of the doodles example's recipe, as benchmarks/trainer_step.py does)
with and without the swap, alternating rounds in one process. The weights, the sums and
everything outside the shifted GEMMs stay float32 (mixed precision, as torch.autocast).

    pip install mkl                     # MKL's runtime (libmkl_rt), about 700 MB
    python benchmarks/bf16_gemm.py      # needs a CPU with AMX (or AVX512-BF16)
    python benchmarks/bf16_gemm.py --base '{"batch_size": 32}'

It prints one JSON line per arm (median seconds a step, its ratio to float32, and the median
seconds a step inside the shifted GEMMs alone: the numba chunk runner for float32, the MKL
calls for bfloat16, whose address remapping and conversions in Python count in the step but
not there) and the largest difference of one doodles-sized forward product from the float32
path's, relative to its largest value.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import statistics
import sys
import tempfile
import time

import numpy as np
from numba import njit, prange

from minigan.kernels import shifted as S

_KERNEL = S._gemms_cpu       # the chunk runner: calls a cblas_sgemm-shaped function by address


def load_mkl():
    """libmkl_rt from the `mkl` package (pip install mkl), single-threaded (its OpenMP
    threads, beside OpenBLAS's, made the GEMMs slower here)."""
    found = sorted(glob.glob(f"{sys.prefix}/lib/libmkl_rt.so*"))
    if not found:
        raise SystemExit("no libmkl_rt in this environment: pip install mkl")
    lib = ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL)
    lib.MKL_Set_Threading_Layer(1)       # sequential: beside OpenBLAS's threads, faster here
    gemm = lib.cblas_gemm_bf16bf16f32
    gemm.argtypes = ([ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                     ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_void_p,
                     ctypes.c_int])
    return lib, gemm


@njit(parallel=True, cache=True)
def _to_bf16(src, dst):
    """dst = the bfloat16 bits of float32 src, rounded to nearest even (both 1-D)."""
    for i in prange(src.size):
        u = np.uint32(src.view(np.uint32)[i])
        dst[i] = np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
                           >> np.uint32(16))


def bf16(a):
    a = np.ascontiguousarray(a, np.float32)
    out = np.empty(a.size, np.uint16)
    _to_bf16(a.reshape(-1), out)
    return out


GEMM_SECONDS = {"float32": 0.0, "bfloat16": 0.0}   # time inside the GEMM calls alone


def _timed_fp32(real):
    def run(*args):
        t = time.perf_counter()
        real(*args)
        GEMM_SECONDS["float32"] += time.perf_counter() - t
    return run


class Swap:
    """While active, every `_Calls` table runs in bfloat16: its A and B addresses, which point
    into float32 arrays registered by the patched convolutions, are moved to those arrays'
    bfloat16 copies (half the byte offset); C stays the float32 output."""

    def __init__(self, gemm):
        self.gemm, self.arrays = ctypes.cast(gemm, ctypes.c_void_p).value, []
        self.real = (S.split, S._tap_rows, S._grid, S._Calls.run)

    def _register(self, a):
        if isinstance(a, np.ndarray) and a.dtype == np.float32:
            self.arrays.append((a.ctypes.data, a.ctypes.data + a.nbytes, bf16(a)))
        return a

    def _moved(self, table):
        """The table with its A and B addresses moved to the bfloat16 copies (the latest array
        holding an address wins: an older one may have been freed and its memory reused)."""
        table = table.copy()
        for col in (5, 7):                              # `_Calls.add`'s a and b
            addr, done = table[:, col], np.zeros(len(table), bool)
            for lo, hi, copy in reversed(self.arrays):
                hit = ~done & (addr >= lo) & (addr < hi)
                if hit.any():
                    table[hit, col] = copy.ctypes.data + (addr[hit] - lo) // 2
                    done |= hit
                if done.all():
                    break
            if not done.all():
                raise RuntimeError("a GEMM operand outside the registered arrays")
        return table

    def __enter__(self):
        split, tap_rows, grid, _ = self.real
        swap = self

        def split_(*a, **k):
            xs = split(*a, **k)
            swap._register(xs.buf)
            return xs

        def tap_rows_(*a, **k):
            rows = tap_rows(*a, **k)
            swap._register(rows.a)
            return rows

        def grid_(*a, **k):
            return swap._register(grid(*a, **k))

        def run(calls):
            if len(calls.rows):
                table = swap._moved(np.array(calls.rows, np.int64))
                t = time.perf_counter()
                _KERNEL(swap.gemm, table, np.int32(0))          # MKL's LP64 integers
                GEMM_SECONDS["bfloat16"] += time.perf_counter() - t
            del swap.arrays[:-256]                      # keep the latest arrays only

        S.split, S._tap_rows, S._grid, S._Calls.run = split_, tap_rows_, grid_, run
        return self

    def __exit__(self, *exc):
        S.split, S._tap_rows, S._grid, S._Calls.run = self.real
        self.arrays.clear()


def accuracy(gemm) -> float:
    """Largest |bf16 - exact| / max|exact| of one doodles-sized forward product."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 28, 28, 16)).astype(np.float32)     # (C, H, W, N)
    w = rng.standard_normal((32, 64, 5, 5)).astype(np.float32)
    with Swap(gemm):
        got = S.conv2d(x, w, 1, 1, 2, 2, 28, 28)
    exact = S.conv2d(x, w, 1, 1, 2, 2, 28, 28)          # the float32 path
    return float(np.abs(got - exact).max() / np.abs(exact).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="{}", help="JSON of TrainConfig fields over the doodles "
                                                "example's recipe")
    p.add_argument("--steps", type=int, default=16, help="steps per round (default 16)")
    p.add_argument("--rounds", type=int, default=6, help="rounds per arm (default 6)")
    a = p.parse_args()
    _, gemm = load_mkl()
    from trainer_step import DOODLES, make_trainer, run_steps

    with tempfile.TemporaryDirectory(prefix="minigan-bf16-") as tmp:
        trainer, batches = make_trainer({**DOODLES, **json.loads(a.base)}, tmp, a.steps)
        arms = {"float32": contextlib.nullcontext, "bfloat16": lambda: Swap(gemm)}
        times: dict = {arm: [] for arm in arms}
        gemms: dict = {arm: [] for arm in arms}
        S._gemms_cpu = _timed_fp32(S._gemms_cpu)
        for r in range(a.rounds + 1):                  # the first round warms up, untimed
            for arm, context in arms.items():
                with context():
                    GEMM_SECONDS[arm] = 0.0
                    seconds = run_steps(trainer, batches)
                    if r:
                        times[arm].append(seconds)
                        gemms[arm].append(GEMM_SECONDS[arm] / len(batches))
    base = statistics.median(times["float32"])
    for arm, ts in times.items():
        print(json.dumps({"arm": arm, "median_s": round(statistics.median(ts), 6),
                          "ratio_to_float32": round(statistics.median(ts) / base, 3),
                          "gemm_median_s": round(statistics.median(gemms[arm]), 6),
                          "rounds_s": [round(x, 6) for x in ts]}), flush=True)
    print(json.dumps({"bf16_forward_max_rel_diff": accuracy(gemm)}))


if __name__ == "__main__":
    main()
