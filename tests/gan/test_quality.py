"""Classifier metrics and collapse warnings during training, GAN internals, and `eval`.

A tiny classifier (40 steps on two synthetic shape classes) stands in for the MNIST one: the
runs are named 'mnist' but train on those shapes, so nothing real is trained or downloaded.
"""

import json

import numpy as np
import pytest

from minigan import metrics as M
from minigan import nn, viz
from minigan.cli import main
from minigan.data import ellipses
from minigan.gan import TrainConfig, Trainer
from minigan.gan import trainer as trainer_module

TINY = M.Recipe(channels=(4, 8, 8), hidden=32, epochs=2, batch_size=32, lr=1e-2,
                final_lr=3e-3, max_steps=40)


@pytest.fixture(scope="module")
def shapes():
    """Filled ellipses and ellipse outlines (28x28), and a classifier trained on them."""
    n = 400
    x = np.concatenate([ellipses(n, seed=0), ellipses(n, filled=False, seed=1)])
    y = np.repeat(np.arange(2, dtype=np.uint8), n)
    order = np.random.default_rng(0).permutation(2 * n)
    x, y = x[order], y[order]
    data = M.LabelledData("shapes", ["filled", "outline"], x[:600], y[:600], x[600:], y[600:])
    model, _ = M.train_classifier(data.x_train, data.y_train, data.classes, TINY, log=None)
    return data, model


@pytest.fixture
def classifier(shapes, monkeypatch):
    """metrics' classifier and data for 'mnist' replaced by the tiny one and the shapes."""
    data, model = shapes
    monkeypatch.setattr(M, "task_data", lambda dataset="mnist", root=None: data)
    monkeypatch.setattr(M, "classifier", lambda dataset="mnist", root=None, recipe=None,
                        device=None, train=True, log=print: model)
    monkeypatch.setattr(M, "_REFERENCES", {})
    return data


@pytest.fixture
def curves(monkeypatch):
    """Record plot_curves calls instead of drawing (matplotlib is slow on a busy CPU)."""
    calls = []

    def fake(records, path, **kw):
        calls.append(kw)
        open(path, "wb").close()

    monkeypatch.setattr(viz, "plot_curves", fake)
    return calls


def _config(tmp_path, name="run", **changes) -> TrainConfig:
    """96 shapes of 28x28 in batches of 16 (6 steps an epoch), 2 epochs, width 2."""
    options = {"dataset": "mnist", "arch": "dcgan", "width": 2, "z_dim": 8, "batch_size": 16,
               "steps": 12, "out": str(tmp_path / name), "progress": False, "log_every": 3,
               "fd_every": 0, "quality_samples": 200}
    options.update(changes)
    return TrainConfig(**options)


def _records(run) -> list[dict]:
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


def test_quality_metrics_are_logged_each_epoch(tmp_path, classifier, curves):
    trainer = Trainer(_config(tmp_path, fd_every=1), images=classifier.x_train[:96])
    trainer.fit()
    epochs = [r for r in _records(tmp_path / "run") if "fd_cls" in r]
    assert [r["step"] for r in epochs] == [6, 12]
    for r in epochs:
        assert {"fd", "modes", "num_classes", "kl", "confidence", "diversity", "nn_diversity",
                "class_entropy_ratio", "class_hist"} <= set(r)
        assert r["num_classes"] == 2 and 0 <= r["modes"] <= 2 and r["fd_cls"] >= 0
        assert sum(r["class_hist"]) == pytest.approx(1.0, abs=1e-3)
        assert "marks2" not in r and "closed" not in r          # drawings' counts: Quick, Draw!
    # the same fixed 200 samples each time: evaluating again gives the same figures
    again = trainer.quality()
    assert again["fd"] == pytest.approx(epochs[-1]["fd_cls"], abs=1e-3)
    assert again["n"] == 200
    # a 12-step G is far from healthy; whatever it shows, marks follow the records
    assert curves[-1]["marks"] == [r["step"] for r in epochs if "collapse" in r]

    off = Trainer(_config(tmp_path, "off", quality_every=0), images=classifier.x_train[:96])
    off.fit()
    assert not any("fd_cls" in r for r in _records(tmp_path / "off"))


