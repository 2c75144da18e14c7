"""Threading of the CPU kernels (kernels/threads.py): the adaptive width on a simulated clock,
the row pool on real threads.

Each simulated GEMM call does 1 GFLOP and takes the seconds that the current "machine" gives the
current option, so the controller's choices can be checked exactly against what a perfect
chooser would do.
"""

import threading
import time

import numpy as np
import pytest

from minigan.kernels import shifted as S
from minigan.kernels import threads as T

# (BLAS, pool, numba) widths, as configure() offers them (BLAS's own threads: not tried here)
ALL, GEMM_ONLY, ONE = (1, 4, 4), (1, 4, 1), (1, 1, 1)


class Machine:
    """A fake clock; `speed[option]` is GFLOP/s with that option."""

    def __init__(self, speed):
        self.now, self.speed, self.applied = 0.0, dict(speed), None

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


def _controller(machine):
    def setter(option):
        machine.applied = option
    return T.Threads([ALL, GEMM_ONLY, ONE], setter, window=8, clock=machine.clock)


def test_contended_machine_settles_on_the_fastest_and_rarely_looks_back():
    # the 2-core figures: all threads 2 GFLOP/s against 60-80 with fewer
    m = Machine({ALL: 2.0, GEMM_ONLY: 60.0, ONE: 40.0})
    ctl = _controller(m)
    m.run(ctl, 8 * 400)
    windows = ctl.history[3:]                 # after measuring each once
    share = sum(o != GEMM_ONLY for o, _ in windows) / len(windows)
    assert ctl.current == GEMM_ONLY and m.applied == GEMM_ONLY
    # second looks: patience 4, 8, ... 64 windows for each of the two others
    assert 0 < share < 0.06, f"{share:.3f} of windows spent on slower settings"
    best = 8 * 400 / 60.0                     # every call on the best option
    assert m.now < 1.3 * best, f"{m.now:.1f} s against {best:.1f} s for a perfect chooser"


def test_quiet_machine_keeps_all_threads():
    m = Machine({ALL: 90.0, GEMM_ONLY: 75.0, ONE: 60.0})
    ctl = _controller(m)
    m.run(ctl, 8 * 400)
    share = sum(o != ALL for o, _ in ctl.history) / len(ctl.history)
    assert ctl.current == ALL and share < 0.06


def test_load_arriving_and_leaving_is_followed():
    m = Machine({ALL: 90.0, GEMM_ONLY: 75.0, ONE: 60.0})
    ctl = _controller(m)
    m.run(ctl, 8 * 100)
    assert ctl.current == ALL
    m.speed = {ALL: 2.0, GEMM_ONLY: 55.0, ONE: 40.0}     # another process starts
    used = m.run(ctl, 8 * 3)
    assert used[-1] == GEMM_ONLY, "did not leave the slow setting within three windows"
    m.speed = {ALL: 90.0, GEMM_ONLY: 75.0, ONE: 60.0}    # it stops: found again in time
    used = m.run(ctl, 8 * (ctl.max_patience + 4))
    assert used[-1] == ALL


def test_environment_sets_the_threads(monkeypatch):
    import numba

    blas = []
    pool = T.RowPool()
    numba_before = numba.get_num_threads()
    cores = min(len(__import__("os").sched_getaffinity(0)), numba.config.NUMBA_NUM_THREADS)
    try:
        monkeypatch.setenv("MINIGAN_THREADS", "1")
        assert T.configure(blas.append, pool) is None
        assert blas == [1] and pool.width == 1 and numba.get_num_threads() == 1
        monkeypatch.setenv("MINIGAN_THREADS", "blas")      # OpenBLAS's threads, no pool
        assert T.configure(blas.append, pool) is None
        assert blas == [1] and pool.width == 1 and pool.max_chunks == 1   # BLAS left alone
        monkeypatch.delenv("MINIGAN_THREADS")      # the default: blas or pool, by the load
        ctl = T.configure(blas.append, pool, lambda: 7)
        assert (ctl is None) == (cores == 1) and pool.width == 1 and pool.max_chunks == 1
        if ctl is not None:
            assert isinstance(ctl, T.Detect) and ctl.family is None and blas == [1]
        monkeypatch.setenv("MINIGAN_THREADS", "pool")
        ctl = T.configure(blas.append, pool)
        if cores > 1:
            assert ctl.options == [(1, cores, cores), (1, cores, 1), (1, 1, 1)]
            assert blas[-1] == 1 and pool.width == cores and pool.max_chunks > 1
        monkeypatch.setenv("MINIGAN_THREADS", "auto")
        ctl = T.configure(blas.append, pool)
        assert (ctl is None) == (cores == 1)
        if ctl is not None:   # starts with OpenBLAS's threads
            assert ctl.options == [(cores, 1, cores), (1, cores, cores), (1, cores, 1),
                                   (1, 1, 1)]
            assert blas[-1] == cores and pool.width == 1
        monkeypatch.setenv("MINIGAN_THREADS", "many")
        with pytest.raises(ValueError,
                           match="MINIGAN_THREADS must be detect, blas, pool, auto or a"):
            T.configure(blas.append, pool)
    finally:
        numba.set_num_threads(numba_before)


