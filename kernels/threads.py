"""How many threads minigan's CPU kernels use, chosen by measuring rather than assumed.

A training step makes thousands of small GEMM calls and dozens of parallel numba kernels, each a
fork-join: it waits for its slowest thread. On a quiet machine threads pay (1.3-1.5x on 2 cores).
On a busy one, a thread the OS has descheduled holds up the whole call for a time slice,
thousands of times a step: with other processes on this 2-core machine a half-width DCGAN step
took 3.1 s with OpenBLAS's 2 threads and 0.39 s with 1.

Two remedies, used together:
- `RowPool` runs a convolution's GEMMs (single-threaded BLAS) on a few threads of our own that
  claim chunks of its pixels from a shared counter: a thread that is descheduled delays only
  the chunk it holds, the others take the rest, and nobody waits for a thread that never came.
- `Threads` chooses between OpenBLAS's own threads and the pool, and the width of numba's
  parallel kernels, by measuring: the convolutions report their floating-point work, and the rate
  is that work over the wall time of a window of `window` calls (so it covers the whole step
  around them, numba kernels included). It keeps the fastest choice and tries each other one
  again after a patience that doubles each time that one loses (up to `max_patience` windows) and
  resets when it wins; a second look that is clearly losing ends after its first call. A sudden
  slowdown of the current choice (another process starting) shows at the next window's end.
MINIGAN_THREADS picks the setting (see `configure`): detect (the default: blas on a quiet
machine, pool on a busy one, decided by `busy_cores` at the first convolution), blas (OpenBLAS's
threads, best on a quiet machine), pool (the measured choice among the pool's widths: for busy
machines and several runs at once; results identical bit for bit), auto (every option), or a
number.
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

    def __init__(self, width: int = 1, min_rows: int = 16, max_chunks: int = 8):
        self.width, self.min_rows, self.max_chunks = width, min_rows, max_chunks
        self._executor = None

    def bounds(self, total: int) -> list[int]:
        """The chunks' boundaries: 0 = b[0] < b[1] < ... < b[-1] = total. They depend on
        `total` (and max_chunks) alone, never on the width: BLAS rounds a GEMM cut in two
        differently from the whole, so this keeps results bit for bit the same at any width."""
        chunks = max(1, min(total // self.min_rows, self.max_chunks))
        return [total * i // chunks for i in range(chunks + 1)]

    def run(self, total: int, fn, bounds: list[int] | None = None) -> None:
        """fn over the chunks of `bounds` (this pool's `bounds(total)` unless given)."""
        bounds = self.bounds(total) if bounds is None else bounds
        chunks = len(bounds) - 1
        if self.width <= 1 or chunks == 1:
            for i in range(chunks):
                fn(bounds[i], bounds[i + 1])
            return
        self._start()
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

    def _start(self) -> None:
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max(1, os.cpu_count() or 1), "minigan-gemm")

    def run_each(self, fns) -> None:
        """Each of `fns` on a thread of its own (the first on this one), all finished on
        return; the first error raised is raised again here."""
        if len(fns) <= 1:
            for fn in fns:
                fn()
            return
        self._start()
        futures = [self._executor.submit(fn) for fn in fns[1:]]
        error = None
        try:
            fns[0]()
        except BaseException as e:  # noqa: BLE001  (raised below, after the others finish)
            error = e
        for f in futures:
            try:
                f.result()
            except BaseException as e:  # noqa: BLE001
                error = error or e
        if error is not None:
            raise error


