"""Sweeps on a local Dask cluster of 2 worker processes on 127.0.0.1: all runs finish; a worker
killed mid-run costs nothing (the run resumes from its checkpoint and ends bit for bit where an
unbroken one does); running again trains nothing; a failing run is recorded and the others go
on; bad specs fail before anything starts."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from minigan import sweep  # noqa: E402
from minigan.cli import main  # noqa: E402
from minigan.gan import load_checkpoint  # noqa: E402
from minigan.testing import chromium_page  # noqa: E402

# 40 steps of a tiny GAN on 8x8 ellipses, one epoch (its pictures and pixel FD at the end),
# a checkpoint every 8 steps
TINY = ["dataset=ellipses", "limit=320", "image_size=8", "width=4", "z_dim=8", "batch_size=8",
        "steps=40", "checkpoint_every=8"]
GRID = ["loss=bce,hinge"]
SEEDS = "0-1"


@pytest.fixture(scope="module")
def client():
    """2 worker processes of one thread each, with the environment a sweep gives them."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       env=sweep.thread_env(1))
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _spec(out: Path) -> sweep.SweepSpec:
    return sweep.build_spec(grid=GRID, settings=TINY, seeds=SEEDS, out=str(out))


def _weights(run: Path) -> dict:
    state = load_checkpoint(run / "checkpoints" / "last.npz")
    return {f"{net}.{k}": np.asarray(v) for net in ("G", "D") for k, v in state[net].items()}


def _command(out: Path, client) -> list[str]:
    """The sweep's command line, on the cluster's scheduler."""
    args = ["sweep", "--out", str(out), "--seeds", SEEDS, "--scheduler",
            client.scheduler.address, "--every", "5"]
    return args + [a for g in GRID for a in ("--grid", g)] + [a for s in TINY
                                                              for a in ("--set", s)]


@pytest.fixture(scope="module")
def finished(client, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "a"
    assert main(_command(out, client)) == 0
    return out


def test_a_sweep_of_four_runs_finishes_with_all_four_results(finished):
    results = sweep.collect(finished)
    assert [(r["setting"], r["seed"]) for r in results] == [
        ("loss=bce", 0), ("loss=bce", 1), ("loss=hinge", 0), ("loss=hinge", 1)]
    for r in results:
        assert r["state"] == "finished", r
        assert r["step"] == 40 and r["final_fd"] is not None and r["page"], r
        status = sweep.read_status(finished / "runs" / r["name"])
        assert status["threads"] == 1, "2 workers on this machine's cores: one thread each"
    for name in ("report.html", "report.md", "spread.png"):
        assert (finished / name).is_file(), name
    page = (finished / "report.html").read_text()
    for r in results:
        assert f'href="runs/{r["name"]}/index.html"' in page
    # different seeds train differently; different losses too
    w = [_weights(finished / "runs" / r["name"]) for r in results]
    assert not np.array_equal(w[0]["G.0.weight"], w[1]["G.0.weight"])


def test_running_it_again_trains_nothing(finished, client, capsys):
    runs = sorted((finished / "runs").iterdir())
    before = {p: ((p / "metrics.jsonl").read_text(), (p / "checkpoints" / "last.npz")
                  .stat().st_mtime_ns, (p / "config.json").read_text()) for p in runs}
    assert main(_command(finished, client)) == 0
    assert "4 runs (4 finished before), 0 to train" in capsys.readouterr().out
    for p in runs:
        after = ((p / "metrics.jsonl").read_text(),
                 (p / "checkpoints" / "last.npz").stat().st_mtime_ns,
                 (p / "config.json").read_text())
        assert after == before[p], f"{p.name} was touched by the second run of the sweep"


def test_killing_a_worker_mid_run_loses_nothing(finished, client, tmp_path):
    """SIGKILL the worker process of a run once it has a checkpoint but before it ends: the
    scheduler starts the task again, which resumes from the checkpoint; its final weights equal
    those of the same run in the unbroken sweep, bit for bit."""
    out = tmp_path / "b"
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "runs", sweep.run_sweep(_spec(out), client=client, echo=lambda *a: None)))
    worker.start()
    victim, killed = out / "runs" / "loss-bce_seed-0", None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and worker.is_alive():
        status = sweep.read_status(victim)
        ckpt = victim / "checkpoints" / "last.npz"
        if status.get("state") == "running" and ckpt.is_file():
            step = load_checkpoint(ckpt)["step"]
            # early enough that the run is still going when the signal lands: a kill after it
            # ended would hit the worker's next run instead
            if 0 < step <= 16 and sweep.read_status(victim).get("state") == "running":
                os.kill(status["pid"], signal.SIGKILL)
                killed = step
        time.sleep(0.01)
    worker.join(180)
    assert killed is not None, "the run ended before it could be killed; make it longer"
    assert not worker.is_alive()
    assert [r["state"] for r in result["runs"]] == ["finished"] * 4, result["runs"]
    status = sweep.read_status(victim)
    assert status["tries"] == 2 and 0 < status["started_at_step"] <= killed, status
    sessions = json.loads((victim / "config.json").read_text())["sessions"]
    assert [s["started_at_step"] for s in sessions] == [0, status["started_at_step"]]
    got, want = _weights(victim), _weights(finished / "runs" / victim.name)
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), f"{k} differs after the worker was killed"