def test_the_load_meter_counts_the_other_processes_time(tmp_path, monkeypatch):
    """Two reads of a fake /proc/stat: the machine's busy ticks (user, nice, system, irq,
    softirq, steal; not idle or iowait) less this process's own CPU time, over the wall time."""
    import os

    hz = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    times = iter([0.0, 0.25, 10.0, 12.0])
    own = iter([1.0, 1.05, 3.0, 5.0])                 # this process: 0.05 s, then 2 s

    def write(ticks):
        stat.write_text("cpu  " + " ".join(map(str, ticks)) + "\ncpu0 1 2 3\n")

    monkeypatch.setattr(os, "times", lambda: os.times_result((next(own), 0, 0, 0, 0)))
    write([100, 5, 20, 900, 40, 1, 2, 3])
    meter = T.LoadMeter(str(stat), clock=lambda: next(times))
    # 0.25 s later: (1.5 cores * 0.25 s + 0.05 s of our own) of busy ticks; idle, iowait ignored
    busy = round((1.5 * 0.25 + 0.05) * hz)
    write([100 + busy - 3, 5, 20 + 1, 950, 80, 1, 2, 3 + 2])
    assert meter.others() == pytest.approx(1.5, abs=1.5 / hz / 0.25)
    # 2 s of our own threads on 2 cores, nothing else: 0 cores of the others
    write([100 + busy - 3 + 2 * hz, 5, 21, 960, 80, 1, 2, 5])
    assert meter.others() == pytest.approx(0.0, abs=1 / hz)
    assert T.LoadMeter(str(tmp_path / "none")).others() is None
    assert T.busy_cores(0.01, str(tmp_path / "none")) is None


class _Meter:
    def __init__(self, readings):
        self.readings = list(readings)

    def others(self):
        return self.readings.pop(0)


def test_detect_picks_the_pool_only_while_the_machine_is_busy():
    made, blas_used = [], []

    def make_pool():
        made.append(T.Threads([(1, 2, 2), (1, 1, 1)], lambda o: None))
        return made[-1]

    quiet = T.Detect(lambda: blas_used.append(1), make_pool, probe=lambda: 0.2,
                     meter=_Meter([]), interval=1e9)
    assert quiet.family is None
    quiet.done(quiet.start(), 1e6)
    assert quiet.family == "blas" and quiet.busy == 0.2 and not made and blas_used
    busy = T.Detect(lambda: None, make_pool, probe=lambda: 1.0, meter=_Meter([]), interval=1e9)
    busy.done(busy.start(), 1e6)
    assert busy.family == "pool" and busy.inner is made[-1] and made[-1]._calls == 1
    unknown = T.Detect(lambda: None, make_pool, probe=lambda: None, meter=_Meter([]),
                       interval=1e9)                              # no /proc/stat
    unknown.start()
    assert unknown.family == "blas"
    probes = []
    kept = T.Detect(lambda: None, make_pool, probe=lambda: probes.append(1) or 2.0,
                    meter=_Meter([]), interval=1e9)
    kept.use("blas")                     # a resumed run's family: the probe never runs
    kept.start()
    assert kept.family == "blas" and not probes
    with pytest.raises(ValueError, match="'blas' or 'pool'"):
        kept.use("fast")

    # while training: a reading every `interval` seconds of the clock
    clock = iter(range(0, 1000, 5))
    readings = [0.1, 1.2, 0.9, 0.2, 0.3, 1.0, 0.1, 0.2, 0.1, 0.1]
    live = T.Detect(lambda: None, make_pool, probe=lambda: 0.0, meter=_Meter(readings),
                    interval=5, patience=3, clock=lambda: next(clock))
    families = []
    for _ in range(len(readings) + 1):
        live.start()
        families.append(live.family)
    # quiet, busy at once -> pool; back to blas only after 3 readings in a row under half the
    # threshold (0.3 is quiet enough to stay in blas, not to leave the pool)
    assert families == ["blas", "blas", "pool", "pool", "pool", "pool", "pool", "pool", "pool",
                        "blas", "blas"]
    assert [f for _, f, _ in live.switches] == ["blas", "pool", "blas"]   # the first choice too


