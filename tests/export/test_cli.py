"""python -m minigan export on a trained run: each format draws what `minigan sample` draws;
bad runs, layers and tools give errors that say what to do."""

import json
import shutil

import numpy as np
import pytest

from minigan import nn
from minigan.cli import main
from minigan.export import ExportError, export_generator
from minigan.gan import load_checkpoint, to_uint8

from .conftest import Z_DIM


def _sample(run, tmp_path, n=12, seed=0):
    """(noise, uint8 images) as `minigan sample -n N --seed SEED` draws them."""
    npy = tmp_path / "sample.npy"
    assert main(["sample", str(run), "-n", str(n), "--seed", str(seed), "-o", str(npy)]) == 0
    z_dim = json.loads((run / "config.json").read_text())["config"]["z_dim"]
    z = np.random.default_rng(seed).standard_normal((n, z_dim), dtype=np.float32)
    return z, np.load(npy)


def test_onnx_draws_what_minigan_sample_draws(run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime")
    onnx = pytest.importorskip("onnx", reason="pip install 'minigan[export]'")
    path = tmp_path / "G.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(path), "--seed", "2"]) == 0
    assert str(path) in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["arch"] == "dcgan" and meta["z_dim"] == "8" and meta["trained_steps"] == "12"
    assert "--seed 2" in meta["batchnorm"] and meta["image_shape"] == "[1, 28, 28]"
    z, want = _sample(run, tmp_path, seed=2)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = to_uint8(sess.run(["images"], {"z": z})[0])
    diff = np.abs(got.astype(int) - want).max()
    assert diff <= 1, f"ONNX vs minigan sample: max pixel difference {diff}/255"


def test_safetensors_holds_the_calibrated_state(run, tmp_path):
    st = pytest.importorskip("safetensors", reason="pip install safetensors")
    path = tmp_path / "G.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "-o", str(path)]) == 0
    with st.safe_open(str(path), "np") as f:
        keys, meta = set(f.keys()), f.metadata()
        running = f.get_tensor("1.running_var")
    stored = load_checkpoint(run / "checkpoints" / "last.npz")["G"]
    assert keys == set(stored) and "1.running_var" in keys and "10.weight" in keys
    assert meta["arch"] == "dcgan" and meta["output_range"].startswith("[-1, 1]")
    assert not np.allclose(running, stored["1.running_var"]), \
        "the export holds the training-time statistics, not the calibrated ones sample uses"


def test_run_without_a_checkpoint(run, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.json", bare / "config.json")
    assert main(["export", str(bare), "--format", "web", "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "train --resume" in err and "last.npz" in err
    assert not (tmp_path / "s").exists()
    assert main(["export", str(tmp_path), "--format", "web", "-o", str(tmp_path / "s")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_wrong_output_names(run, tmp_path, capsys):
    assert main(["export", str(run), "--format", "onnx", "-o", str(tmp_path / "G.pt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["export", str(run), "--format", "web", "-o", str(tmp_path / "file")]) == 2
    assert "writes a folder" in capsys.readouterr().err


def test_old_onnx_from_the_command_line(run, tmp_path, monkeypatch, capsys):
    onnx = pytest.importorskip("onnx", reason="pip install 'minigan[export]'")
    monkeypatch.setattr(onnx, "__version__", "1.9.0")
    assert main(["export", str(run), "--format", "onnx", "-o", str(tmp_path / "G.onnx")]) == 2
    err = capsys.readouterr().err
    assert "onnx 1.9.0 is too old" in err and "pip install" in err


class Gate(nn.Module):
    """A layer no exit knows."""

    def forward(self, x):
        return x * 2


@pytest.mark.parametrize("fmt", ["onnx", "safetensors", "web"])
def test_a_layer_with_no_export_rule(fmt, tmp_path):
    G = nn.Sequential(nn.Linear(Z_DIM, 8), nn.Sequential(nn.ReLU(), Gate()), nn.Tanh())
    with pytest.raises(ExportError, match=r"layer '1\.1' \(Gate\) has no export rule.*"
                                          r"Rebuild the generator from those layers"):
        export_generator(G, fmt, tmp_path / f"G.{fmt}", z_dim=Z_DIM)
    assert list(tmp_path.iterdir()) == [], "nothing is written when the export fails"


def test_batchnorm_without_running_statistics_and_empty_generators(tmp_path):
    G = nn.Sequential(nn.Linear(Z_DIM, 8), nn.BatchNorm1d(8, track_running_stats=False))
    with pytest.raises(ExportError, match="keeps no running statistics"):
        export_generator(G, "web", tmp_path / "site", z_dim=Z_DIM)
    with pytest.raises(ExportError, match="no layers to export"):
        export_generator(nn.Sequential(nn.Dropout()), "web", tmp_path / "site", z_dim=Z_DIM)


def test_export_help_names_the_formats(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "onnx" in out and "safetensors" in out and "web" in out and "--seed" in out
