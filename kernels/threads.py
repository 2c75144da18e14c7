"""How many threads minigan's CPU kernels use, chosen by measuring rather than assumed.

A training step makes thousands of small GEMM calls and dozens of parallel numba kernels, each a
fork-join: it waits for its slowest thread. On a quiet machine threads pay (1.3-1.5x on 2 cores).
On a busy one, a thread the OS has descheduled holds up the whole call for a time slice,
thousands of times a step: with other processes on this 2-core machine a half-width DCGAN step
took 3.1 s with OpenBLAS's 2 threads and 0.39 s with 1.

Two remedies, used together:
- `RowPool` runs a convolution's GEMMs (single-threaded BLAS) on a few threads of our own that
  claim chunks of output rows from a shared counter: a thread that is descheduled delays only
  the chunk it holds, the others take the rest, and nobody waits for a thread that never came.
- `Threads` chooses the width of everything (the pool and numba's parallel kernels) between all
  cores and one, by measuring: the convolutions report their floating-point work, and the rate
  is that work over the wall time of a window of `window` calls (so it covers the whole step
  around them, numba kernels included). It keeps the faster width and tries the other again
  after a patience that doubles each time the other loses (up to `max_patience` windows) and
  resets when it wins; a second look that is clearly losing ends after its first call. A sudden
  slowdown of the current choice (another process starting) shows at the next window's end.
MINIGAN_THREADS=auto (the default) does this; a number fixes the width.
"""

from __future__ import annotations

import itertools
import os
import threading
import time


class RowPool:
    """Runs fn(r0, r1) over chunks of rows [0, total) on `width` threads, this one included.
    Chunks are claimed from a shared counter, so a thread the OS has descheduled holds up only
    a chunk it has already claimed: the others take the rest, and a thread that starts late
    finds nothing left. (The GEMMs run in ctypes calls, which release the GIL.)"""

    def __init__(self, width: int = 1, min_rows: int = 16):
        self.width, self.min_rows = width, min_rows  # a chunk's GEMM keeps >= min_rows rows
        self._executor = None

    def run(self, total: int, fn) -> None:
        chunks = min(total // self.min_rows, 4 * self.width) if self.width > 1 else 1
        if chunks <= 1:
            fn(0, total)
            return
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max(1, os.cpu_count() or 1), "minigan-gemm")
        bounds = [total * i // chunks for i in range(chunks + 1)]
        claim = itertools.count()
        done = itertools.count(1)
        finished = threading.Event()
        errors = []

        def work():
            while (i := next(claim)) < chunks:
                try:
                    fn(bounds[i], bounds[i + 1])
                except BaseException as e:  # noqa: BLE001  (raised again below, in the caller)
                    errors.append(e)
                if next(done) == chunks:
                    finished.set()

        for _ in range(self.width - 1):
            self._executor.submit(work)
        work()
        finished.wait()
        if errors:
            raise errors[0]


class Threads:
    """Adaptive choice between `most` threads and one; `setter(n)` applies a choice."""

    def __init__(self, most: int, setter, window: int = 32, min_patience: int = 4,
                 max_patience: int = 64, clock=time.perf_counter):
        self.most, self.setter, self.clock = most, setter, clock
        self.window, self.min_patience, self.max_patience = window, min_patience, max_patience
        self.current = most
        self.rate: dict[int, float] = {}          # measured GFLOP/s per thread count
        self.age = {most: 0, 1: 0}                # windows since each was last measured
        self.patience = {most: min_patience, 1: min_patience}
        self.history: list[tuple[int, float]] = []  # (threads, GFLOP/s) of every window
        self._flops = 0.0
        self._seconds = 0.0
        self._calls = 0
        self._t0: float | None = None             # when the window's first call started

    def start(self) -> float:
        t = self.clock()
        if self._t0 is None:
            self._t0 = t
        return t

    def done(self, t0: float, flops: float) -> None:
        """Record one call that started at `t0` and did `flops` operations; the window's rate
        is its work over the wall time since its first call started."""
        self._seconds = self.clock() - self._t0
        self._flops += flops
        self._calls += 1
        if self._calls >= self.window or self._losing():
            self._decide()

    def _losing(self) -> bool:
        """A second look at the other count that is already clearly slower ends at once: on a
        busy machine one call with all threads can cost as much as a window with one."""
        best = self.rate.get(self._other(self.current))
        return (len(self.rate) == 2 and best > self.rate[self.current]
                and self._flops / max(self._seconds, 1e-9) / 1e9 < 0.5 * best)

    def _other(self, n: int) -> int:
        return 1 if n == self.most else self.most

    def _decide(self) -> None:
        n = self.current
        rate = self._flops / max(self._seconds, 1e-9) / 1e9
        self._flops = self._seconds = 0.0
        self._calls = 0
        self._t0 = None
        self.history.append((n, rate))
        best_before = max(self.rate, key=self.rate.get) if len(self.rate) == 2 else None
        self.rate[n] = rate if n not in self.rate else 0.5 * (self.rate[n] + rate)
        self.age[n] = 0
        other = self._other(n)
        self.age[other] += 1
        if len(self.rate) < 2:
            choice = other                        # measure both before choosing
        else:
            best = max(self.rate, key=self.rate.get)
            if best_before is not None and n != best_before:   # n was a second look
                if best == n:
                    self.patience[other] = self.min_patience
                else:
                    self.patience[n] = min(2 * self.patience[n], self.max_patience)
            loser = self._other(best)
            choice = loser if self.age[loser] >= self.patience[loser] else best
        if choice != self.current:
            self.setter(choice)
            self.current = choice


def configure(set_blas_threads, pool: RowPool) -> Threads | None:
    """Set up threading for this process: BLAS single-threaded (the pool parallelises the
    GEMMs), the pool and numba's kernels as wide as MINIGAN_THREADS says; returns the
    controller when it says auto (the default) and there is more than one core."""
    import numba

    setting = os.environ.get("MINIGAN_THREADS", "auto").strip().lower()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    most = max(1, min(cores or 1, numba.config.NUMBA_NUM_THREADS))
    if setting != "auto":
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"MINIGAN_THREADS must be 'auto' or a positive number of threads, "
                             f"got {setting!r}")
        most = int(setting)

    def setter(n: int) -> None:
        pool.width = n
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    if set_blas_threads is not None:
        set_blas_threads(1)
    setter(most)
    return Threads(most, setter) if setting == "auto" and most > 1 else None