class Threads:
    """Adaptive choice among `options` (the first is the start); `setter(option)` applies one.
    Each option's rate is the work done per second of wall time in its windows."""

    def __init__(self, options, setter, window: int = 32, min_patience: int = 4,
                 max_patience: int = 64, clock=time.perf_counter):
        self.options, self.setter, self.clock = list(options), setter, clock
        self.window, self.min_patience, self.max_patience = window, min_patience, max_patience
        self.current = self.options[0]
        self.rate: dict = {}                      # measured GFLOP/s per option
        self.age = dict.fromkeys(self.options, 0)  # windows since each was last measured
        self.patience = dict.fromkeys(self.options, min_patience)
        self.history: list[tuple] = []            # (option, GFLOP/s) of every window
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

    def _best(self):
        return max(self.rate, key=self.rate.get) if self.rate else None

    def _losing(self) -> bool:
        """A second look that is already clearly slower than the best ends at once: on a busy
        machine one call with all threads can cost as much as a window with one."""
        if len(self.rate) < len(self.options) or self.current == self._best():
            return False
        return self._flops / max(self._seconds, 1e-9) / 1e9 < 0.5 * self.rate[self._best()]

    def _decide(self) -> None:
        n = self.current
        rate = self._flops / max(self._seconds, 1e-9) / 1e9
        self._flops = self._seconds = 0.0
        self._calls = 0
        self._t0 = None
        self.history.append((n, rate))
        complete = len(self.rate) == len(self.options)
        best_before = self._best()
        self.rate[n] = rate if n not in self.rate else 0.5 * (self.rate[n] + rate)
        for o in self.options:
            self.age[o] = 0 if o == n else self.age[o] + 1
        unmeasured = [o for o in self.options if o not in self.rate]
        if unmeasured:
            choice = unmeasured[0]                # measure every option before choosing
        else:
            best = self._best()
            if complete and n != best_before:     # n was a second look
                if best == n:
                    self.patience[best_before] = self.min_patience
                else:
                    self.patience[n] = min(2 * self.patience[n], self.max_patience)
            due = [o for o in self.options if o != best and self.age[o] >= self.patience[o]]
            choice = max(due, key=lambda o: self.age[o] - self.patience[o]) if due else best
        if choice != self.current:
            self.setter(choice)
            self.current = choice


