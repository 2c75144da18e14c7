"""OpenBLAS's thread count, chosen by measuring rather than assumed.

A training step makes thousands of small GEMM calls, and a multi-threaded GEMM is a fork-join:
every call waits for its slowest thread. On a quiet machine that is the fastest way to run them
(1.3-1.5x over one thread on 2 cores). On a busy one, a thread the OS has descheduled holds up
the whole call for a time slice, thousands of times a step: with two other processes on this
2-core machine a half-width DCGAN step took 3.1 s with OpenBLAS's 2 threads and 0.39 s with 1.

So the convolutions report the floating-point work and the seconds of their GEMMs here, and
`BlasThreads` compares the rate with all threads against the rate with one, in windows of
`window` calls: it keeps the faster, and tries the other again after a patience that doubles
each time the other loses (up to `max_patience` windows) and resets when it wins; a second look
that is clearly losing ends after its first call. A sudden
slowdown of the current choice (another process starting) shows at the next window's end.
MINIGAN_BLAS_THREADS=auto (the default) does this; a number fixes the count; OPENBLAS_NUM_THREADS
set by the user also fixes it.
"""

from __future__ import annotations

import os
import time


class BlasThreads:
    """Adaptive choice between `most` BLAS threads and one; `setter(n)` applies a choice."""

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

    def start(self) -> float:
        return self.clock()

    def done(self, t0: float, flops: float) -> None:
        """Record one GEMM-bound call that started at `t0` and did `flops` operations."""
        self._seconds += self.clock() - t0
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


def from_environment(get_threads, set_threads) -> BlasThreads | None:
    """The controller for this process, or None when the thread count is fixed: by
    MINIGAN_BLAS_THREADS=N, by the user's OPENBLAS_NUM_THREADS, or by a single core."""
    setting = os.environ.get("MINIGAN_BLAS_THREADS", "auto").strip().lower()
    if setting != "auto":
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"MINIGAN_BLAS_THREADS must be 'auto' or a positive number of "
                             f"threads, got {setting!r}")
        set_threads(int(setting))
        return None
    if "OPENBLAS_NUM_THREADS" in os.environ or get_threads is None or set_threads is None:
        return None
    most = int(get_threads())
    return BlasThreads(most, set_threads) if most > 1 else None
