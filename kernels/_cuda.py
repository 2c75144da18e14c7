"""numba.cuda, imported in this one guarded place, and what every CUDA twin shares.

Without numba-cuda minigan still imports (CPU only): `kernel` then returns a stand-in whose
launch says how to install the CUDA extras. Each kernel is listed in `KERNELS` with the argument
types it is launched with, so the tests can compile every one of them to PTX.

Kernels run on CuPy arrays, which numba takes directly (DLPack / `__cuda_array_interface__`),
and are launched on CuPy's current stream, so they queue behind the CuPy work that made their
inputs and before the CuPy work that reads their outputs, with no host synchronisation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from minigan import backend

try:
    from numba import cuda
    from numba import types as nbtypes
except Exception as e:  # noqa: BLE001 - missing or broken numba-cuda: CPU only
    cuda = None
    _IMPORT_ERROR = f"{type(e).__name__}: {e}"
else:
    _IMPORT_ERROR = None
    if "NUMBA_CUDA_ARRAY_INTERFACE_SYNC" not in os.environ:
        # Our kernels run on the stream that produced their CuPy inputs, so stream order
        # already holds; numba's default would block the host on that stream at every launch.
        cuda.config.CUDA_ARRAY_INTERFACE_SYNC = 0
    if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" not in os.environ:
        # A GAN's small layers launch grids of a few blocks by nature (a 64-channel
        # BatchNorm: 64 blocks); numba would warn at each new launch shape, dozens of
        # lines in a training run's output. NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=1 brings them back.
        cuda.config.CUDA_LOW_OCCUPANCY_WARNINGS = 0

SIMULATOR = cuda is not None and bool(cuda.config.ENABLE_CUDASIM)
THREADS = 256  # threads per block for elementwise kernels; a power of two (block reductions)
MAX_BLOCKS = 4096  # grid-stride loops cover larger arrays


def missing_reason() -> str | None:
    """One line saying why there are no CUDA kernels, or None when numba-cuda imported."""
    if cuda is not None:
        return None
    return ("numba-cuda is not installed, so minigan has no GPU kernels: pip install "
            f"'minigan[cuda13]' (or '[cuda12]') to match your CUDA driver ({_IMPORT_ERROR})")


@dataclass
class KernelInfo:
    """A @cuda.jit kernel, its Python source function and its argument codes (see `types`)."""

    name: str
    module: str
    py_func: object
    params: tuple[str, ...]
    dispatcher: object


KERNELS: list[KernelInfo] = []


class _Missing:
    """Stands in for a kernel when numba-cuda is absent; launching it explains why."""

    def __init__(self, fn):
        self.py_func = fn

    def __getitem__(self, config):
        raise RuntimeError(f"{self.py_func.__name__}: {missing_reason()}")


def kernel(params: str):
    """Decorate a CUDA kernel: `cuda.jit` it (compiled lazily, at its first launch) and list it.

    `params` names the argument types, one code per argument: a1..a4 C-contiguous arrays of the
    float type, f a scalar of the float type, d float64, i int64, u uint64, b boolean. Every
    kernel is launched with float32 and with float64 arrays (`signatures`).
    """
    codes = tuple(params.split())

    def deco(fn):
        disp = cuda.jit(fn) if cuda is not None else _Missing(fn)
        KERNELS.append(KernelInfo(fn.__name__, fn.__module__, fn, codes, disp))
        return disp
    return deco


def all_kernels() -> list[KernelInfo]:
    """Every CUDA kernel, after importing each kernels module (each lists its own)."""
    import importlib
    import pkgutil

    package = __name__.rsplit(".", 1)[0]
    for mod in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{package}.{mod.name}")
    return list(KERNELS)


def device(fn):
    """A device function shared by kernels (`cuda.jit(device=True)`); plain Python without CUDA.

    numba-cuda compiles it for the current GPU when a kernel calling it is compiled.
    """
    return cuda.jit(device=True)(fn) if cuda is not None else fn


def types(codes, float_type):
    """numba argument types for `kernel` codes with the given float type (float32 / float64)."""
    scalars = {"f": float_type, "d": nbtypes.float64, "i": nbtypes.int64,
               "u": nbtypes.uint64, "b": nbtypes.boolean}
    return tuple(nbtypes.Array(float_type, int(c[1]), "C") if c[0] == "a" else scalars[c]
                 for c in codes)


def signatures(info: KernelInfo) -> list[tuple]:
    """The argument types `info`'s kernel is launched with: float32 and float64 variants."""
    return [types(info.params, t) for t in (nbtypes.float32, nbtypes.float64)]


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over n > 0 elements."""
    return min(MAX_BLOCKS, -(-n // THREADS)), THREADS


_streams: dict = {}


def stream_for(a):
    """The numba stream for a launch on array `a`: CuPy's current stream for a CuPy array, 0
    for a NumPy array (the simulator, or tests letting numba copy to the GPU and back)."""
    if not backend.is_cuda_array(a):
        return 0
    ptr = backend.current_stream_ptr()
    s = _streams.get(ptr)
    if s is None:
        if len(_streams) > 64:
            _streams.clear()
        # CuPy's null stream (pointer 0) is CUDA's legacy default stream
        s = _streams[ptr] = cuda.external_stream(ptr) if ptr else cuda.legacy_default_stream()
    return s


def launch(kern, blocks: int, threads: int, *args) -> None:
    """kern[blocks, threads, stream](*args), on the stream of the first argument's array."""
    if cuda is None:
        raise RuntimeError(missing_reason())
    try:
        kern[blocks, threads, stream_for(args[0])](*args)
    except AttributeError as e:  # the first launch compiles; numba-cuda then imports its NumPy
        if "module 'numpy' has no attribute" not in str(e):  # overloads, by name
            raise
        from importlib.metadata import version

        import numpy
        raise RuntimeError(
            f"numba-cuda {version('numba-cuda')} cannot compile kernels with NumPy "
            f"{numpy.__version__} ({e}): install a NumPy it supports (NumPy 2.5 removed "
            "np.row_stack, which numba-cuda 0.30 still refers to): pip install 'numpy<2.5'"
        ) from e


def for_each(kern, n: int, *args) -> None:
    """Launch a grid-stride kernel over n elements (nothing to launch when n is 0)."""
    if n > 0:
        launch(kern, *grid(n), *args)