class LoadMeter:
    """Reads how much CPU time the whole machine and this process have used: /proc/stat's busy
    ticks (user, nice, system, irq, softirq, and steal: a virtual machine's cores taken by its
    host) and os.times(). `others()` is the other processes' share since the last call, in
    cores, so it can be read while this process runs (its own threads, spinning ones
    included, are taken out)."""

    def __init__(self, stat: str = "/proc/stat", clock=time.monotonic):
        self.stat, self.clock = stat, clock
        self.last = self.read()

    def read(self) -> tuple[float, float, float] | None:
        try:
            with open(self.stat) as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = ticks + [0] * (8 - len(ticks))
        t = os.times()
        return ((user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
                t.user + t.system, self.clock())

    def others(self) -> float | None:
        now = self.read()
        last, self.last = self.last, now
        if now is None or last is None:
            return None
        machine, own, seconds = (a - b for a, b in zip(now, last, strict=True))
        return max(0.0, machine - own) / max(seconds, 1e-3)


def busy_cores(seconds: float = 0.25, stat: str = "/proc/stat", sleep=time.sleep) -> float | None:
    """How many cores' worth of CPU time the other processes use, over `seconds` of sleep;
    None where there is no /proc/stat."""
    meter = LoadMeter(stat)
    sleep(seconds)
    return meter.others()


class Detect:
    """The default setting: OpenBLAS's threads on a quiet machine, the pool (and its measured
    widths) while other processes keep at least `threshold` cores busy.

    `probe()` (busy_cores) decides at the first convolution, not at import, so the load it sees
    is the training's own surroundings. Then every `interval` seconds the meter reads the other
    processes' share while training runs: OpenBLAS's threads give way to the pool as soon as the
    machine gets busy, and come back after `patience` quiet readings in a row (under half the
    threshold: a competitor that only pauses keeps the pool). `family` says
    which runs now; `use(family)` sets one (a resumed run starts in the family it was saved in:
    the two round differently). `switches` lists (seconds since the first choice, family, cores
    busy), the first choice included."""

    def __init__(self, use_blas, make_pool, probe=busy_cores, threshold: float = 0.5,
                 meter=None, interval: float = 5.0, patience: int = 6, clock=time.monotonic):
        self.use_blas, self.make_pool, self.probe = use_blas, make_pool, probe
        self.threshold, self.interval, self.patience = threshold, interval, patience
        self.meter, self.clock = meter, clock
        self._undecided()

    def _undecided(self) -> None:
        """The state before the first convolution: no family chosen, nothing measured."""
        self.family: str | None = None
        self.busy: float | None = None            # the latest reading
        self.inner: Threads | None = None
        self.switches: list[tuple] = []
        self._t0 = self._checked = None
        self._quiet = 0

    def use(self, family: str) -> None:
        if family not in ("blas", "pool"):
            raise ValueError(f"thread family must be 'blas' or 'pool', got {family!r}")
        if family == "pool":
            self.inner = self.make_pool()
        else:
            self.inner = None
            self.use_blas()
        self.family = family
        self._quiet = 0

    def reset(self) -> None:
        """Forget the choice made so far, as if no convolution had run: the next one probes the
        load again. For a choice made under load this process made itself (the kernels'
        first compile runs a convolution while a second process compiles beside it)."""
        self.use_blas()                           # OpenBLAS's threads as they started
        self._undecided()
        if self.meter is not None:
            self.meter.others()                   # its next reading starts from now

    def _choose(self, busy: float | None) -> None:
        self.busy = busy
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        if self.family is None:
            want = "pool" if busy is not None and busy >= self.threshold else "blas"
        elif busy is None:
            return
        elif self.family == "blas":
            want = "pool" if busy >= self.threshold else "blas"
        else:
            self._quiet = self._quiet + 1 if busy < 0.5 * self.threshold else 0
            want = "blas" if self._quiet >= self.patience else "pool"
        if want != self.family:
            self.use(want)
            self.switches.append((round(now - self._t0, 1), want, busy))

    def start(self) -> float:
        if self.family is None:
            self._choose(self.probe())
        now = self.clock()
        if self._checked is None:
            self._checked = now
            if self.meter is None:
                self.meter = LoadMeter()
        elif now - self._checked >= self.interval:
            self._checked = now
            self._choose(self.meter.others())
        return self.inner.start() if self.inner is not None else 0.0

    def done(self, t0: float, flops: float) -> None:
        if self.inner is not None:
            self.inner.done(t0, flops)


def configure(set_blas_threads, pool: RowPool, get_blas_threads=None) -> Threads | Detect | None:

    """Set up threading for this process as MINIGAN_THREADS says; returns the controller for the
    adaptive settings. Options are (BLAS, pool, numba) widths:
      detect (default) blas, or pool when other processes keep half a core or more busy as
                      the first convolution runs (`Detect`)
      blas            (all, 1, all): OpenBLAS's own threads; fastest on a quiet machine
      pool            chosen among (1, all, all), (1, all, 1), (1, 1, 1) by measuring: the
                      pool holds up on a busy machine, numba's fork-join kernels are the first
                      to suffer there; all three give the same results bit for bit
      auto            all four: fastest everywhere, but a run's last bits then depend on which
                      was chosen when (OpenBLAS rounds differently with its threads), so a
                      resumed run is no longer bit-identical to an unbroken one
      N               (1, N, N)"""
    import numba

    setting = os.environ.get("MINIGAN_THREADS", "").strip().lower() or "detect"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    most = max(1, min(cores or 1, numba.config.NUMBA_NUM_THREADS))
    if setting not in ("auto", "blas", "pool", "detect"):
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"MINIGAN_THREADS must be detect, blas, pool, auto or a positive "
                             f"number of threads, got {setting!r}")
        most = int(setting)

    def setter(widths: tuple[int, int, int]) -> None:
        if set_blas_threads is not None:
            set_blas_threads(widths[0])
        pool.width = widths[1]
        pool.max_chunks = 1 if widths[0] > 1 else 8   # OpenBLAS's threads take whole GEMMs
        numba.set_num_threads(min(widths[2], numba.config.NUMBA_NUM_THREADS))

    pooled = [(1, most, most), (1, most, 1), (1, 1, 1)]
    blas_start = get_blas_threads() if get_blas_threads is not None else most
    numba_start = numba.get_num_threads()

    def as_started() -> None:                     # OpenBLAS and numba as they start (or as the
        pool.width, pool.max_chunks = 1, 1        # user set them): whole GEMMs, all threads
        if set_blas_threads is not None:
            set_blas_threads(blas_start)
        numba.set_num_threads(numba_start)

    pool.width, pool.max_chunks = 1, 1            # until a setting says otherwise
    if setting == "blas" or set_blas_threads is None or (setting == "detect" and most == 1):
        return None
    if setting.isdigit() or most == 1:
        setter((1, most, most))
        return None
    if setting == "detect":
        return Detect(as_started, lambda: _started(pooled, setter))
    return _started(pooled if setting == "pool" else [(most, 1, most), *pooled], setter)


def _started(options, setter) -> Threads:
    """The adaptive choice among `options`, the first of them set."""
    setter(options[0])
    return Threads(options, setter)
