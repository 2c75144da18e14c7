"""Time minigan's elementwise CUDA kernels against the bytes each must move.

Each kernel is memory-bound, so its yardstick is the device's copy bandwidth, measured here
with a CuPy copy of an array of the same size (read once, written once). For every kernel the
table gives the median time of one launch (CUDA events around --inner back-to-back launches,
--repeat times), the bandwidth it reached counting each array read or written once, and that
bandwidth as a fraction of the copy's.

    python benchmarks/kernels_cuda.py --size 67108864 --dtype float32
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

from minigan import backend
from minigan.kernels import _cuda, activation, dropout, loss, optim


def kernels(xp, n: int, dtype):
    """(name, arrays read + written per element, function running it once) for each kernel."""
    rng = xp.random.default_rng(0)

    def arr():
        return rng.standard_normal(n, dtype=dtype)
    x, gy, t = arr(), arr(), rng.random(n, dtype=dtype)
    p, g, m, v = arr(), arr(), xp.zeros(n, dtype), xp.zeros(n, dtype)
    return [
        ("leaky_relu", 2, lambda: activation.leaky_relu(x, 0.2)),
        ("leaky_relu_grad", 3, lambda: activation.leaky_relu_grad(x, gy, 0.2)),
        ("dropout", 3, lambda: dropout.dropout(x, 0.3, 12345)),
        ("adam", 7, lambda: optim.adam_update(p, g, m, v, 1e-4, 0.5, 0.999, 1e-8, 0.0, 0.5,
                                              0.001)),
        ("rmsprop", 5, lambda: optim.rmsprop_update(p, g, m, 1e-4, 0.99, 1e-8, 0.0)),
        ("sgd_momentum", 5, lambda: optim.sgd_update(p, g, m, 1e-4, 0.9, 0.0, 0.0, False,
                                                     False)),
        ("bce_with_logits", 3, lambda: loss.bce_with_logits(x, t)),
        ("bce_with_logits_grad", 4, lambda: loss.bce_with_logits_grad(x, t, gy)),
    ]


def time_ms(xp, fn, repeat: int, inner: int) -> float:
    """Median over `repeat` samples of the mean time of `inner` back-to-back calls of fn."""
    fn()  # compiles the kernel and fills CuPy's memory pool
    xp.cuda.get_current_stream().synchronize()
    samples = []
    for _ in range(repeat):
        start, end = xp.cuda.Event(), xp.cuda.Event()
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        samples.append(xp.cuda.get_elapsed_time(start, end) / inner)
    return statistics.median(samples)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1 << 26, help="elements per array (default 2^26)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeat", type=int, default=21, help="timed samples per kernel")
    p.add_argument("--inner", type=int, default=10, help="launches per timed sample")
    a = p.parse_args(argv)

    reason = backend.cuda_unavailable_reason() or _cuda.missing_reason()
    if reason is None and _cuda.SIMULATOR:
        reason = "NUMBA_ENABLE_CUDASIM=1 is set; unset it to time real kernels"
    if reason is not None:
        print(f"kernels_cuda: needs a GPU: {reason}", file=sys.stderr)
        return 2
    xp = backend.xp_for("cuda")
    dtype = np.dtype(a.dtype)
    n, itemsize = a.size, dtype.itemsize

    src = xp.ones(n, dtype)
    dst = xp.empty_like(src)
    copy_ms = time_ms(xp, lambda: xp.copyto(dst, src), a.repeat, a.inner)
    copy_bw = 2 * n * itemsize / copy_ms / 1e6  # GB/s
    dev = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["name"]
    dev = dev.decode() if isinstance(dev, bytes) else dev
    print(f"{dev}: {n} {a.dtype} elements ({n * itemsize / 2**20:.0f} MiB per array); "
          f"copy bandwidth {copy_bw:.0f} GB/s ({copy_ms:.3f} ms)")
    print(f"{'kernel':<22}{'arrays':>7}{'ms':>10}{'GB/s':>9}{'of copy':>9}")
    for name, arrays, fn in kernels(xp, n, dtype):
        ms = time_ms(xp, fn, a.repeat, a.inner)
        bw = arrays * n * itemsize / ms / 1e6
        print(f"{name:<22}{arrays:>7}{ms:>10.3f}{bw:>9.0f}{bw / copy_bw:>9.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
