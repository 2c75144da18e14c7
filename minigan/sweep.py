"""Sweeps: the same question over many seeds and settings, each run a normal run folder, trained
as tasks on Dask (a LocalCluster on this machine by default, or an existing scheduler).

    python -m minigan sweep examples/sweep_mnist.toml
    python -m minigan sweep --grid loss=bce,wgan-gp --seeds 0-4 --set epochs=2 --out sweeps/loss

    SWEEP/sweep.json             the spec (settings, grid, seeds) and the list of runs
    SWEEP/runs/NAME/             one run folder per (setting, seed), as `minigan train` writes it,
                                 with sweep_run.json: state (running, finished, failed), error,
                                 the worker's host and pid, how many times it was started
    SWEEP/report.html, report.md the comparison across seeds (minigan.report.sweep)

Nothing is lost: runs save checkpoints as they train, so a task whose worker dies is started
again by the scheduler and resumes from the last one (exactly: resume is bit-identical on the
CPU); running the same command again skips finished runs and continues the others; a run that
raises is recorded as failed with its error while the others go on.

This is the only module that imports Dask (pip install 'minigan[sweep]'), and only inside the
functions that use it: reading specs and the report need no engine.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .atomic import atomic_open

# Settings a spec may give (TrainConfig's fields, by the train command's names); `seed` comes
# from `seeds`, `out` is the sweep's.
SETTINGS = ("dataset", "arch", "epochs", "steps", "batch_size", "lr", "lr_d", "lr_g", "beta1",
            "recipe", "limit", "image_size", "channels", "flip", "z_dim", "width", "loss",
            "label_smoothing", "gp_lambda", "r1_gamma", "r1_every", "d_dropout", "n_critic",
            "data_root", "device", "log_every", "checkpoint_every", "quality_every",
            "quality_samples", "fd_every", "log_internals")
LENGTH = ("epochs", "steps")            # may grow between two runs of the same sweep
SPEC_KEYS = ("title", "out", "seeds", "workers", "threads", "scheduler", "settings", "grid")
STATUS = "sweep_run.json"
# A killed worker costs a run at most this many steps, unless the spec sets checkpoint_every
# (the trainer alone saves at the end of every epoch).
CHECKPOINT_EVERY = 100


class SweepError(ValueError):
    """A sweep cannot start as asked (bad spec, unreachable scheduler, clashing folder)."""


@dataclass
class Run:
    """One (setting, seed) of a sweep: its folder name and the TrainConfig fields it trains."""

    name: str
    setting: dict            # the grid's values for this run (the seed excluded)
    seed: int
    config: dict

    @property
    def label(self) -> str:
        return setting_label(self.setting)


@dataclass
class SweepSpec:
    """What to run: `settings` for every run, the cross product of `grid`, times `seeds`."""

    out: str = "sweeps/sweep"
    settings: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    seeds: list = field(default_factory=lambda: [0])
    title: str = ""
    workers: int | None = None           # local cluster: worker processes (default: the cores)
    threads: int | None = None           # BLAS and numba threads per run (default: fit cores)
    scheduler: str | None = None         # address of an existing Dask scheduler

    def runs(self) -> list[Run]:
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            setting = dict(zip(keys, values, strict=True))
            for seed in self.seeds:
                config = {"checkpoint_every": CHECKPOINT_EVERY, **self.settings, **setting,
                          "seed": seed, "progress": False}
                out.append(Run(run_name(setting, seed), setting, seed, config))
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def setting_label(setting: dict) -> str:
    """'loss=bce lr=0.0002', or 'all runs' for a sweep over seeds alone."""
    return " ".join(f"{k}={v}" for k, v in setting.items()) or "all runs"


def run_name(setting: dict, seed: int) -> str:
    """A folder name that can be guessed from the setting: loss-bce_lr-0.0002_seed-3."""
    parts = [f"{k}-{v}" for k, v in setting.items()] + [f"seed-{seed}"]
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", "_".join(parts))


# ---- specs ------------------------------------------------------------------------------
def _setting_types() -> dict[str, type]:
    from .gan import TrainConfig

    types = {}
    for f in fields(TrainConfig):
        ann = str(f.type)
        types[f.name] = (bool if "bool" in ann else int if "int" in ann
                         else float if "float" in ann else str)
    return types


def _coerce(key: str, value, where: str):
    """A setting's value as TrainConfig wants it; a clear error for the wrong kind or choice."""
    from .cli import TRAIN_CHOICES

    kind = _setting_types()[key]
    try:
        if isinstance(value, str) and kind is not str:
            text = value.strip().lower()
            if kind is bool:
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = text in ("true", "1", "yes")
            else:
                value = kind(value)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError
    except ValueError:
        raise SweepError(f"{where}: {key} must be {kind.__name__}, got {value!r}") from None
    if key in TRAIN_CHOICES and value not in TRAIN_CHOICES[key]:
        raise SweepError(f"{where}: {key} must be one of {', '.join(TRAIN_CHOICES[key])}, "
                         f"got {value!r}")
    return value


