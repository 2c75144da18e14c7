"""safetensors export, read back by the safetensors package (an independent reader) and loaded
by PyTorch's own layers with load_state_dict (skipped where PyTorch is not installed)."""

import copy
import json
import struct

import numpy as np
import pytest

from minigan import nn
from minigan.export import export_generator
from minigan.export.safetensors import save_file
from minigan.gan import generate

from .conftest import PRESETS, Z_DIM, noise, preset

st = pytest.importorskip("safetensors.numpy", reason="pip install safetensors")


def test_the_writer_against_the_safetensors_reader(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a.weight": rng.standard_normal((3, 5)).astype(np.float32),
               "a.num_batches_tracked": np.array(7, np.int64),         # 0-d, as BatchNorm's
               "b": rng.integers(0, 255, (2, 3, 4), dtype=np.uint8),
               "c": rng.standard_normal(5).astype(np.float16),
               "d": np.array([True, False, True]),
               "e": rng.standard_normal((4, 1)).astype(">f8")}          # big-endian in memory
    path = save_file(tensors, tmp_path / "t.safetensors", {"arch": "dcgan", "z_dim": 100})
    back = st.load_file(str(path))
    assert sorted(back) == sorted(tensors)
    for k, a in tensors.items():
        assert back[k].shape == a.shape and back[k].dtype == a.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back[k], a, err_msg=k)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    assert n % 8 == 0, "the data must start 8-byte aligned"
    assert header["__metadata__"] == {"arch": "dcgan", "z_dim": "100"}
    with pytest.raises(ValueError, match="complex128.*does not name"):
        save_file({"x": np.zeros(2, complex)}, tmp_path / "bad.safetensors")


def _torch_twin(module, torch):
    """The same network written with torch.nn (an independent implementation)."""
    tnn = torch.nn
    if isinstance(module, nn.Sequential):
        return tnn.Sequential(*(_torch_twin(m, torch) for m in module))
    m = module
    if isinstance(m, nn.Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.ConvTranspose2d):
        return tnn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                   m.padding, m.output_padding, bias=m.bias is not None)
    if isinstance(m, nn.Conv2d):
        return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                          bias=m.bias is not None)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = tnn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else tnn.BatchNorm2d
        return cls(m.num_features, eps=m.eps, momentum=m.momentum)
    simple = {nn.LeakyReLU: lambda: tnn.LeakyReLU(m.negative_slope), nn.ReLU: tnn.ReLU,
              nn.Tanh: tnn.Tanh, nn.Sigmoid: tnn.Sigmoid, nn.Dropout: lambda: tnn.Dropout(m.p),
              nn.Flatten: lambda: tnn.Flatten(m.start_dim),
              nn.Unflatten: lambda: tnn.Unflatten(m.dim, m.sizes),
              nn.Upsample: lambda: tnn.Upsample(scale_factor=m.scale_factor, mode="nearest")}
    return simple[type(m)]()


@pytest.mark.parametrize("arch,shape", PRESETS, ids=[f"{a}-{'x'.join(map(str, s))}"
                                                     for a, s in PRESETS])
def test_pytorch_loads_every_preset(arch, shape, tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from safetensors.torch import load_file

    G = preset(arch, shape)
    reference = copy.deepcopy(G)
    path = export_generator(G, "safetensors", tmp_path / "G.safetensors", z_dim=Z_DIM,
                            batch_size=16, seed=3)
    twin = _torch_twin(G, torch)
    twin.load_state_dict(load_file(str(path)))              # strict: every key, every shape
    twin.eval()
    z = noise(6)
    with torch.no_grad():
        got = twin(torch.from_numpy(z)).numpy()
    want = generate(reference, z, batch_size=16, seed=3)    # as `minigan sample --seed 3`
    err = np.abs(got - want).max()
    assert err <= 1e-5, f"{arch} {shape}: PyTorch on the exported state vs minigan {err:.2e}"
