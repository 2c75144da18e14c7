"""The adaptive OpenBLAS thread count (kernels/threads.py), on a simulated clock.

Each simulated GEMM call does 1 GFLOP and takes the seconds that the current "machine" gives the
current thread count, so the controller's choices can be checked exactly against what a perfect
chooser would do.
"""

import numpy as np
import pytest

from minigan.kernels import shifted as S
from minigan.kernels import threads as T


class Machine:
    """A fake clock; `speed[n]` is GFLOP/s with n threads."""

    def __init__(self, speed):
        self.now, self.speed, self.threads = 0.0, dict(speed), None

    def clock(self):
        return self.now

    def run(self, ctl, calls):
        used = []
        for _ in range(calls):
            t0 = ctl.start()
            self.now += 1.0 / self.speed[ctl.current]
            ctl.done(t0, 1e9)
            used.append(ctl.current)
        return used


def _controller(machine, most=4):
    def setter(n):
        machine.threads = n
    return T.BlasThreads(most, setter, window=8, clock=machine.clock)


def test_contended_machine_settles_on_one_thread_and_rarely_looks_back():
    m = Machine({4: 2.0, 1: 60.0})           # the 2-core figures above: 2 vs 60-80 GFLOP/s
    ctl = _controller(m)
    m.run(ctl, 8 * 400)
    windows = ctl.history[2:]                 # after measuring both once
    share = sum(n == 4 for n, _ in windows) / len(windows)
    assert ctl.current == 1 and m.threads == 1
    # second looks back at 4 threads: patience 4, 8, ... 64 windows -> at most ~2.5 % of windows
    assert 0 < share < 0.03, f"{share:.3f} of windows spent on the slow setting"
    best = 8 * 400 / 60.0                     # every call on one thread
    assert m.now < 1.25 * best, f"{m.now:.1f} s against {best:.1f} s for a perfect chooser"


def test_quiet_machine_keeps_all_threads():
    m = Machine({4: 90.0, 1: 60.0})
    ctl = _controller(m)
    m.run(ctl, 8 * 400)
    share = sum(n == 1 for n, _ in ctl.history) / len(ctl.history)
    assert ctl.current == 4 and share < 0.03


def test_load_arriving_and_leaving_is_followed():
    m = Machine({4: 90.0, 1: 60.0})
    ctl = _controller(m)
    m.run(ctl, 8 * 100)
    assert ctl.current == 4
    m.speed = {4: 2.0, 1: 55.0}               # another process starts
    used = m.run(ctl, 8 * 3)
    assert used[-1] == 1, "did not move to one thread within three windows of the load"
    m.speed = {4: 90.0, 1: 60.0}              # it stops: found again within the max patience
    used = m.run(ctl, 8 * (ctl.max_patience + 2))
    assert used[-1] == 4


def test_environment_fixes_the_count(monkeypatch):
    calls = []
    monkeypatch.setenv("MINIGAN_BLAS_THREADS", "1")
    assert T.from_environment(lambda: 4, calls.append) is None and calls == [1]
    monkeypatch.setenv("MINIGAN_BLAS_THREADS", "auto")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert T.from_environment(lambda: 2, calls.append) is None and calls == [1]
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert isinstance(T.from_environment(lambda: 2, calls.append), T.BlasThreads)
    assert T.from_environment(lambda: 1, calls.append) is None   # one core: nothing to choose
    monkeypatch.setenv("MINIGAN_BLAS_THREADS", "many")
    with pytest.raises(ValueError, match="MINIGAN_BLAS_THREADS must be 'auto' or a positive"):
        T.from_environment(lambda: 2, calls.append)


@pytest.mark.skipif(S._SET_THREADS is None, reason="no openblas_set_num_threads in NumPy's BLAS")
def test_numpys_openblas_takes_the_setting():
    before = S._GET_THREADS()
    try:
        S._SET_THREADS(1)
        assert S._GET_THREADS() == 1
        a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
        np.testing.assert_allclose(a @ a.T, (a.astype(np.float64) @ a.T.astype(np.float64)),
                                   rtol=1e-4, atol=1e-4)
    finally:
        S._SET_THREADS(before)
    assert S._GET_THREADS() == before
