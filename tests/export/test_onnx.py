"""ONNX export of every generator preset, checked by onnx.checker and run by onnxruntime against
minigan's own calibrated eval-mode output (what `minigan sample` draws)."""

import copy

import numpy as np
import pytest

from minigan import nn
from minigan.export import ExportError, export_generator
from minigan.gan import generate

from .conftest import PRESETS, Z_DIM, noise, preset

onnx = pytest.importorskip("onnx", reason="pip install 'minigan[export]'")
ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime")


def _run_onnx(path, z):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["images"], {"z": z})[0]


@pytest.mark.parametrize("arch,shape", PRESETS, ids=[f"{a}-{'x'.join(map(str, s))}"
                                                     for a, s in PRESETS])
def test_every_preset_matches_onnxruntime(arch, shape, tmp_path):
    G = preset(arch, shape)
    reference = copy.deepcopy(G)
    batch = 32
    path = export_generator(G, "onnx", tmp_path / "G.onnx", z_dim=Z_DIM, batch_size=batch,
                            seed=5)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert "Dropout" not in ops and "BatchNormalization" in ops or arch == "dense", ops
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == Z_DIM, "batch axis must be free"
    for n in (1, 7):                                       # two batch sizes: one model
        z = noise(n, seed=n)
        want = generate(reference, z, batch_size=batch, seed=5)   # as `minigan sample --seed 5`
        got = _run_onnx(path, z)
        assert got.shape == (n, *shape)
        err = np.abs(got - want).max()
        assert err <= 1e-5, f"{arch} {shape}: onnxruntime vs minigan max |diff| {err:.2e}"


def test_upsample_flatten_and_sigmoid_rules(tmp_path):
    """Layers no preset's generator uses on the path tested above: Conv2d, Flatten, Sigmoid,
    a nested Sequential, and Upsample by 3."""
    G = nn.Sequential(nn.Linear(Z_DIM, 2 * 4 * 4), nn.Unflatten(1, (2, 4, 4)),
                      nn.Sequential(nn.Upsample(3), nn.Conv2d(2, 3, 3, 2, 1)),
                      nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 6 * 6, 10), nn.Sigmoid(),
                      nn.Unflatten(1, (1, 2, 5)), nn.ReLU())
    reference = copy.deepcopy(G)
    path = export_generator(G, "onnx", tmp_path / "G.onnx", z_dim=Z_DIM)
    z = noise(5)
    want = generate(reference, z)
    np.testing.assert_allclose(_run_onnx(path, z), want, rtol=0, atol=1e-5)


def test_old_or_missing_onnx_says_what_to_do(tmp_path, monkeypatch):
    G = preset("dense", (1, 28, 28))
    monkeypatch.setattr(onnx, "__version__", "1.10.2")
    with pytest.raises(ExportError, match=r"onnx 1\.10\.2 is too old.*pip install"):
        export_generator(G, "onnx", tmp_path / "G.onnx", z_dim=Z_DIM)
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    with pytest.raises(ExportError, match=r"needs the onnx package.*minigan\[export\]"):
        export_generator(G, "onnx", tmp_path / "G.onnx", z_dim=Z_DIM)
    assert not (tmp_path / "G.onnx").exists()
