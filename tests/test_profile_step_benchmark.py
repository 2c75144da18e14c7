"""benchmarks/profile_step.py sees the shifted convolutions' GEMMs, however they are run."""

import argparse
import sys
from pathlib import Path

import numpy as np

import minigan
import minigan.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import profile_step  # noqa: E402


def _conv_step(n, c, size, k):
    rng = np.random.default_rng(0)
    x = minigan.tensor(rng.standard_normal((n, c, size, size)).astype(np.float32))
    w = minigan.tensor(rng.standard_normal((c, c, k, k)).astype(np.float32))
    return lambda: F.conv2d(x, w, padding=k // 2)


def test_gemm_rates_count_the_multiply_adds_of_the_taps_that_meet_the_image():
    n, c, size, k = 2, 16, 7, 5          # a 7x7 map: no gap columns, so no zeros multiplied
    rows = profile_step.gemm_rates(_conv_step(n, c, size, k),
                                   argparse.Namespace(steps=2, model="conv", batch=n))
    taps = sum(1 for oy in range(size) for ox in range(size) for i in range(k) for j in range(k)
               if 0 <= oy - k // 2 + i < size and 0 <= ox - k // 2 + j < size)
    flop = sum(r[1] for r in rows.values()) / 2
    assert flop == 2.0 * c * c * n * taps           # naive count over pixels and taps
    assert all(r[0] > 0 and r[2] > 0 for r in rows.values())


def test_a_convolution_step_is_mostly_gemm_under_the_profiler():
    # 2 * 128 * 128 * 25 * 256 * 16 multiply-adds (3.4 GFLOP) a call against a few hundred
    # microseconds of everything else: GEMM must be the largest part by far
    parts, total, _ = profile_step.part_times(_conv_step(16, 128, 16, 5), 2)
    assert parts["GEMM"] > 0.5 * total, parts


def test_device_wait_is_the_time_spent_in_synchronize():
    """On a GPU a step's own time splits into waiting for the device (CuPy's synchronize, a
    compiled method whose own time is the wait) and the host's work: a stand-in step doing the
    same pure-Python loop inside a function named synchronize and outside it comes out about
    half and half."""
    def count(n):
        x = 0
        for _ in range(n):
            x += 1
        return x

    def synchronize(n):
        x = 0
        for _ in range(n):
            x += 1
        return x

    def step():
        count(300_000)
        synchronize(300_000)

    _, total, stats = profile_step.part_times(step, 3)
    wait = profile_step.device_wait(stats)
    assert 0.35 <= wait / total <= 0.65, (wait, total)