def test_fixed_blas_threads_end_the_detection_but_not_a_measured_setting(monkeypatch):
    """What a sweep's runs (sized to fit the cores) ask for: OpenBLAS's threads at n, and no
    switching with the load they make together; MINIGAN_THREADS=pool keeps its controller."""
    blas, used = [], []
    monkeypatch.setattr(S, "_SET_THREADS", blas.append)
    detect = T.Detect(lambda: used.append("blas"), lambda: None, probe=lambda: 2.0)
    monkeypatch.setattr(S, "THREADS", detect)
    S.fix_blas_threads(3)
    assert S.THREADS is None and detect.family == "blas" and used == ["blas"] and blas == [3]
    assert S.thread_family() is None
    measured = T.Threads([(1, 2, 2), (1, 1, 1)], lambda o: None)
    monkeypatch.setattr(S, "THREADS", measured)
    S.fix_blas_threads(1)
    assert S.THREADS is measured and blas == [3]


def test_row_pool_covers_every_row_once_and_raises_errors():
    pool = T.RowPool(width=3, min_rows=2)
    seen = []
    lock = threading.Lock()

    def fn(r0, r1):
        with lock:
            seen.extend(range(r0, r1))
    pool.run(37, fn)
    assert sorted(seen) == list(range(37))

    def bad(r0, r1):
        if r0 > 10:
            raise RuntimeError(f"rows {r0}-{r1}")
    with pytest.raises(RuntimeError, match="rows"):
        pool.run(37, bad)


def test_row_pool_never_waits_for_a_descheduled_thread():
    """Every worker busy elsewhere (as if the OS had descheduled them): the caller does all the
    chunks itself and returns at once."""
    pool = T.RowPool(width=2, min_rows=1)
    pool.run(4, lambda r0, r1: None)            # start the executor
    release = threading.Event()
    for _ in range(8):                          # occupy every worker thread
        pool._executor.submit(release.wait)
    done = []
    t = time.perf_counter()
    pool.run(16, lambda r0, r1: done.append((r0, r1)))
    took = time.perf_counter() - t
    release.set()
    assert sum(r1 - r0 for r0, r1 in done) == 16 and took < 1.0, took


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


@pytest.mark.skipif(not S.available(np.float32), reason="no CBLAS sgemm found in NumPy's BLAS")
@pytest.mark.parametrize("width", [2, 3])
@pytest.mark.parametrize("waste", [0, 10 ** 9], ids=["gap-rows", "row-by-row"])
def test_shifted_convolutions_split_over_row_chunks(width, waste, monkeypatch):
    """The three shifted-GEMM kernels with their pixels cut into chunks of one to a few on
    several threads (stride 2 and 1, stacked phases, unequal geometry; both row layouts)
    against the float64 loops, to the same float32 bound as unsplit (the weight gradient adds
    its chunks' partial sums: a few more roundings, far inside the bound)."""
    from tests.functional.test_conv import conv2d_ref, conv2d_vjp_ref
    from tests.kernels.test_shifted_kernels import _check, _chwn, _data, _nchw

    monkeypatch.setattr(S, "POOL", T.RowPool(width=width, min_rows=1))
    monkeypatch.setattr(S, "GAP_WASTE", waste)
    # the last: 4x4 kernels, stride 2, padding 1 (dcgan64) have GEMMs over the second phase
    for g in ((2, 5, 7, (7, 6), (5, 3), (2, 1), (2, 1)), (3, 3, 4, (5, 5), (3, 3), (1, 1), (1, 1)),
              (2, 5, 6, (8, 6), (4, 4), (2, 2), (1, 1))):
        n, ci, co, hw, k, s, p = g
        x, w, gy, (oh, ow) = _data(g, 5)
        f64 = [a.astype(np.float64) for a in (x, w, gy)]
        y = _nchw(S.conv2d(_chwn(x), w, *s, *p, oh, ow))
        _check(y, conv2d_ref(*f64[:2], s, p),
               conv2d_ref(np.abs(f64[0]), np.abs(f64[1]), s, p), ci * k[0] * k[1], f"fwd {g}")
        gx = _nchw(S.conv2d_input_grad(_chwn(gy), w, *s, *p, *hw))
        gw = S.conv2d_weight_grad(_chwn(x), _chwn(gy), *s, *p, *k)
        gx_ref, gw_ref = conv2d_vjp_ref(*f64, s, p)
        gx_abs, gw_abs = conv2d_vjp_ref(*[np.abs(a) for a in f64], s, p)
        _check(gx, gx_ref, gx_abs, co * k[0] * k[1], f"input grad {g}")
        _check(gw, gw_ref, gw_abs, n * oh * ow, f"weight grad {g}")