def test_a_failing_run_is_recorded_and_the_others_go_on(client, tmp_path):
    # label smoothing belongs to the bce loss: the hinge run cannot start
    spec = sweep.build_spec(grid=["loss=hinge,bce"], settings=[*TINY[:6], "steps=4",
                                                               "label_smoothing=0.1"],
                            seeds="0", out=str(tmp_path / "c"))
    results = {r["name"]: r for r in sweep.run_sweep(spec, client=client, echo=lambda *a: None)}
    assert results["loss-bce_seed-0"]["state"] == "finished"
    failed = results["loss-hinge_seed-0"]
    assert failed["state"] == "failed"
    assert "label_smoothing applies to the bce loss" in failed["error"]
    assert "label_smoothing applies to the bce loss" in (tmp_path / "c" / "report.html") \
        .read_text()


@pytest.mark.parametrize("args, message", [
    (["--grid", "los=bce,hinge"], "unknown setting 'los'"),
    (["--set", "widht=4"], "unknown setting 'widht'"),
    (["--grid", "loss="], "loss has no values"),
    (["--grid", "loss=bce,wgan"], "loss must be one of bce, hinge, wgan-gp, got 'wgan'"),
    (["--set", "lr=fast"], "lr must be float, got 'fast'"),
    (["--seeds", "3-1"], "neither a seed"),
    (["--set", "seed=3"], "give seeds with `seeds`"),
    (["--scheduler", "tcp://127.0.0.1:9"], "could not reach a Dask scheduler at "
                                           "tcp://127.0.0.1:9"),
])
def test_a_bad_spec_fails_clearly_before_any_run_starts(args, message, tmp_path, capsys,
                                                        monkeypatch):
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", 1.0)
    out = tmp_path / "bad"
    assert main(["sweep", "--out", str(out), *[a for s in TINY for a in ("--set", s)],
                 *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists(), "nothing may be written before the spec is known to be good"


def test_an_empty_grid_table_in_a_spec_file(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('seeds = "0-1"\n[settings]\ndataset = "ellipses"\n[grid]\nloss = []\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "x")]) == 2
    assert "loss has no values" in capsys.readouterr().err
    spec.write_text('seeds = "0-1"\nepochs = 3\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "x")]) == 2
    assert "unknown key(s) ['epochs']" in capsys.readouterr().err


def test_a_run_folder_trained_otherwise_is_refused_and_an_older_one_is_not(tmp_path):
    """check_folder compares every computation setting of a run folder with the spec's: one
    that differs is refused with both values; a setting the folder's config.json lacks (written
    before the setting existed, e.g. ema_rampup) reads as its default, so such a folder goes on."""
    from dataclasses import asdict

    from minigan.gan import TrainConfig

    spec = sweep.SweepSpec(settings={"dataset": "ellipses", "limit": 320}, grid={}, seeds=[0])
    (run,) = spec.runs()
    folder = tmp_path / "runs" / run.name
    folder.mkdir(parents=True)
    config = asdict(TrainConfig(**run.config))
    del config["ema_rampup"]                                 # as an older minigan wrote it
    (folder / "config.json").write_text(json.dumps({"config": config}))
    sweep.check_folder(spec, tmp_path)                       # no error: it goes on
    config["lr"] = 1e-3
    (folder / "config.json").write_text(json.dumps({"config": config}))
    with pytest.raises(sweep.SweepError, match=r"lr: 0.001 there, None now"):
        sweep.check_folder(spec, tmp_path)


def test_the_summary_over_seeds():
    from minigan.report.sweep import summarize

    fds = {"a": [70.0, 125.0, 90.0], "b": [80.0, 84.0]}
    rows = [{"setting": s, "state": "finished", "final_fd": v, "best_fd": v - 1, "modes": 9,
             "collapse": int(v > 100), "minutes": 2.0} for s, vs in fds.items() for v in vs]
    rows.append({**rows[0], "state": "failed", "final_fd": None})
    got = {s["setting"]: s for s in summarize(rows)}
    for s, vs in fds.items():
        f = got[s]["final_fd"]
        assert (f["n"], f["median"], f["min"], f["max"]) == (len(vs), np.median(vs), min(vs),
                                                              max(vs))
        assert f["std"] == pytest.approx(np.std(vs, ddof=1))
    assert (got["a"]["runs"], got["a"]["finished"], got["a"]["failed"]) == (4, 3, 1)
    assert (got["a"]["collapsed"], got["b"]["collapsed"]) == (1, 0)


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no Chromium at /usr/bin/chromium")
def test_the_report_in_a_headless_browser(finished):
    """Every image renders, every run's page is linked, and a click on a column sorts the
    table by it."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with chromium_page((finished / "report.html").as_uri(), CHROMIUM) as (page, errors):
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
        assert len(images) == 3, images       # the spread, the best and the worst grid
        assert all(width > 0 for _, width in images), images
        col = [t.strip() for t in page.locator("table.sortable th").all_inner_texts()]
        fd = col.index("final FD")

        def column():
            return [float(t) for t in page.locator(
                f"table.sortable tbody td:nth-child({fd + 1})").all_inner_texts()]

        page.locator("table.sortable th").nth(fd).click()
        assert column() == sorted(column())
        page.locator("table.sortable th").nth(fd).click()
        assert column() == sorted(column(), reverse=True)
        links = page.eval_on_selector_all("table.sortable a", "els => els.map(e => "
                                          "e.getAttribute('href'))")
        assert sorted(links) == sorted(f"runs/{r['name']}/index.html"
                                       for r in sweep.collect(finished))
    assert not errors, errors
