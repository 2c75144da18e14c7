"""Choose a kernel by the device of the first array argument."""

from __future__ import annotations

from functools import wraps

from minigan import backend


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
        return impl(*args, **kwargs)

    def register_cuda(fn):
        impls["cuda"] = fn
        return fn

    call.cuda = register_cuda
    call.impls = impls
    return call
