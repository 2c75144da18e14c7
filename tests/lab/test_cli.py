"""python -m minigan lab: a run folder, resume, and clear errors."""

import json

import numpy as np
import pytest

from minigan.cli import main

FAST = ["--frame-every", "2", "--eval-every", "2", "--log-every", "1",
        "--no-progress"]


def test_lab_ring_writes_a_run_folder_and_resumes(tmp_path, capsys):
    out = tmp_path / "ring"
    assert main(["lab", "ring", "--loss", "bce", "--pack", "2", "--steps", "2", "--seed", "4",
                 "--batch-size", "4", "--out", str(out), *FAST]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["pack"] == 2 and cfg["seed"] == 4 and cfg["points_per_batch"] == 8
    for name in ("lab.gif", "index.html", "metrics.jsonl", "checkpoints/last.npz",
                 "frames/step_0000002.png"):
        assert (out / name).is_file(), name
    assert "modes covered" in capsys.readouterr().out
    assert main(["lab", "--resume", str(out), "--steps", "3", *FAST]) == 0
    steps = [json.loads(s)["step"] for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 3
    assert main(["lab", "ring", "--out", str(out), *FAST]) == 2      # exists: resume or over
    assert "--resume" in capsys.readouterr().err
    topk = tmp_path / "topk"
    assert main(["lab", "ring", "--steps", "2", "--batch-size", "4", "--g-top-k", "0.5",
                 "--g-top-k-decay", "0.5", "--g-top-k-every", "1", "--out", str(topk),
                 *FAST]) == 0
    cfg = json.loads((topk / "config.json").read_text())["config"]
    assert (cfg["g_top_k"], cfg["g_top_k_decay"], cfg["g_top_k_every"]) == (0.5, 0.5, 1)
    lines = [json.loads(s) for s in (topk / "metrics.jsonl").read_text().splitlines()]
    assert [r["g_top_k"] for r in lines if "loss_d" in r] == [4, 2]   # 4 packs, then half
    with pytest.raises(SystemExit):
        main(["lab", "--resume", str(topk), "--g-top-k", "0.25"])
    assert "--g-top-k cannot be given with --resume" in capsys.readouterr().err


def test_lab_on_a_user_npy(tmp_path):
    np.save(tmp_path / "moons.npy", np.random.default_rng(0).uniform(-1, 1, (40, 2)))
    out = tmp_path / "user"
    assert main(["lab", str(tmp_path / "moons.npy"), "--steps", "2", "--batch-size", "4",
                 "--out", str(out), *FAST]) == 0
    assert (out / "lab.gif").is_file()


def test_lab_errors(tmp_path, capsys):
    assert main(["lab", "spiral", "--out", str(tmp_path / "s"), *FAST]) == 2
    assert "'ring', 'grid' or a path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lab", "--resume", str(tmp_path / "s"), "--pack", "2"])
    assert "--pack cannot be given with --resume" in capsys.readouterr().err