def test_quickdraw_runs_log_the_share_of_samples_drawn_whole(tmp_path, classifier, curves):
    """Per epoch, how many of the fixed samples have a closed outline, and one closed around two
    marks or more: figures the run page shows beside the classifier's."""
    from minigan.report import refresh

    trainer = Trainer(_config(tmp_path, dataset="quickdraw", steps=6),
                      images=classifier.x_train[:96])
    trainer.fit()
    (r,) = [r for r in _records(tmp_path / "run") if "fd_cls" in r]
    assert 0.0 <= r["marks2"] <= r["closed"] <= 1.0
    z = np.random.default_rng(trainer_module._seed_for(0, 5)).standard_normal(
        (200, 8), dtype=np.float32)                          # the fixed noise behind quality()
    marks = M.enclosed_marks(M.as_uint8_images(trainer.sample(z)))
    assert r["closed"] == pytest.approx(np.mean(marks >= 0), abs=1e-4)
    assert r["marks2"] == pytest.approx(np.mean(marks >= 2), abs=1e-4)
    bold = M.enclosed_marks(M.as_uint8_images(trainer.sample(z)), threshold=180)
    assert r["marks2_bold"] == pytest.approx(np.mean(bold >= 2), abs=1e-4)
    assert r["marks3"] == pytest.approx(np.mean(marks >= 3), abs=1e-4)
    assert r["marks3_bold"] == pytest.approx(np.mean(bold >= 3), abs=1e-4)
    refresh(tmp_path / "run")
    page = (tmp_path / "run" / "index.html").read_text()
    assert "closed, 2+ marks inside" in page and "closed, 2+ marks, bold strokes" in page
    assert "closed, 3+ marks, bold strokes" in page


def test_datasets_without_a_classifier_keep_the_pixel_distance(tmp_path, curves):
    config = _config(tmp_path, dataset="ellipses", limit=48, image_size=8, batch_size=8,
                     fd_every=1)
    Trainer(config).fit()
    epochs = [r for r in _records(tmp_path / "run") if "fd" in r]
    assert len(epochs) == 2 and not any("fd_cls" in r or "modes" in r for r in epochs)


def collapsed_generator(image: np.ndarray, z_dim: int) -> nn.Module:
    """Linear -> Tanh with zero weights: the same image whatever the noise."""
    g = nn.Sequential(nn.Linear(z_dim, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))
    g[0].weight.data[...] = 0
    target = np.clip(image.reshape(-1) / 127.5 - 1, -0.999, 0.999)
    g[0].bias.data[...] = np.arctanh(target).astype(np.float32)
    return g


@pytest.fixture
def collapsed_g(monkeypatch, classifier):
    """Trainers built from here on get `collapsed_generator` (one test image) as G."""
    real_build = trainer_module.build

    def build_collapsed(arch, image_shape, z_dim, *args, **kw):
        _, D, recipe = real_build(arch, image_shape, z_dim, *args, **kw)
        return collapsed_generator(classifier.x_test[0], z_dim), D, recipe

    monkeypatch.setattr(trainer_module, "build", build_collapsed)


def test_collapse_warning_fires_on_a_collapsed_generator(tmp_path, classifier, curves,
                                                          collapsed_g, capsys):
    trainer = Trainer(_config(tmp_path, lr_g=0.0), images=classifier.x_train[:96])
    trainer.fit()
    epochs = [r for r in _records(tmp_path / "run") if "fd_cls" in r]
    assert epochs[0]["diversity"] < 0.05                   # collapsed from the start ...
    assert "collapse" not in epochs[0]                      # ... but epoch 1 is not judged
    assert epochs[1]["collapse"].startswith("possible mode collapse")
    assert epochs[1]["nn_diversity"] < 0.05 and epochs[1]["modes"] == 1
    assert curves[-1]["marks"] == [12]                      # the red line in curves.png
    assert "possible mode collapse" in capsys.readouterr().err   # shown without a bar too
    assert trainer._collapse == epochs[1]["collapse"]       # and kept in the bar's postfix

    resumed = Trainer.resume(tmp_path / "run", steps=18, images=classifier.x_train[:96])
    resumed.fit()                                           # marks survive a resume
    assert curves[-1]["marks"] == [12, 18]


