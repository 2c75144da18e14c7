"""python -m minigan train | sample | interpolate on a tiny ellipses run."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minigan import nn
from minigan.cli import main

TINY = ["--dataset", "ellipses", "--limit", "48", "--image-size", "8", "--arch", "dcgan",
        "--width", "4", "--z-dim", "8", "--batch-size", "8", "--no-progress", "--log-every", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--seed", "3", "--out", str(out)]) == 0
    return out


def test_train_writes_the_run_folder(run, capsys):
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 3 and config["config"]["epochs"] == 2
    assert config["total_steps"] == 12
    assert (run / "samples" / "epoch_002.png").is_file() and (run / "curves.png").is_file()
    assert (run / "progress.gif").is_file() and (run / "checkpoints" / "last.npz").is_file()


def test_existing_run_needs_resume_or_overwrite(run, capsys):
    assert main(["train", *TINY, "--steps", "1", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--overwrite" in err
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(run), "--lr", "0.1"])
    assert "cannot be given with --resume" in capsys.readouterr().err


def test_resume_trains_longer(run, capsys):
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    assert "from step 12" in capsys.readouterr().out
    assert (run / "samples" / "epoch_003.png").is_file()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "already finished at step 18" in capsys.readouterr().out


def test_sample_npy_and_png(run, tmp_path):
    npy = tmp_path / "s.npy"
    assert main(["sample", str(run), "-n", "10", "-o", str(npy), "--seed", "1"]) == 0
    a = np.load(npy)
    assert a.shape == (10, 8, 8) and a.dtype == np.uint8
    assert main(["sample", str(run), "-n", "10", "-o", str(npy), "--seed", "1"]) == 0
    np.testing.assert_array_equal(np.load(npy), a)
    assert main(["sample", str(run), "-n", "10", "-o", str(npy), "--seed", "2"]) == 0
    assert not np.array_equal(np.load(npy), a)
    png = tmp_path / "s.png"
    assert main(["sample", str(run), "-n", "12", "-o", str(png), "--nrow", "4"]) == 0
    with Image.open(png) as img:
        assert img.size == (2 * (4 * 10 + 2), 2 * (3 * 10 + 2))   # 4 x 3 tiles, scale 2


def test_interpolate_png_and_gif(run, tmp_path):
    png, gif = tmp_path / "walk.png", tmp_path / "walk.gif"
    assert main(["interpolate", str(run), "-o", str(png), "--steps", "5", "--rows", "2"]) == 0
    with Image.open(png) as img:
        assert img.size == (2 * (5 * 10 + 2), 2 * (2 * 10 + 2))
    assert main(["interpolate", str(run), "-o", str(gif), "--steps", "5", "--rows", "2",
                 "--method", "lerp"]) == 0
    with Image.open(gif) as img:
        assert img.n_frames == 8                                # there and back: 5 + 3


def test_missing_data_gives_the_data_modules_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIGAN_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("MINIGAN_OFFLINE", "1")
    code = main(["train", "--dataset", "quickdraw:smiley face", "--out", str(tmp_path / "r"),
                 "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "smiley" in err and str(tmp_path / "nothing") in err
    assert "MINIGAN_DATA" in err


def test_python_dash_m_minigan():
    result = subprocess.run([sys.executable, "-m", "minigan", "train", "--help"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--resume" in result.stdout and "--arch" in result.stdout


def test_g_width_and_d_width_train_and_load(tmp_path):
    """--g-width / --d-width reach the nets and are part of the run: sample rebuilds G at its
    own width (a mismatch would fail to load the checkpoint), and a resume may not change it."""
    out = tmp_path / "wide"
    assert main(["train", *TINY, "--steps", "2", "--g-width", "6", "--d-width", "3",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["width"], config["g_width"], config["d_width"]) == (4, 6, 3)
    from minigan.cli import load_generator
    from minigan.inspect import load_run

    G, _ = load_generator(out)
    assert G[0].out_features == 4 * 6 * 2 * 2       # 8x8 images: a 2x2 map of 4 * g_width
    _, D, _ = load_run(out)
    assert [m.out_channels for m in D.modules() if hasattr(m, "out_channels")][:2] == [3, 6]
    assert main(["sample", str(out), "-n", "4", "-o", str(tmp_path / "s.npy")]) == 0
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(out), "--g-width", "8"])


def test_d_depth_trains_loads_and_is_part_of_the_run(tmp_path):
    out = tmp_path / "deep"
    assert main(["train", *TINY, "--steps", "2", "--d-depth", "3", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["d_depth"] == 3
    from minigan.inspect import load_run

    _, D, _ = load_run(out)             # the checkpoint's D loads into a three-convolution D
    assert [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 16]
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(out), "--d-depth", "2"])


def test_g_kernel_trains_loads_and_is_part_of_the_run(tmp_path):
    """--g-kernel 3 reaches G, and every command that rebuilds G from the run (sample, inspect's
    loader) builds the 3x3 layer: a 5x5 one would fail to load the checkpoint's weights."""
    out = tmp_path / "k3"
    assert main(["train", *TINY, "--steps", "2", "--g-kernel", "3", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["g_kernel"] == 3
    from minigan.cli import load_generator
    from minigan.inspect import load_run

    G, _ = load_generator(out)
    G2, _, _ = load_run(out)
    for g in (G, G2):
        assert [m.kernel_size for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == \
            [(3, 3), (5, 5), (5, 5)]
    assert main(["sample", str(out), "-n", "4", "-o", str(tmp_path / "s.npy")]) == 0
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(out), "--g-kernel", "5"])


def test_beta2_reaches_both_optimizers_and_stays_with_the_run(tmp_path):
    """--beta2 sets Adam's second-moment decay of G and D (beta1 stays the recipe's), is saved
    with the run and restored on resume, and may not change there."""
    from minigan.gan import Trainer

    out = tmp_path / "b2"
    assert main(["train", *TINY, "--steps", "2", "--beta2", "0.99", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["beta2"] == 0.99
    resumed = Trainer.resume(out)
    for opt in (resumed.opt_g, resumed.opt_d):
        assert tuple(opt.defaults["betas"]) == (0.5, 0.99)
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(out), "--beta2", "0.9"])


def test_ema_rampup_reaches_the_average_and_stays_with_the_run(tmp_path, capsys):
    """--ema-rampup is saved with the run, ramps the average the resumed trainer keeps (its
    decay after 1 update at 0.25: 0.5 ** (1 / 0.5) = 0.25, under --ema 0.99), may not change
    on resume, and without --ema is refused with what to do."""
    from minigan.gan import Trainer

    out = tmp_path / "ramp"
    assert main(["train", *TINY, "--steps", "2", "--ema", "0.99", "--ema-rampup", "0.25",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["ema"], config["ema_rampup"]) == (0.99, 0.25)
    resumed = Trainer.resume(out)
    assert int(resumed.G_ema.n_averaged) == 2
    a = [np.ones(1)]
    resumed.G_ema.multi_avg_fn(a, [np.zeros(1)], 1)
    assert a[0][0] == pytest.approx(0.25)               # kept 0.25 of the average: the ramp
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(out), "--ema-rampup", "0.5"])
    capsys.readouterr()
    assert main(["train", *TINY, "--steps", "1", "--ema-rampup", "0.25",
                 "--out", str(tmp_path / "none")]) == 2
    assert "needs a moving average to ramp up (--ema DECAY" in capsys.readouterr().err