def _key(key: str, where: str) -> str:
    name = key.strip().replace("-", "_")
    if name == "seed":
        raise SweepError(f"{where}: give seeds with `seeds` (e.g. seeds = \"0-4\" or "
                         "--seeds 0-4), not as a setting")
    if name not in SETTINGS:
        raise SweepError(f"{where}: unknown setting {key!r}; settings are: "
                         f"{', '.join(SETTINGS)}")
    return name


def parse_seeds(text) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' and lists of ints as they are."""
    if isinstance(text, int) and not isinstance(text, bool):
        return [text]
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    else:
        items = [s for s in str(text).replace(" ", "").split(",") if s]
    seeds = []
    for item in items:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise SweepError(f"seeds: {item!r} is neither a seed (3) nor a range (0-4)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise SweepError("seeds: no seed given (e.g. seeds = \"0-4\")")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds: {text!r} names a seed twice")
    return seeds


def parse_assignment(text: str, where: str) -> tuple[str, str]:
    """'loss=bce,hinge' -> ('loss', 'bce,hinge')."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise SweepError(f"{where}: expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def build_spec(doc: dict | None = None, grid: list[str] = (), settings: list[str] = (),
               seeds: str | None = None, out: str | None = None, workers: int | None = None,
               threads: int | None = None, scheduler: str | None = None) -> SweepSpec:
    """A checked SweepSpec from a spec file's contents and command-line additions (which win)."""
    doc = dict(doc or {})
    unknown = sorted(set(doc) - set(SPEC_KEYS))
    if unknown:
        raise SweepError(f"spec: unknown key(s) {unknown}; a spec has {', '.join(SPEC_KEYS)} "
                         "(training settings go under [settings], swept ones under [grid])")
    for table in ("settings", "grid"):
        if not isinstance(doc.get(table, {}), dict):
            raise SweepError(f"spec: {table} must be a table of KEY = VALUE")
    base = {}
    for k, v in doc.get("settings", {}).items():
        name = _key(k, "settings")
        base[name] = _coerce(name, v, "settings")
    for text in settings:
        k, v = parse_assignment(text, "--set")
        name = _key(k, "--set")
        base[name] = _coerce(name, v, "--set")
    raw_grid = dict(doc.get("grid", {}))
    for text in grid:
        k, v = parse_assignment(text, "--grid")
        raw_grid[k] = [s for s in v.split(",") if s.strip()]
    swept = {}
    for k, values in raw_grid.items():
        name = _key(k, "grid")
        if not isinstance(values, (list, tuple)):
            values = [values]
        if not values:
            raise SweepError(f"grid: {k} has no values, so the sweep would have no runs; give "
                             f"at least one (e.g. {k} = [a, b] or --grid {k}=a,b)")
        values = [_coerce(name, v, f"grid {k}") for v in values]
        if len(set(map(repr, values))) != len(values):
            raise SweepError(f"grid: {k} lists a value twice: {values}")
        if name in base:
            raise SweepError(f"{name} is both a fixed setting and swept in the grid")
        swept[name] = values
    if "epochs" in {**base, **swept} and "steps" in {**base, **swept}:
        raise SweepError("give epochs or steps, not both")
    spec = SweepSpec(
        out=str(out or doc.get("out") or "sweeps/sweep"), settings=base, grid=swept,
        seeds=parse_seeds(seeds if seeds is not None else doc.get("seeds", "0")),
        title=str(doc.get("title", "")),
        workers=_positive(workers if workers is not None else doc.get("workers"), "workers"),
        threads=_positive(threads if threads is not None else doc.get("threads"), "threads"),
        scheduler=scheduler or doc.get("scheduler"))
    if spec.scheduler and workers is not None:
        raise SweepError("--workers sets the size of a local cluster; with --scheduler the "
                         "cluster's own workers run the sweep")
    return spec


def _positive(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SweepError(f"{name} must be a positive whole number, got {value!r}")
    return value


def read_spec_file(path: str | os.PathLike) -> dict:
    """The contents of a .toml or .yaml/.yml spec file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"spec file {path} not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text) or {}
            if not isinstance(doc, dict):
                raise SweepError(f"{path}: a spec is a mapping of keys, got {type(doc).__name__}")
            return doc
    except SweepError:
        raise
    except Exception as e:  # noqa: BLE001 - the parser's own message says where
        raise SweepError(f"{path} is not a valid spec: {e}") from None
    raise SweepError(f"{path}: a spec file ends in .toml, .yaml or .yml")


# ---- threads ----------------------------------------------------------------------------
def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def plan_local(workers: int | None, threads: int | None) -> tuple[int, int]:
    """(worker processes, threads per run) that fit this machine's cores."""
    n = cores()
    workers = workers or max(1, n // (threads or 1))
    threads = threads or max(1, n // workers)
    if workers * threads > n:
        raise SweepError(f"{workers} workers x {threads} threads need {workers * threads} cores "
                         f"and this machine has {n}: runs would fight over them; use --workers "
                         f"{max(1, n // threads)} or fewer (or --scheduler for a larger cluster)")
    return workers, threads


def thread_env(threads: int) -> dict[str, str]:
    """What a worker process's environment needs before NumPy loads: OpenBLAS reads its thread
    count once, at start; numba's pool is sized from NUMBA_NUM_THREADS."""
    env = {k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                     "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    if "MINIGAN_THREADS" in os.environ:
        env["MINIGAN_THREADS"] = os.environ["MINIGAN_THREADS"]
    return env


def threads_by_host(client) -> dict[str, int]:
    """{host: threads per run} for a cluster we did not start: each host's cores over the
    task slots of all its workers, so that the runs on one machine fit its cores."""
    from distributed.comm import get_address_host

    cores_of = client.run(cores)
    slots: dict[str, int] = {}
    have: dict[str, int] = {}
    for address, n in client.nthreads().items():
        host = get_address_host(address)
        slots[host] = slots.get(host, 0) + n
        have[host] = cores_of.get(address, 1)
    return {h: max(1, have[h] // slots[h]) for h in slots}


def _limit_threads(threads: int | dict) -> int:
    """Set OpenBLAS's and numba's threads for this task (the workers of a cluster we did not
    start were not given the environment); a dict gives them per host."""
    import numba

    from .kernels import shifted

    if isinstance(threads, dict):
        from distributed import get_worker
        from distributed.comm import get_address_host

        threads = threads.get(get_address_host(get_worker().address), 1)
    shifted.fix_blas_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return threads


# ---- one run, as a task -----------------------------------------------------------------
def read_status(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / STATUS
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_status(run_dir: Path, **changes) -> dict:
    status = {**read_status(run_dir), **changes}
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(run_dir / STATUS, "w") as f:
        f.write(json.dumps(status, indent=1) + "\n")
    return status


def train_run(run_dir: str, config: dict, threads: int | dict = 1) -> dict:
    """Train (or continue) one run folder to the config's length with `threads` BLAS and numba
    threads (or {host: threads}); never raises for a failing run: the error is recorded in
    RUN/sweep_run.json and returned."""
    from .gan import TrainConfig, Trainer
    from .report import RunReport

    run = Path(run_dir)
    tries = read_status(run).get("tries", 0) + 1
    _write_status(run, state="running", host=socket.gethostname(), pid=os.getpid(),
                  tries=tries, error=None)
    try:
        used = _limit_threads(threads)
        length = {k: config.get(k) for k in LENGTH}
        if (run / "checkpoints" / "last.npz").is_file():
            trainer = Trainer.resume(run, epochs=length["epochs"], steps=length["steps"],
                                     callbacks=[RunReport()], progress=False)
        else:
            trainer = Trainer(TrainConfig(**config, out=str(run)), callbacks=[RunReport()],
                              overwrite=True)
        _write_status(run, threads=used, total_steps=trainer.total_steps,
                      started_at_step=trainer.step)
        summary = trainer.fit()
    except Exception as e:  # noqa: BLE001 - a failing run is a result of the sweep
        return _write_status(run, state="failed", error=f"{type(e).__name__}: {e}",
                             traceback=traceback.format_exc(limit=6))
    return _write_status(run, state="finished", step=summary["step"],
                         seconds=summary["seconds"], length=length)


def is_finished(run: Run, run_dir: Path) -> bool:
    status = read_status(run_dir)
    return status.get("state") == "finished" and status.get("length") == {
        k: run.config.get(k) for k in LENGTH}


# ---- the sweep --------------------------------------------------------------------------
def check_folder(spec: SweepSpec, root: Path) -> None:
    """Refuse to continue run folders that were trained with other settings than the spec's
    (the length may grow: those runs continue)."""
    from .cli import RUN_FLAGS
    from .gan import TrainConfig

    for run in spec.runs():
        cfg = root / "runs" / run.name / "config.json"
        if not cfg.is_file():
            continue
        # a setting the folder's minigan did not have yet reads as its default
        saved = asdict(TrainConfig.from_dict(json.loads(cfg.read_text())["config"]))
        want = asdict(TrainConfig(**run.config))
        differ = [k for k in RUN_FLAGS if saved.get(k) != want.get(k)]
        if differ:
            got = ", ".join(f"{k}: {saved.get(k)!r} there, {want.get(k)!r} now" for k in differ)
            raise SweepError(f"{root / 'runs' / run.name} was trained with other settings "
                             f"({got}); choose another --out for a different sweep")


CONNECT_TIMEOUT = 10.0     # seconds to reach a scheduler before giving up


def connect(spec: SweepSpec, timeout: float | None = None):
    """(client, cluster or None, threads per run): a LocalCluster of worker processes with
    their thread counts set, or a client of the scheduler at `spec.scheduler`."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError("sweeps run on Dask, which is not installed: "
                         "pip install 'minigan[sweep]'") from None
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    if spec.scheduler:
        try:
            client = Client(spec.scheduler, timeout=timeout)
        except (OSError, TimeoutError) as e:
            raise SweepError(f"could not reach a Dask scheduler at {spec.scheduler} within "
                             f"{timeout:.0f} s ({type(e).__name__}: {e}); start one (dask "
                             "scheduler, then dask worker ADDRESS on each machine), or drop "
                             "--scheduler to run on a local cluster") from None
        return client, None, spec.threads
    workers, threads = plan_local(spec.workers, spec.threads)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0", env=thread_env(threads))
    return Client(cluster), cluster, threads


def _say(text: str) -> None:
    print(text, flush=True)                   # a log file sees each line as it comes


def run_sweep(spec: SweepSpec, client=None, interval: float = 30.0, retry_failed: bool = False,
              echo=_say) -> list[dict]:
    """Train every unfinished run of the spec as a task, print progress, write the report;
    returns the gathered results. `client`: an existing distributed.Client to use; failed runs
    are trained again only with `retry_failed`."""
    root = Path(spec.out)
    runs = spec.runs()
    if not runs:
        raise SweepError("the sweep has no runs")
    check_folder(spec, root)
    todo = [r for r in runs if not is_finished(r, root / "runs" / r.name)]
    failed = [r for r in todo if read_status(root / "runs" / r.name).get("state") == "failed"]
    if not retry_failed:
        todo = [r for r in todo if r not in failed]
    own = client is None and bool(todo)
    cluster, threads = None, spec.threads
    if own:                                   # before anything is written: may fail
        client, cluster, threads = connect(spec)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with atomic_open(root / "sweep.json", "w") as f:
            f.write(json.dumps({"spec": spec.to_dict(),
                                "runs": [{"name": r.name, "setting": r.setting, "seed": r.seed,
                                          "config": r.config} for r in runs]}, indent=1) + "\n")
        before = len(runs) - len(todo) - (0 if retry_failed else len(failed))
        note = ""
        if failed:
            note = f", {len(failed)} failed before " + (
                "(trained again)" if retry_failed else "(kept; --retry-failed trains them again)")
        echo(f"sweep {root}: {len(runs)} runs ({before} finished before), {len(todo)} to "
             f"train{note}")
        if todo:
            if threads is None:
                threads = threads_by_host(client)
            where = (f"{len(cluster.workers)} local worker processes x {threads} thread(s)"
                     if cluster is not None else f"the cluster at {client.scheduler.address}")
            echo(f"training on {where}; dashboard: {client.dashboard_link}")
            _train_all(client, root, todo, threads, interval, echo)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    results = collect(root)
    from .report.sweep import write_sweep_report

    html_path, md_path = write_sweep_report(root, results, spec.title)
    done = sum(r["state"] == "finished" for r in results)
    echo(f"{done} of {len(results)} runs finished"
         + "".join(f"\n  failed: {r['name']}: {r['error']}" for r in results
                   if r["state"] == "failed")
         + f"\nreport: {html_path} and {md_path}")
    return results


def _train_all(client, root: Path, todo: list[Run], threads, interval: float, echo) -> None:
    """Hand the runs to the cluster as tasks, no more at a time than it has task slots (the
    scheduler would otherwise queue a run behind another on a busy worker while one idles),
    and wait, printing a line every `interval` s and whenever a run ends; a task lost for good
    (its workers kept dying) is recorded as failed."""
    token = f"{time.time_ns():x}"
    queue, running = list(todo), {}
    last = time.monotonic()
    while queue or running:
        slots = max(1, sum(client.nthreads().values()))
        while queue and len(running) < slots:
            r = queue.pop(0)
            running[client.submit(train_run, str(root / "runs" / r.name), r.config, threads,
                                  key=f"minigan-{r.name}-{token}", pure=False)] = r
        time.sleep(0.2)
        done = [f for f in running if f.done()]
        for fut in done:
            run = running.pop(fut)
            if fut.status != "finished":      # lost: e.g. KilledWorker after repeated deaths
                error = fut.exception()
                _write_status(root / "runs" / run.name, state="failed",
                              error=f"{type(error).__name__}: {error}")
            echo(f"  {run.name}: {read_status(root / 'runs' / run.name).get('state')}")
        if done or time.monotonic() - last >= interval:
            echo(progress_line(root, todo))
            last = time.monotonic()


def progress_line(root: Path, runs: list[Run]) -> str:
    """'3 finished, 1 failed, 2 running (loss-bce_seed-1 120/400 ...), 4 waiting'."""
    from .gan.callbacks import read_jsonl

    counts = {"finished": 0, "failed": 0, "running": 0, "waiting": 0}
    running = []
    for r in runs:
        status = read_status(root / "runs" / r.name)
        state = status.get("state", "waiting")
        counts[state] = counts.get(state, 0) + 1
        if state == "running":
            records = read_jsonl(root / "runs" / r.name / "metrics.jsonl")
            step = records[-1]["step"] if records else status.get("started_at_step", 0)
            running.append(f"{r.name} {step}/{status.get('total_steps', '?')}")
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"[{time.strftime('%H:%M:%S')}] {text}" + (f": {'; '.join(running)}"
                                                      if running else "")


# ---- results ----------------------------------------------------------------------------
def collect(root: str | os.PathLike) -> list[dict]:
    """One dict per run of the sweep in `root`: its setting, seed, state and what it measured
    (final and best Frechet distance, modes, collapse warnings, training time)."""
    from .gan.callbacks import read_jsonl

    root = Path(root)
    doc = json.loads((root / "sweep.json").read_text())
    out = []
    for r in doc["runs"]:
        run_dir = root / "runs" / r["name"]
        status = read_status(run_dir)
        records = read_jsonl(run_dir / "metrics.jsonl")
        fd_key = "fd_cls" if any("fd_cls" in m for m in records) else "fd"
        fds = [m[fd_key] for m in records if m.get(fd_key) is not None]
        quality = [m for m in records if "modes" in m]
        grids = sorted((run_dir / "samples").glob("*.png")) if (run_dir / "samples").is_dir() \
            else []
        last_grid = max(grids, key=lambda p: p.stat().st_mtime) if grids else None
        out.append({
            "name": r["name"], "setting": setting_label(r["setting"]), "seed": r["seed"],
            "state": status.get("state", "waiting"), "error": status.get("error"),
            "tries": status.get("tries", 0),
            "step": records[-1]["step"] if records else 0,
            "total_steps": status.get("total_steps"),
            "fd_metric": "classifier FD" if fd_key == "fd_cls" else "pixel FD",
            "final_fd": fds[-1] if fds else None, "best_fd": min(fds) if fds else None,
            "modes": quality[-1]["modes"] if quality else None,
            "num_classes": quality[-1].get("num_classes") if quality else None,
            "collapse": sum(bool(m.get("collapse")) for m in records),
            "minutes": records[-1]["seconds"] / 60 if records else None,
            "page": f"runs/{r['name']}/index.html" if (run_dir / "index.html").is_file()
            else None,
            "last_grid": str(last_grid.relative_to(root)) if last_grid else None})
    return out


__all__ = ["Run", "SweepError", "SweepSpec", "build_spec", "collect", "connect", "cores",
           "parse_seeds", "plan_local", "read_spec_file", "run_sweep", "thread_env",
           "train_run"]