@pytest.mark.skipif(not S.available(np.float32), reason="no CBLAS sgemm found in NumPy's BLAS")
def test_every_pool_option_gives_the_same_bits(monkeypatch):
    """MINIGAN_THREADS=pool may switch between its options mid-run: each must compute exactly
    the same numbers (the chunks do not depend on the width), or a resumed run would differ
    from an unbroken one."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 9, 8, 6)).astype(np.float32)      # (C, H, W, N)
    w = rng.standard_normal((48, 40, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((48, 5, 4, 6)).astype(np.float32)
    outs = []
    for width in (1, 2, 3):
        monkeypatch.setattr(S, "POOL", T.RowPool(width=width))
        outs.append((S.conv2d(x, w, 2, 2, 2, 2, 5, 4), S.conv2d_input_grad(gy, w, 2, 2, 2, 2, 9, 8),
                     S.conv2d_weight_grad(x, gy, 2, 2, 2, 2, 5, 5)))
    for other in outs[1:]:
        for a, b, what in zip(outs[0], other, ("conv2d", "input grad", "weight grad")):
            assert np.array_equal(a, b), f"{what}: max difference {np.abs(a - b).max()}"


@pytest.mark.skipif(not S.available(np.float32), reason="no CBLAS sgemm found in NumPy's BLAS")
def test_training_steps_are_bit_identical_under_every_pool_option(monkeypatch, tmp_path):
    """Three DCGAN steps (16-32 channels: the shifted GEMMs, batchnorm, dropout, Adam) under each
    of MINIGAN_THREADS=pool's options give the same weights bit for bit."""
    from minigan.gan import TrainConfig, Trainer

    monkeypatch.setenv("MINIGAN_THREADS", "pool")
    monkeypatch.setattr(S, "POOL", T.RowPool())
    blas_before = S._GET_THREADS() if S._GET_THREADS is not None else None
    ctl = T.configure(S._SET_THREADS, S.POOL)
    if ctl is None:
        pytest.skip("one core: a single option")
    images = (np.random.default_rng(0).random((64, 28, 28)) * 255).astype(np.uint8)
    states = []
    try:
        for option in ctl.options:
            ctl.setter(option)
            config = TrainConfig(dataset="ellipses", arch="dcgan", width=16, batch_size=16,
                                 epochs=1, out=str(tmp_path / str(option)), progress=False,
                                 quality_every=0, seed=3)
            trainer = Trainer(config, images=images, overwrite=True)
            batches = iter(trainer.loader)
            for _ in range(3):
                trainer.train_step(next(batches))
            states.append({**{f"G.{k}": np.array(v) for k, v in trainer.G.state_dict().items()},
                           **{f"D.{k}": np.array(v) for k, v in trainer.D.state_dict().items()}})
    finally:
        import numba

        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        if blas_before is not None:
            S._SET_THREADS(blas_before)
    for option, state in zip(ctl.options[1:], states[1:]):
        for k, v in state.items():
            assert np.array_equal(v, states[0][k]), f"{k} differs under {option}"


def test_detect_reset_forgets_a_choice_made_under_a_passing_load():
    """A choice made while the process's own compile kept a core busy is forgotten: OpenBLAS's
    threads as they started, no family, and the next convolution probes the load afresh (the
    meter's next interval starts at the reset, not before it)."""
    probes, blas_used = [1.0, 0.0], []
    meter = _Meter([1.0])                 # the reset reads it once, to start a new interval
    d = T.Detect(lambda: blas_used.append(1), lambda: T.Threads([(1, 2, 2)], lambda o: None),
                 probe=lambda: probes.pop(0), meter=meter, interval=1e9)
    d.done(d.start(), 1e6)
    assert d.family == "pool" and d.inner is not None and d.switches and not blas_used
    d.reset()
    assert d.family is None and d.inner is None and d.busy is None and d.switches == []
    assert blas_used == [1] and meter.readings == []
    d.done(d.start(), 1e6)
    assert d.family == "blas" and d.busy == 0.0 and not probes


