"""Single-GEMM throughput: NumPy's OpenBLAS (the library minigan's convolutions call) beside
PyTorch's matmul, on shapes of the DCGANs' convolutions, with the kernels OpenBLAS runs.

    python benchmarks/blas.py                            # 1 and 2 threads
    OPENBLAS_CORETYPE=SkylakeX python benchmarks/blas.py # other kernels (read at load time)

GFLOP/s from the median of 9 timed calls after one untimed; each library set to the same
number of threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from minigan.kernels import shifted

SHAPES = [(1024, 1024, 4096), (128, 1024, 16384), (256, 256, 17408), (512, 1024, 1280)]


def _median_seconds(fn, reps: int = 9) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = p.parse_args(argv)
    import torch

    rng = np.random.default_rng(0)
    for threads in a.threads:
        torch.set_num_threads(threads)
        if shifted.BLAS.set_threads is not None:
            shifted.BLAS.set_threads(threads)
        for m, k, n in SHAPES:
            x = rng.standard_normal((m, k), dtype=np.float32)
            y = rng.standard_normal((k, n), dtype=np.float32)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            gflop = 2 * m * k * n / 1e9
            numpy_s = _median_seconds(lambda x=x, y=y: x @ y)
            torch_s = _median_seconds(lambda tx=tx, ty=ty: tx @ ty)
            print(json.dumps({"threads": threads, "m": m, "k": k, "n": n,
                              "openblas_core": shifted.BLAS.core,
                              "openblas_gflops": round(gflop / numpy_s, 1),
                              "torch_gflops": round(gflop / torch_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