@pytest.mark.parametrize("ema, rampup, says", [(0.9, 0.0, True), (0.5, 0.0, False),
                                               (0.9, 0.25, False)])
def test_collapse_warning_says_when_a_young_moving_average_drew_it(tmp_path, classifier, curves,
                                                                     collapsed_g, ema, rampup,
                                                                     says):
    """With --ema the samples are the average's: after 12 updates at 0.9 the first step's
    weights still weigh 0.9 ** 11 = 31 %, and the warning says so; at 0.5 (0.05 %) it does not,
    nor at 0.9 with --ema-rampup 0.25, whose decays 0.5 ** (1 / (0.25 * t)), t = 2..12, leave the
    first weights 0.5 ** (4 * (1/2 + ... + 1/12)) = 0.3 %."""
    Trainer(_config(tmp_path, lr_g=0.0, ema=ema, ema_rampup=rampup),
            images=classifier.x_train[:96]).fit()
    warning = [r for r in _records(tmp_path / "run") if "fd_cls" in r][1]["collapse"]
    assert warning.startswith("possible mode collapse")      # G is collapsed: still warned
    assert ("moving average" in warning) == says
    if says:
        assert f"after 12 updates still holds {0.9 ** 11:.0%} of the first step" in warning


@pytest.mark.parametrize("ema, warned", [(0.9, False), (0.5, True)])
def test_a_young_moving_average_that_looks_collapsed_is_no_collapse_of_g(tmp_path, classifier,
                                                                        curves, capsys, ema,
                                                                        warned):
    """Samples of the average all alike while G's own are the real drawings: at 0.9 after 12
    updates (31 % of the first step's weights) the average is young and G's own weights decide,
    so no warning, and the epoch's line says why; at 0.5 (0.05 %) the average is no longer
    young, and it warns."""
    real = classifier.x_test.astype(np.float32)[:, None] / 127.5 - 1      # (200, 1, 28, 28)
    trainer = Trainer(_config(tmp_path, ema=ema, progress=True), images=classifier.x_train[:96])
    trainer.sample = lambda z, own=False: (real[np.arange(len(z)) % len(real)] if own
                                           else np.repeat(real[:1], len(z), axis=0))
    trainer.fit()
    epochs = [r for r in _records(tmp_path / "run") if "fd_cls" in r]
    assert epochs[1]["diversity"] < 0.05                  # the samples, the average's, collapsed
    assert ("collapse" in epochs[1]) == warned
    err = capsys.readouterr().err
    assert ("possible mode collapse" in err) == warned
    if not warned:
        assert (f"after 12 updates still holds {0.9 ** 11:.0%} of the first step's weights; "
                "G's own weights: diversity") in err and "no sign of collapse" in err


def test_collapse_warning_stays_quiet_on_real_data(tmp_path, classifier, curves, capsys):
    real = classifier.x_test.astype(np.float32)[:, None] / 127.5 - 1      # (200, 1, 28, 28)
    trainer = Trainer(_config(tmp_path, steps=18), images=classifier.x_train[:96])
    trainer.sample = lambda z, own=False: real[np.arange(len(z)) % len(real)]   # a perfect G
    trainer.fit()
    epochs = [r for r in _records(tmp_path / "run") if "fd_cls" in r]
    assert len(epochs) == 3 and not any("collapse" in r for r in epochs)
    assert all(r["modes"] == 2 and r["diversity"] > 0.85 for r in epochs)
    assert curves[-1]["marks"] == [] and "collapse" not in capsys.readouterr().err


