"""Single-GEMM throughput: NumPy's OpenBLAS (the library minigan's convolutions call) beside
PyTorch's matmul, on shapes of the DCGANs' convolutions, with the kernels OpenBLAS runs.

    python benchmarks/blas.py                            # 1 and 2 threads
    OPENBLAS_CORETYPE=SkylakeX python benchmarks/blas.py # other kernels (read at load time)
    python benchmarks/blas.py --layouts                  # one product, four memory layouts
    python benchmarks/blas.py --conv-gemms               # a layer's three products, two layouts

`--layouts` times the product of a weight W (Co x K) and K rows of P pixels through minigan's
cblas_sgemm, laid out four ways: the pixels X stored (K, P) as minigan's batch-last layout
stores them and the output C (Co, P) (what the convolutions run today); X stored (P, K) as a
channels-last layout would, C (Co, P); X (P, K) and the output (P, Co), W as stored; the same
with W stored transposed (K, Co).

`--conv-gemms` times all three products a convolution layer makes in training, each in both
layouts: the forward pass C = W X, the input gradient W^T G and the weight gradient G X^T (G the
output's gradient, laid out as C), and their total, the time a layer's GEMMs take. A layout
that speeds up one product can slow another: the total says whether it pays.

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

SHAPES = [(1024, 1024, 4096), (128, 1024, 16384), (128, 256, 16384), (128, 64, 16384),
          (256, 256, 17408), (512, 1024, 1280)]
# (Co, K, P): dcgan64's thin layers at batch 64 (K: one tap, 4 taps, all 16 of 64 or 128
# channels), a wide one, and the doodles' first 32-channel layer
LAYOUT_SHAPES = [(128, 1024, 16384), (128, 256, 16384), (64, 1024, 16384), (64, 256, 16384),
                 (512, 1024, 1024), (32, 800, 12544)]


def _median_seconds(fn, reps: int = 9) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _layer_shapes(threads: list[int]):
    """(threads, Co, K, P) for each LAYOUT_SHAPES entry at each thread count, OpenBLAS set to
    that many threads before its shapes."""
    for t in threads:
        if shifted.BLAS.set_threads is not None:
            shifted.BLAS.set_threads(t)
        for co, k, p in LAYOUT_SHAPES:
            yield t, co, k, p


def _layout_calls(w, x) -> dict:
    """The four ways of one product W @ X (see the docstring), as calls without arguments;
    each call holds the arrays it reads and writes (the GEMM sees only their addresses)."""
    gemm = shifted._gemm
    (co, k), p = w.shape, x.shape[1]
    wt, xt = np.ascontiguousarray(w.T), np.ascontiguousarray(x.T)
    c, ct = np.empty((co, p), np.float32), np.empty((p, co), np.float32)

    def call(trans_a, trans_b, m, n, a, lda, b, ldb, out, ldc):
        return lambda: gemm(trans_a, trans_b, m, n, k, a.ctypes.data, lda, b.ctypes.data, ldb,
                            0.0, out.ctypes.data, ldc)

    return {"W X -> C(Co,P)": call(False, False, co, p, w, k, x, p, c, p),
            "W Xt -> C(Co,P)": call(False, True, co, p, w, k, xt, k, c, p),
            "Xt W -> Ct(P,Co)": call(False, True, p, co, xt, k, w, k, ct, co),
            "Xt Wt -> Ct(P,Co)": call(False, False, p, co, xt, k, wt, co, ct, co)}


def layouts(threads: list[int]) -> None:
    """GFLOP/s of W @ X in the four layouts of the module's docstring."""
    rng = np.random.default_rng(0)
    for t, co, k, p in _layer_shapes(threads):
        calls = _layout_calls(rng.standard_normal((co, k), dtype=np.float32),
                              rng.standard_normal((k, p), dtype=np.float32))
        gflop = 2 * co * k * p / 1e9
        row = {"threads": t, "co": co, "k": k, "p": p}
        row.update({name: round(gflop / _median_seconds(f), 1) for name, f in calls.items()})
        print(json.dumps(row), flush=True)


def _conv_calls(w, x, g) -> dict:
    """A layer's three products (forward, input gradient, weight gradient) in minigan's
    batch-last layout (X (K, P), G (Co, P)) and in a channels-last one (X (P, K), G (P, Co)),
    as {(layout, product): (call, output, expected)}: each call holds the arrays it reads and
    writes; `expected` gives NumPy's product in the output's layout, to check the call by."""
    gemm = shifted._gemm
    (co, k), p = w.shape, x.shape[1]
    xt, gt = np.ascontiguousarray(x.T), np.ascontiguousarray(g.T)

    def call(trans_a, trans_b, m, n, inner, a, lda, b, ldb, expected):
        out = np.empty((m, n), np.float32)
        return (lambda: gemm(trans_a, trans_b, m, n, inner, a.ctypes.data, lda, b.ctypes.data,
                             ldb, 0.0, out.ctypes.data, n)), out, expected

    return {("batch-last", "forward"): call(False, False, co, p, k, w, k, x, p, lambda: w @ x),
            ("batch-last", "input grad"): call(True, False, k, p, co, w, k, g, p,
                                               lambda: w.T @ g),
            ("batch-last", "weight grad"): call(False, True, co, k, p, g, p, x, p,
                                                lambda: g @ x.T),
            ("channels-last", "forward"): call(False, True, p, co, k, xt, k, w, k,
                                               lambda: (w @ x).T),
            ("channels-last", "input grad"): call(False, False, p, k, co, gt, co, w, k,
                                                  lambda: (w.T @ g).T),
            ("channels-last", "weight grad"): call(True, False, co, k, p, gt, co, xt, k,
                                                   lambda: g @ x.T)}


def conv_gemms(threads: list[int]) -> None:
    """GFLOP/s of a layer's three products in both layouts, and of the three together; each
    product's result is checked against NumPy's before it counts."""
    rng = np.random.default_rng(0)
    for t, co, k, p in _layer_shapes(threads):
        calls = _conv_calls(rng.standard_normal((co, k), dtype=np.float32),
                            rng.standard_normal((k, p), dtype=np.float32),
                            rng.standard_normal((co, p), dtype=np.float32))
        gflop = 2 * co * k * p / 1e9
        seconds = {}
        for key, (fn, out, expected) in calls.items():
            seconds[key] = _median_seconds(fn)
            want = expected()                       # float32 sums of K or P terms: rtol 1e-3
            if not np.allclose(out, want, rtol=1e-3, atol=1e-3 * np.abs(want).max()):
                raise RuntimeError(f"{key} computed the wrong product for {(co, k, p)}")
        row = {"threads": t, "co": co, "k": k, "p": p}
        for layout in ("batch-last", "channels-last"):
            parts = {what: s for (lay, what), s in seconds.items() if lay == layout}
            row.update({f"{layout} {what}": round(gflop / s, 1) for what, s in parts.items()})
            row[f"{layout} all three"] = round(3 * gflop / sum(parts.values()), 1)
        print(json.dumps(row), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--layouts", action="store_true",
                   help="time one product in four memory layouts (no PyTorch needed)")
    p.add_argument("--conv-gemms", action="store_true",
                   help="time a layer's three products in two layouts (no PyTorch needed)")
    a = p.parse_args(argv)
    if a.layouts:
        layouts(a.threads)
        return
    if a.conv_gemms:
        conv_gemms(a.threads)
        return
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
