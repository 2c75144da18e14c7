"""Choose a kernel by the device of the first array argument."""

from __future__ import annotations

from functools import wraps

import numba
import numpy as np

from minigan import backend

# Below this many elements a CPU kernel runs on the calling thread alone: waking the thread
# pool costs ~10 us on an idle machine and milliseconds on a busy one, more than it saves.
PARALLEL_MIN_SIZE = 1 << 15


def contiguous(z, *others):
    """z and others as C-contiguous arrays (NumPy or CuPy, as z) of z's dtype and shape: what
    the kernels index flat. A 0-d array stays 0-d (ascontiguousarray alone makes it 1-d)."""
    xp = backend.array_module(z)
    z = xp.ascontiguousarray(z).reshape(z.shape)
    return (z,) + tuple(xp.ascontiguousarray(a, dtype=z.dtype).reshape(z.shape) for a in others)


def _one_thread(impl, args, kwargs):
    old = numba.get_num_threads()  # thread-local in numba: other Python threads keep theirs
    if old == 1:                   # already alone: two calls into numba saved per kernel
        return impl(*args, **kwargs)
    numba.set_num_threads(1)
    try:
        return impl(*args, **kwargs)
    finally:
        numba.set_num_threads(old)


def on_device(cpu_impl):
    """Decorate the CPU implementation; attach a CUDA twin later with `.cuda`.

    >>> @on_device
    ... def relu(x): ...
    >>> @relu.cuda
    ... def _(x): ...
    """
    impls = {"cpu": cpu_impl}

    @wraps(cpu_impl)
    def call(*args, **kwargs):
        device = backend.device_of(args[0])
        impl = impls.get(device)
        if impl is None:
            raise NotImplementedError(f"{cpu_impl.__name__} has no {device} kernel")
        if device == "cpu" and max((a.size for a in args if isinstance(a, np.ndarray)),
                                   default=0) < PARALLEL_MIN_SIZE:
            return _one_thread(impl, args, kwargs)
        return impl(*args, **kwargs)

    def register_cuda(fn):
        impls["cuda"] = fn
        return fn

    call.cuda = register_cuda
    call.impls = impls
    return call