def test_log_internals(tmp_path, curves):
    config = _config(tmp_path, dataset="ellipses", limit=48, image_size=8, batch_size=8,
                     steps=4, log_every=2, log_internals=True)
    trainer = Trainer(config)
    trainer.fit()
    records = _records(tmp_path / "run")
    assert [r["step"] for r in records] == [2, 4]
    for net_name, net in (("G", trainer.G), ("D", trainer.D)):
        names = [name for name, _ in net.named_parameters()]
        for r in records:
            for name in names:
                assert r[f"grad_norm/{net_name}.{name}"] > 0
                assert r[f"weight_norm/{net_name}.{name}"] >= 0
            assert r[f"grad_norm/{net_name}"] == pytest.approx(np.sqrt(sum(
                r[f"grad_norm/{net_name}.{n}"] ** 2 for n in names)))
        for name, p in net.named_parameters():   # the last line holds the final weights
            assert records[-1][f"weight_norm/{net_name}.{name}"] == pytest.approx(
                np.linalg.norm(p.numpy().astype(np.float64)), rel=1e-6)
    assert {"d_x", "d_g_z"} <= set(records[0])

    Trainer(_config(tmp_path, "plain", dataset="ellipses", limit=48, image_size=8,
                    batch_size=8, steps=2, log_every=2)).fit()
    assert not any(k.startswith(("grad_norm", "weight_norm"))
                   for r in _records(tmp_path / "plain") for k in r)


@pytest.fixture
def tiny_run(tmp_path, classifier, curves):
    Trainer(_config(tmp_path, steps=6), images=classifier.x_train[:96]).fit()
    return tmp_path / "run"


def test_eval_prints_metrics_beside_the_real_floor(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "-n", "150", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "150 samples (seed 1) from step 6" in out and "150 real test images" in out
    for label in ("Frechet distance", "modes covered", "KL", "mean confidence", "diversity",
                  "class histogram"):
        assert label in out, label
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "class histogram" in line) + 1
    assert [line.split()[0] for line in lines[start:start + 2]] == ["filled", "outline"]
    assert "mode collapse" in lines[start + 2]
    assert " 2/2" in out                                    # the real floor covers both
    assert main(["eval", str(tiny_run), "-n", "150", "--seed", "1"]) == 0
    assert capsys.readouterr().out == out                   # seeded: the same figures
    record = json.loads((tiny_run / "eval.json").read_text())   # and on the run's page
    assert record["samples"] == 150 and record["step"] == 6
    assert record["modes covered: real"] == "2/2"
    fd = next(line for line in out.splitlines() if "Frechet distance" in line).split()[-2]
    assert record["Frechet distance (classifier): samples"] == fd
    page = (tiny_run / "index.html").read_text()
    assert "eval.json" in page and record["Frechet distance (classifier): samples"] in page


def _single_evals(run, seeds, label, capsys) -> dict:
    """What `eval -n 150 --seed s` alone records for `label`'s samples, per seed s; the noise
    must move it, or a spread over seeds would test nothing."""
    single = {}
    for seed in seeds:
        assert main(["eval", str(run), "-n", "150", "--seed", str(seed)]) == 0
        single[seed] = json.loads((run / "eval.json").read_text())[f"{label}: samples"]
        capsys.readouterr()
    assert len(set(single.values())) > 1
    return single


