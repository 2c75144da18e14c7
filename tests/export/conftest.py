"""Generators for the export tests: every preset at a small width, its parameters jittered so
that a BatchNorm weight mistaken for a bias, or a bias dropped, changes the output."""

import numpy as np
import pytest

from minigan import nn
from minigan.gan import build

SHAPES = [(1, 28, 28), (3, 28, 28), (1, 64, 64), (3, 64, 64)]
ARCHS = ("dcgan", "atienza", "dense", "radford")
PRESETS = [(arch, shape) for arch in ARCHS for shape in SHAPES]
Z_DIM = 16


def preset(arch: str, shape, width: int = 4, seed: int = 0) -> nn.Module:
    """Generator `arch` for images `shape`, z of Z_DIM, with every parameter moved off its
    initial value (BatchNorm weights off 1, biases off 0)."""
    G, _, _ = build(arch, shape, Z_DIM, width=width)
    rng = np.random.default_rng(seed)
    for name, p in G.named_parameters():
        jitter = rng.standard_normal(p.data.shape).astype(np.float32)
        if isinstance(G[int(name.split(".")[0])], (nn.BatchNorm1d, nn.BatchNorm2d)):
            p.data[...] += 0.2 * jitter
        elif name.endswith("bias"):
            p.data[...] = 0.1 * jitter
    return G


def noise(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, Z_DIM), dtype=np.float32)


TINY_RUN = ["--dataset", "ellipses", "--limit", "48", "--image-size", "28", "--arch", "dcgan",
            "--width", "4", "--z-dim", "8", "--batch-size", "8", "--no-progress",
            "--quality-every", "0"]


@pytest.fixture(scope="package")
def run(tmp_path_factory):
    """A trained (12 steps) 28x28 DCGAN run folder, made through the CLI."""
    from minigan import viz
    from minigan.cli import main

    out = tmp_path_factory.mktemp("export") / "run"
    with pytest.MonkeyPatch.context() as mp:       # curves take seconds; no test looks at them
        mp.setattr(viz, "plot_curves", lambda records, path, **kw: open(path, "wb").close())
        assert main(["train", *TINY_RUN, "--epochs", "2", "--seed", "3", "--out",
                     str(out)]) == 0
    return out
