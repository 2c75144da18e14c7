"""minigan: a small deep-learning framework, written from scratch, to train and study GANs."""

# _checkout first: in a source checkout it makes kernels/ importable as minigan.kernels;
# functional gives Tensor its operators; nn, optim, data as in torch (minigan.nn.Linear)
from . import _checkout, backend, data, functional, nn, optim  # noqa: F401
from .autograd import Function, Tensor, enable_grad, grad, is_grad_enabled, no_grad
from .backend import cuda_available, manual_seed
from .gradcheck import gradcheck, gradgradcheck

__version__ = "0.1.0"


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """A Tensor from a list, scalar or array; lists of Python floats become float32."""
    import numpy as np

    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "__cuda_array_interface__") or isinstance(data, np.ndarray):
        arr = data
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64 and dtype is None:
            arr = arr.astype(np.float32)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    dev = backend.check_device(device) if device is not None else backend.device_of(arr)
    arr = backend.to_device(arr, dev)
    if requires_grad and arr.dtype.kind != "f":
        raise TypeError(f"only float tensors can require gradients, got {arr.dtype}")
    return Tensor(arr, requires_grad=requires_grad)


def randn(*shape, dtype="float32", device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal noise from minigan's seeded generator."""
    shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
    dev = backend.check_device(device)
    return Tensor(backend.rng.randn(shape, dtype, dev), requires_grad=requires_grad)


def rand(*shape, dtype="float32", device=None) -> Tensor:
    """Uniform [0, 1) noise from minigan's seeded generator."""
    shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
    return Tensor(backend.rng.rand(shape, dtype, backend.check_device(device)))


__all__ = ["Function", "Tensor", "backend", "cuda_available", "data", "enable_grad",
           "functional", "grad", "gradcheck", "gradgradcheck", "is_grad_enabled", "manual_seed",
           "nn", "no_grad", "optim", "rand", "randn", "tensor"]
