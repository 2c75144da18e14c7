"""numba.cuda, imported in this one guarded place, and what every CUDA twin shares.

Without numba-cuda minigan still imports (CPU only): `kernel` then returns a stand-in whose
launch says how to install the CUDA extras. Each kernel is listed in `KERNELS` with the argument
types it is launched with, so the tests can compile every one of them to PTX.

Kernels run on CuPy arrays, which numba takes directly (DLPack / `__cuda_array_interface__`),
and are launched on CuPy's current stream, so they queue behind the CuPy work that made their
inputs and before the CuPy work that reads their outputs, with no host synchronisation.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

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


# A launch through numba's dispatcher types every argument again (DLPack or the CUDA array
# interface for each array), looks the signature up and converts each array to a device-array
# view: tens of microseconds a launch, from Python, for kernels that take a few microseconds on
# the GPU. A training step launches a hundred or more, so that is most of a small model's step.
# Once the dispatcher has compiled a kernel for one kind of arguments (array dtypes, dimensions
# and layouts; scalar types), `launch` keeps that overload and hands the same parameter list
# numba would build (`_Kernel._prepare_args`: meminfo, parent, size, itemsize, data pointer,
# shape and strides of each array; ctypes scalars) straight to cuda.core's launch.
# MINIGAN_CUDA_DIRECT_LAUNCH=0 (or DIRECT = False) sends every launch through the dispatcher.
DIRECT = os.environ.get("MINIGAN_CUDA_DIRECT_LAUNCH", "1") != "0"
_direct: dict = {}   # (dispatcher, argument kinds) -> _Direct, or None: the dispatcher's launch
_INT64_END = 2 ** 63


def _kind(a):
    """What numba's typing of `a` depends on, cheaply: dtype, dimensions and layout of an
    array, the type of a scalar (and for a Python int whether it needs uint64)."""
    if backend.is_cuda_array(a):
        f = a.flags
        return a.dtype.num, a.ndim, f.c_contiguous, f.f_contiguous
    if type(a) is int:
        return int, a >= _INT64_END
    return type(a)


def _packer(ty):
    """A function appending one argument of numba type `ty` to a parameter list the way
    numba's `_Kernel._prepare_args` does, or None for a type this does not cover."""
    if isinstance(ty, nbtypes.Array):
        def array(a, out):
            out += (0, 0, a.size, a.itemsize, a.data.ptr)  # meminfo, parent, size, ..., data
            out += a.shape
            out += a.strides
        return array
    if isinstance(ty, nbtypes.Integer):
        make = getattr(ctypes, f"c_{ty}")
    elif ty == nbtypes.float32:
        make = ctypes.c_float
    elif ty == nbtypes.float64:
        make = ctypes.c_double
    elif ty == nbtypes.boolean:
        def boolean(v, out):
            out.append(v)
        return boolean
    else:
        return None

    def scalar(v, out):
        out.append(make(v))
    return scalar


class _Direct:
    """One compiled overload of a kernel, launched without the dispatcher (see DIRECT)."""

    __slots__ = ("kernel", "packers", "configs", "run", "config")

    def __init__(self, kernel, packers, run, config):
        self.kernel, self.packers, self.configs = kernel, packers, {}
        self.run, self.config = run, config   # cuda.core's launch and LaunchConfig

    @classmethod
    def make(cls, kern, args):
        """The direct launcher for these arguments' overload, or None when an argument is a
        host array (numba copies those to the GPU and back), numba has no overload for exactly
        these types (it converted them), or something here is not as this numba-cuda has it."""
        if any(isinstance(a, np.ndarray) for a in args):
            return None
        try:
            from cuda.core import LaunchConfig, launch as run

            _core_stream()  # this cuda.core can stand for CuPy's streams

            tys = tuple(kern.typeof_pyval(a) for a in args)
            overload = kern.overloads.get(tys)
            packers = [_packer(t) for t in tys]
            if overload is None or None in packers:
                return None
            return cls(overload._codelibrary.get_cufunc().kernel, packers, run, LaunchConfig)
        except Exception:  # noqa: BLE001 - another numba-cuda: its own launch still works
            return None

    def __call__(self, blocks, threads, stream, args):
        params = []
        for pack, a in zip(self.packers, args):
            pack(a, params)
        config = self.configs.get((blocks, threads))
        if config is None:
            config = self.configs[blocks, threads] = self.config(grid=blocks, block=threads)
        self.run(stream, config, self.kernel, *params)


_core_streams: dict = {}


def _core_stream():
    """cuda.core's Stream for CuPy's current stream, where the direct path launches (its
    arguments are all CuPy arrays): made once per stream, like `stream_for`'s."""
    ptr = backend.current_stream_ptr()
    s = _core_streams.get(ptr)
    if s is None:
        from cuda.core import LEGACY_DEFAULT_STREAM, Stream

        if len(_core_streams) > 64:
            _core_streams.clear()
        s = _core_streams[ptr] = Stream.from_handle(ptr) if ptr else LEGACY_DEFAULT_STREAM
    return s


def launch(kern, blocks: int, threads: int, *args) -> None:
    """kern[blocks, threads, stream](*args), on the stream of the first argument's array."""
    if cuda is None:
        raise RuntimeError(missing_reason())
    if DIRECT and not SIMULATOR:
        key = (kern, tuple(map(_kind, args)))
        direct = _direct.get(key, False)
        if direct:
            direct(blocks, threads, _core_stream(), args)
            return
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
    if DIRECT and not SIMULATOR and key not in _direct:
        if len(_direct) > 1024:
            _direct.clear()
        _direct[key] = _Direct.make(kern, args)


def for_each(kern, n: int, *args) -> None:
    """Launch a grid-stride kernel over n elements (nothing to launch when n is 0)."""
    if n > 0:
        launch(kern, *grid(n), *args)
