"""The doodles example as a user starts it: its recipe reaches the run folder, one short epoch."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_doodles_example_trains_its_recipe(tmp_path):
    root = os.environ.get("MINIGAN_DATA")
    if not root or not (Path(root) / "quickdraw" / "smiley_face.npy").is_file():
        pytest.skip("Quick, Draw! smiley faces not available: set MINIGAN_DATA to a folder "
                    "holding quickdraw/smiley_face.npy")
    out = tmp_path / "doodles"
    res = subprocess.run([sys.executable, "examples/doodles.py", "--epochs", "1", "--limit",
                          "256", "--out", str(out), "--seed", "3"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "256 images" in res.stdout and "batch 32, 8 steps an epoch, 1 epochs" in res.stdout
    config = json.loads((out / "config.json").read_text())
    c = config["config"]
    assert (c["loss"], c["r1_gamma"], c["r1_every"], c["d_dropout"], c["lr"], c["beta1"],
            c["lr_decay"], c["ema"], c["ema_rampup"], c["width"], c["batch_size"], c["seed"],
            c["picture_budget"], c["g_top_k"], c["d_depth"], c["g_kernel"]) == \
        ("bce", 30.0, 8, 0.0, 6e-4, 0.0, 0.5, 0.9995, 0.25, 32, 32, 3, 0.02, 1.0, 3, 3)
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["r1"] > 0 for r in records if "r1" in r][:1] == [True]
    assert (out / "samples" / "epoch_001.png").stat().st_size > 0
    # benchmarks/trainer_step.py times "the example's recipe" (its RECIPE): the same fields
    spec = importlib.util.spec_from_file_location("trainer_step",
                                                  REPO / "benchmarks" / "trainer_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    own = {"epochs", "seed", "quality_every", "fd_every", "progress", "limit"}  # set apart
    assert {k: v for k, v in bench.DOODLES.items() if k not in own} == \
        {k: c[k] for k in bench.DOODLES if k not in own}


@pytest.mark.parametrize("example", ["doodles.py", "mnist.py", "ellipses.py", "wgan_gp.py"])
def test_examples_take_a_device_and_refuse_a_missing_gpu_in_one_line(example, tmp_path):
    """--device cuda without CuPy / a GPU: a usage error that says why and what to do, before
    any data is read or any run folder written."""
    from minigan import backend
    if backend.cuda_available():
        pytest.skip("a GPU works here: --device cuda would train")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, f"examples/{example}", "--device", "cuda", "--out",
                          str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{example}: error: device 'cuda' was asked for but ") and \
        "--device cpu" in last and "Traceback" not in res.stderr, res.stderr
    assert not out.exists()


def _doodles_module():
    sys.path.insert(0, str(REPO / "examples"))
    try:
        spec = importlib.util.spec_from_file_location("doodles_example",
                                                      REPO / "examples" / "doodles.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "examples"))
    return module


def test_doodles_width_follows_the_device_unless_given():
    """Half width on the CPU (the 10-minute default), the tutorial's 64 on a GPU, where a step
    costs the same at either; --width overrides both and changes nothing else."""
    doodles = _doodles_module()
    ns = dict(category="smiley face", limit=5000, epochs=60, out="runs/doodles", seed=0,
              quality_every=0, min_enclosed_marks=None)

    class Args:
        def __init__(self, **kw):
            self.__dict__.update(ns, **kw)

    cpu = doodles.config(Args(width=None), "cpu")
    gpu = doodles.config(Args(width=None), "cuda")
    mine = doodles.config(Args(width=48), "cuda")
    assert (cpu.width, gpu.width, mine.width) == (32, 64, 48)
    assert (cpu.device, gpu.device) == ("cpu", "cuda")
    same = ("arch", "batch_size", "loss", "r1_gamma", "r1_every", "d_dropout", "lr", "beta1",
            "lr_decay", "ema", "ema_rampup", "d_depth", "g_kernel", "epochs", "seed", "limit", "dataset")
    assert [getattr(gpu, k) for k in same] == [getattr(cpu, k) for k in same] == \
        [getattr(mine, k) for k in same]
    assert cpu.dataset == "quickdraw:smiley face" and cpu.limit == 5000


def test_doodles_refuses_flags_its_run_folder_was_not_trained_with(tmp_path):
    """Continuing a run keeps its data, seed and nets: a --width, --seed, --category or --limit
    that differs from the run folder's is a usage error naming what differs and both ways out,
    and the folder is left as it was; the same values, or none, go on."""
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.npz").write_bytes(b"not read")
    (out / "config.json").write_text(json.dumps({"config": {
        "width": 32, "seed": 0, "dataset": "quickdraw:smiley face", "limit": 5000,
        "min_enclosed_marks": None}}))
    before = sorted(p.name for p in out.rglob("*"))

    def refused(*flags):
        res = subprocess.run([sys.executable, "examples/doodles.py", *flags, "--out", str(out)],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stdout + res.stderr
        assert sorted(p.name for p in out.rglob("*")) == before
        last = res.stderr.strip().splitlines()[-1]
        assert "--restart" in last and "--out NEW_FOLDER" in last, res.stderr
        return last

    assert "was trained with width 32; --width asks for width 64 and cannot continue it" in \
        refused("--width", "64")
    assert "trained with seed 0; --seed asks for seed 1" in refused("--seed", "1")
    last = refused("--category", "cat", "--limit", "0", "--seed", "0", "--width", "32")
    assert "trained with dataset 'quickdraw:smiley face', limit 5000; --category --limit ask " \
        "for dataset 'quickdraw:cat', limit None" in last, last
    assert "trained with min_enclosed_marks None; --min-enclosed-marks asks for " \
        "min_enclosed_marks 2" in refused("--min-enclosed-marks", "2")

    doodles = _doodles_module()
    saved = json.loads((out / "config.json").read_text())["config"]

    class Args:                   # the same values given, or none: nothing clashes
        def __init__(self, **kw):
            self.category = self.seed = self.limit = self.width = self.min_enclosed_marks = None
            self.out, self.epochs, self.quality_every = str(out), 60, 0
            self.__dict__.update(kw)

    for given in ({}, dict(seed=0, width=32, category="smiley face", limit=5000)):
        args = Args(**given)
        assert doodles.clashes(args, doodles.config(args, "cpu"), saved) == []
    res = subprocess.run([sys.executable, "examples/doodles.py", "--width", "0", "--out",
                          str(tmp_path / "other")], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "--width must be a positive" in res.stderr, res.stderr