def test_eval_repeats_scores_each_noise_seed_as_a_single_eval_would(tiny_run, capsys):
    """--repeats 3 from seed 1: the FD of seeds 1, 2, 3, each what `eval --seed s` prints alone,
    with their mean and range; the table itself stays seed 1's."""
    single = _single_evals(tiny_run, (1, 2, 3), "Frechet distance (classifier)", capsys)
    assert main(["eval", str(tiny_run), "-n", "150", "--seed", "1", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    record = json.loads((tiny_run / "eval.json").read_text())
    assert record["Frechet distance (classifier): samples"] == single[1]
    assert record["Frechet distance (classifier): noise seeds"] == "1-3"
    per_seed = record["Frechet distance (classifier): per seed"]
    assert per_seed == ", ".join(single[s] for s in (1, 2, 3))
    fds = [float(single[s]) for s in (1, 2, 3)]
    mean = float(record["Frechet distance (classifier): mean over seeds"])
    assert abs(mean - sum(fds) / 3) <= 0.01                 # of unrounded values, so 2 dp
    assert per_seed in (tiny_run / "index.html").read_text()     # on the run's page too
    line = next(line for line in out.splitlines() if "over noise seeds 1-3" in line)
    assert f"range {min(single.values(), key=float)}-{max(single.values(), key=float)}" in line
    assert main(["eval", str(tiny_run), "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_eval_repeats_give_the_spread_of_the_share_drawn_whole(tmp_path, classifier, curves,
                                                              capsys):
    """For drawings --repeats also gives the share drawn whole over the noise seeds: each
    seed's share is what `eval --seed s` alone reports, the mean theirs."""
    Trainer(_config(tmp_path, dataset="quickdraw", steps=6), images=classifier.x_train[:96]).fit()
    run = tmp_path / "run"
    single = _single_evals(run, (4, 5, 6), "closed, 2+ marks inside", capsys)
    bold, bold3 = {}, {}                # the bold strokes' shares, each seed's eval alone
    for seed in (4, 5, 6):
        assert main(["eval", str(run), "-n", "150", "--seed", str(seed)]) == 0
        alone = json.loads((run / "eval.json").read_text())
        bold[seed] = alone["closed, 2+ marks, bold strokes: samples"]
        bold3[seed] = alone["closed, 3+ marks, bold strokes: samples"]
        capsys.readouterr()
    assert main(["eval", str(run), "-n", "150", "--seed", "4", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    record = json.loads((run / "eval.json").read_text())
    assert record["closed, 2+ marks inside: noise seeds"] == "4-6"
    assert record["closed, 2+ marks inside: per seed"] == ", ".join(single[s] for s in (4, 5, 6))
    shares = [float(single[s].rstrip("%")) for s in (4, 5, 6)]
    mean = float(record["closed, 2+ marks inside: mean over seeds"].rstrip("%"))
    assert abs(mean - sum(shares) / 3) <= 0.1                 # of unrounded values, so 0.1 points
    line = next(line for line in out.splitlines()
                if line.strip().startswith("closed, 2+ marks inside over noise seeds 4-6"))
    low, high = min(single.values(), key=lambda v: float(v[:-1])), \
        max(single.values(), key=lambda v: float(v[:-1]))
    assert f"range {low}-{high}" in line
    assert "Frechet distance over noise seeds 4-6" in out    # the distance's line stays
    assert record["closed, 2+ marks, bold strokes: per seed"] == \
        ", ".join(bold[s] for s in (4, 5, 6))
    assert "closed, 2+ marks, bold strokes over noise seeds 4-6" in out
    assert record["closed, 3+ marks, bold strokes: per seed"] == \
        ", ".join(bold3[s] for s in (4, 5, 6))
    assert "closed, 3+ marks, bold strokes over noise seeds 4-6" in out


def test_eval_needs_a_classifier(tmp_path, curves, capsys):
    run = tmp_path / "run"
    Trainer(_config(tmp_path, dataset="ellipses", limit=48, image_size=8, batch_size=8,
                    steps=1)).fit()
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "'ellipses'" in err and "no classifier" in err and "mnist" in err


def test_resume_may_switch_on_internals_and_switch_off_quality(tmp_path, curves):
    run = tmp_path / "run"
    tiny = ["--dataset", "ellipses", "--limit", "48", "--image-size", "8", "--width", "4",
            "--z-dim", "8", "--batch-size", "8", "--no-progress", "--log-every", "2"]
    assert main(["train", *tiny, "--steps", "2", "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--steps", "4", "--log-internals",
                 "--quality-every", "0", "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["log_internals"] is True and config["quality_every"] == 0
    records = _records(run)
    assert "grad_norm/G" not in records[0] and "grad_norm/G" in records[-1]