def test_a_first_compile_leaves_the_thread_family_to_training(monkeypatch):
    """compile_cpu_kernels runs a convolution while a child process compiles batchnorm beside
    it; the family the load then suggested must not stick (kernels/threads.py, Detect). Without
    a child (workers=1) the warm-up's choice was made on a machine as quiet as training's."""
    from minigan import precompile

    class Child:
        def wait(self):
            return 0

    monkeypatch.setattr(precompile, "cpu_kernels_cached", lambda: False)
    monkeypatch.setattr(precompile, "_warm_rest", lambda: None)
    monkeypatch.setattr(precompile, "_warm_batchnorm", lambda: None)
    monkeypatch.setattr(precompile.subprocess, "Popen", lambda *a, **k: Child())
    for workers, family in ((2, None), (1, "pool")):
        d = T.Detect(lambda: None, lambda: T.Threads([(1, 2, 2)], lambda o: None),
                     probe=lambda: 1.0, meter=_Meter([0.0]), interval=1e9)
        d.use("pool")                     # as the warm-up's convolution would have chosen
        monkeypatch.setattr(S, "THREADS", d)
        precompile.compile_cpu_kernels(workers=workers, say=None)
        assert d.family == family, workers


@pytest.mark.skipif(not S.available(np.float32) or S._GET_THREADS is None,
                    reason="no CBLAS sgemm or OpenBLAS thread functions in NumPy's BLAS")
@pytest.mark.parametrize("waste", [0, 10 ** 9], ids=["gap-rows", "row-by-row"])
def test_weight_gradient_dealt_to_threads_sums_as_openblas_does(waste, monkeypatch):
    """With OpenBLAS's threads (the `blas` family: pool one wide, one chunk) the weight
    gradient's GEMMs are dealt out to threads, OpenBLAS single-threaded meanwhile. Each block of
    the result is still summed by one GEMM sequence over all pixels, so the numbers are those of
    the same GEMMs run one after another on one thread, and those of OpenBLAS's own threads
    (which split a GEMM's rows and columns, never its sums), bit for bit, and right by the
    float64 loops; OpenBLAS's thread count is as it was afterwards."""
    from tests.functional.test_conv import conv2d_vjp_ref
    from tests.kernels.test_shifted_kernels import _check, _chwn, _data

    monkeypatch.setattr(S, "POOL", T.RowPool(width=1, max_chunks=1))
    monkeypatch.setattr(S, "THREADS", None)    # no switch of family by the machine's load
    monkeypatch.setattr(S, "GAP_WASTE", waste)
    before = S._GET_THREADS()
    try:
        for g in ((3, 24, 20, (16, 16), (4, 4), (2, 2), (1, 1)),     # dcgan64's 4x4, stride 2
                  (2, 17, 33, (9, 7), (5, 5), (2, 2), (2, 2)),
                  (2, 16, 16, (6, 6), (3, 3), (1, 1), (1, 1)),
                  (2, 16, 18, (2, 3), (5, 5), (1, 1), (2, 2))):   # taps on padding alone
            n, ci, co, hw, k, s, p = g
            x, w, gy, (oh, ow) = _data(g, 3)
            # freed memory of the result's size full of NaN: a tap no GEMM reaches must still
            # come out 0, not what np.empty hands back
            garbage = np.full((1, co, ci * k[0] * k[1]), np.nan, np.float32)
            del garbage
            S._SET_THREADS(2)
            assert S._blas_width() == 2
            dealt = S.conv2d_weight_grad(_chwn(x), _chwn(gy), *s, *p, *k)
            assert S._GET_THREADS() == 2
            with monkeypatch.context() as m:
                m.setattr(S, "_blas_width", lambda: 1)   # one table, on OpenBLAS's two threads
                whole = S.conv2d_weight_grad(_chwn(x), _chwn(gy), *s, *p, *k)
                S._SET_THREADS(1)                        # and on one
                alone = S.conv2d_weight_grad(_chwn(x), _chwn(gy), *s, *p, *k)
            assert np.array_equal(dealt, alone), f"{g}: {np.abs(dealt - alone).max()}"
            assert np.array_equal(dealt, whole), f"{g}: {np.abs(dealt - whole).max()}"
            f64 = [a.astype(np.float64) for a in (x, w, gy)]
            _, gw_ref = conv2d_vjp_ref(*f64, s, p)
            _, gw_abs = conv2d_vjp_ref(*[np.abs(a) for a in f64], s, p)
            _check(dealt, gw_ref, gw_abs, n * oh * ow, f"weight grad {g}")
    finally:
        S._SET_THREADS(before)


def test_run_each_runs_every_function_and_raises_the_first_error():
    pool = T.RowPool(width=2)
    seen = []
    pool.run_each([lambda i=i: seen.append(i) for i in range(3)])
    pool.run_each([])
    assert sorted(seen) == [0, 1, 2]

    def boom():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        pool.run_each([lambda: seen.append(3), boom])
    assert seen[-1] == 3
