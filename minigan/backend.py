"""The one place that knows NumPy vs CuPy: device choice, array modules, random numbers.

Every other module asks this one for the array module of an array (`array_module`), the
device of an array (`device_of`), or moves data (`to_device`). Only this file imports cupy.
"""

from __future__ import annotations

import os

import numpy as np

DEVICES = ("cpu", "cuda")
_cupy = None
_cupy_error: str | None = None


def _load_cupy():
    """Import cupy once; remember why it failed so the error can say so."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy  # the only cupy import in minigan

        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            raise RuntimeError("the CUDA driver reports no GPU")
        cupy.zeros(1)  # touches the driver and the device
        _cupy = cupy
    except ImportError:
        _cupy_error = ("cupy is not installed: pip install 'minigan[cuda12]' or "
                       "'minigan[cuda13]' to match your CUDA driver")
    except Exception as e:  # driver missing, no device, driver too old ...
        _cupy_error = f"cupy is installed but CUDA does not work here: {e}"
    if _cupy is not None:  # the GPU kernels need numba-cuda, and not its simulator
        from .kernels import _cuda

        reason = _cuda.missing_reason()
        if reason is None and _cuda.SIMULATOR:
            reason = "NUMBA_ENABLE_CUDASIM=1 is set, and the simulator cannot run on CuPy arrays"
        if reason is not None:
            _cupy, _cupy_error = None, reason
    return _cupy


def cuda_available() -> bool:
    """True when cupy imports, a GPU answers and numba-cuda can launch kernels on it."""
    return _load_cupy() is not None


def cuda_unavailable_reason() -> str | None:
    """One line saying why CUDA cannot be used, or None when it can."""
    _load_cupy()
    return _cupy_error


def check_device(device: str | None) -> str:
    """Normalise a device name ('cpu', 'cuda', 'cuda:0'); None means the default device."""
    if device is None:
        return default_device()
    name = str(device).split(":")[0].lower()
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: use 'cpu' or 'cuda'")
    if name == "cuda" and not cuda_available():
        raise RuntimeError(f"device 'cuda' was asked for but {_cupy_error}; "
                           "use --device cpu or MINIGAN_DEVICE=cpu")
    return name


def default_device() -> str:
    """The device named by MINIGAN_DEVICE (cpu when unset)."""
    return check_device(os.environ.get("MINIGAN_DEVICE", "cpu") or "cpu")


def is_cuda_array(a) -> bool:
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def device_of(a) -> str:
    """'cuda' for a cupy array, 'cpu' otherwise."""
    return "cuda" if is_cuda_array(a) else "cpu"


def array_module(a):
    """numpy or cupy, whichever owns the array `a`."""
    return _cupy if is_cuda_array(a) else np


def xp_for(device: str):
    """The array module for a device name."""
    return _load_cupy() if check_device(device) == "cuda" else np


def to_device(a, device: str):
    """Return `a` as an array on `device` (no copy when it is already there)."""
    device = check_device(device)
    if device == "cuda":
        return _cupy.asarray(a)
    if is_cuda_array(a):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def to_numpy(a) -> np.ndarray:
    """A host NumPy array for `a` (a copy when `a` lives on the GPU)."""
    return _cupy.asnumpy(a) if is_cuda_array(a) else np.asarray(a)


def current_stream_ptr() -> int:
    """The handle of CuPy's current CUDA stream (0 is the legacy default stream).

    CUDA kernels launch on it, so they are ordered with the CuPy work around them.
    """
    return _cupy.cuda.get_current_stream().ptr


def scatter_add(out, index, values) -> None:
    """out[index] += values, with repeated indices summed (np.add.at / cupyx.scatter_add)."""
    if is_cuda_array(out):
        import cupyx

        cupyx.scatter_add(out, _device_index(index), values)
    else:
        np.add.at(out, index, values)


def _device_index(index):
    """An index for a cupy array: host index arrays (and lists) become device arrays."""
    if isinstance(index, tuple):
        return tuple(_device_index(i) for i in index)
    if isinstance(index, (list, np.ndarray)):
        return _cupy.asarray(index)
    return index


def synchronize(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU); benchmarks call it."""
    if device == "cuda":
        _cupy.cuda.get_current_stream().synchronize()


class _RNG:
    """The framework's random state.

    One NumPy generator draws everything on the host; arrays for the GPU are drawn from a cupy
    generator seeded from it. Dropout masks come from a counter-based hash of a 64-bit key drawn
    here, so the same seed gives the same mask on both devices.
    """

    def __init__(self, seed: int | None = None):
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        self.initial_seed = seed
        self.gen = np.random.Generator(np.random.PCG64(seed))
        self._cuda_gen = None

    def _cuda(self):
        if self._cuda_gen is None:
            self._cuda_gen = _cupy.random.default_rng(int(self.gen.integers(2**63)))
        return self._cuda_gen

    def randn(self, shape, dtype, device):
        if device == "cuda":
            return self._cuda().standard_normal(shape, dtype=dtype)
        dt = np.dtype(dtype)
        native = dt if dt in (np.float32, np.float64) else np.float64
        return self.gen.standard_normal(shape, dtype=native).astype(dt, copy=False)

    def rand(self, shape, dtype, device):
        if device == "cuda":
            return self._cuda().random(shape, dtype=dtype)
        return self.gen.random(shape, dtype=np.float64).astype(dtype, copy=False)

    def uniform(self, low, high, shape, dtype, device):
        return low + (high - low) * self.rand(shape, dtype, device)

    def key(self) -> int:
        """A fresh 63-bit key for counter-based kernels (dropout)."""
        return int(self.gen.integers(2**63))

    def get_state(self) -> dict:
        state = {"numpy": self.gen.bit_generator.state}
        if self._cuda_gen is not None:
            state["cuda_note"] = "cupy generator is reseeded from the host generator on resume"
        return state

    def set_state(self, state: dict) -> None:
        self.gen.bit_generator.state = state["numpy"]
        self._cuda_gen = None


rng = _RNG(None)


def manual_seed(seed: int) -> None:
    """Seed every random draw minigan makes (parameters, noise, dropout, shuffling)."""
    rng.seed(int(seed))
