"""Compile the CPU kernels before the first training step, two processes at once, and say so.

numba compiles each `@njit` kernel on its first call and keeps the machine code in an on-disk
cache (next to the kernel sources, or in a per-user folder where that one is read-only), so only
the first run after an install pays for it: some 15-20 s on a 2-core machine, most of it the two
batchnorm kernels. `compile_cpu_kernels()` runs the ops a training step uses on tiny float32
inputs; with `workers=2` the batchnorm kernels compile in a child process while this one
compiles the rest, and the first step then loads both from the cache. `python -m
minigan.precompile` does it ahead of time.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

_KERNEL_MODULES = ("activation", "conv", "dropout", "loss", "norm", "optim", "shifted")


def _cpu_dispatchers():
    """Every `@njit` kernel (numba CPU dispatcher) of minigan.kernels."""
    import importlib

    from numba.core.registry import CPUDispatcher

    for name in _KERNEL_MODULES:
        module = importlib.import_module(f"minigan.kernels.{name}")
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and value.__name__.endswith("_cpu"):
                yield value


def cpu_kernels_cached() -> bool:
    """Whether numba's cache holds current machine code for every CPU kernel (False when it
    cannot tell: then the caller says that kernels may compile, which is harmless)."""
    try:
        return all(bool(d._cache._cache_file._load_index()) for d in _cpu_dispatchers())
    except Exception:  # numba's cache internals moved: assume a compile is coming
        return False


def _warm_batchnorm() -> None:
    from . import functional as F
    from .autograd import Tensor

    rng = np.random.default_rng(0)
    for shape in ((4, 3), (4, 3, 2, 2)):  # (N, C) rows and (N, C, H, W) images
        x = Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
        g = Tensor(np.ones(3, np.float32), requires_grad=True)
        b = Tensor(np.zeros(3, np.float32), requires_grad=True)
        F.batch_norm(x, None, None, g, b, training=True).sum().backward()


def _warm_rest() -> None:
    from . import functional as F
    from . import nn, optim
    from .autograd import Tensor
    from .kernels.conv import transpose2d

    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 1, 6, 6)).astype(np.float32), requires_grad=True)
    conv = nn.Conv2d(1, 16, 3, 2, 1)                          # im2col
    up = nn.ConvTranspose2d(16, 1, 3, 2, 1, output_padding=1)  # col2im
    wide = nn.ConvTranspose2d(16, 16, 3, 2, 1, output_padding=1)  # shifted GEMMs: tap order,
                                                              # phase images cut and joined
    x = F.dropout(x, 0.1, training=True)                      # (N, C, H, W) memory
    h = F.dropout(F.leaky_relu(conv(x), 0.2), 0.3, training=True)  # batch-last memory
    y = up(F.leaky_relu(wide(h), 0.2)).reshape(2, -1)[:, :1]
    transpose2d(np.zeros((256, 2), np.float32))               # the tiled layout transpose
    loss = F.binary_cross_entropy_with_logits(y, np.ones((2, 1), np.float32))
    loss.backward()
    params = [*conv.parameters(), *up.parameters(), *wide.parameters()]
    for opt in (optim.Adam(params, lr=1e-4), optim.RMSprop(params, lr=1e-4),
                optim.SGD(params, lr=1e-4, momentum=0.9)):
        opt.step()


_TASKS = {"batchnorm": _warm_batchnorm, "rest": _warm_rest}


def compile_cpu_kernels(workers: int = 2, say=print) -> float:
    """Compile (or load from the cache) every CPU kernel of a float32 training step; returns
    the seconds it took. Prints one line first when they are not cached yet, and one when
    OPENBLAS_CORETYPE holds the convolutions' GEMMs back (kernels/blas.py)."""
    from .kernels import blas, shifted

    t0 = time.perf_counter()
    advice = blas.advice(shifted.BLAS.core)
    if advice and say is not None:
        say(f"note: {advice}")
    if cpu_kernels_cached():
        _warm_batchnorm()
        _warm_rest()
        return time.perf_counter() - t0
    if say is not None:
        say("compiling kernels, first run only (15-30 s; numba caches them for the next runs)")
    child = None
    if workers > 1:
        child = subprocess.Popen([sys.executable, "-c",
                                  "from minigan.precompile import _warm_batchnorm as f; f()"])
    _warm_rest()
    if child is not None and child.wait() != 0:
        child = None  # it failed: compile here, where an error shows its traceback
    _warm_batchnorm()
    if workers > 1:
        # _warm_rest's convolution chose the thread family while the child compiled beside
        # it, i.e. on a machine this compile kept busy: let training's first one choose
        shifted.redetect_threads()
    return time.perf_counter() - t0


def main() -> None:
    """python -m minigan.precompile: compile the CPU kernels now (e.g. after an install)."""
    seconds = compile_cpu_kernels()
    print(f"CPU kernels ready in {seconds:.1f} s")


if __name__ == "__main__":
    main()
