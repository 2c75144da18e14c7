"""Check analytic gradients against central finite differences, in float64.

`gradcheck` compares the vector-Jacobian product v^T J for a random v with the numeric
gradient of <v, f(x)>; `gradgradcheck` runs the same check on the first-order gradient
function itself, so every second derivative is tested too.
"""

from __future__ import annotations

import numpy as np

from . import backend
from .autograd import Tensor, grad


class GradcheckError(AssertionError):
    """Raised when an analytic derivative disagrees with the numeric one."""


def _tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _projection(ys, vs):
    total = None
    for y, v in zip(ys, vs):
        if isinstance(y, Tensor) and y.requires_grad:
            term = (y * v).sum()
            total = term if total is None else total + term
    return total


def _value(fn, inputs, vs) -> float:
    ys = _tuple(fn(*inputs))  # with grad on: gradgradcheck's fn takes a gradient inside
    return float(sum(backend.to_numpy(y.data * v.data).sum() for y, v in zip(ys, vs)))


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              seed: int = 0, name: str | None = None) -> bool:
    """True if d<v, fn(*inputs)>/d(input) matches central differences for every input.

    Inputs that require grad must be float64 Tensors. Raises GradcheckError naming the input,
    the element, and the analytic and numeric values on a mismatch.
    """
    name = name or getattr(fn, "__name__", "fn")
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs")
    ys = _tuple(fn(*inputs))
    gen = np.random.default_rng(seed)
    vs = [Tensor(backend.to_device(gen.standard_normal(y.shape), y.device)) for y in ys]
    s = _projection(ys, vs)
    if s is None:
        analytic = [None] * len(checked)
    else:
        analytic = grad(s, [inputs[i] for i in checked], allow_unused=True)
    for i, ga in zip(checked, analytic):
        x = inputs[i]
        ga = np.zeros(x.shape) if ga is None else backend.to_numpy(ga.data)
        data = x.data  # perturbed in place by index: works for any strides (a reshape may copy)
        for idx in np.ndindex(*x.shape):
            old = float(data[idx])
            data[idx] = old + eps
            fp = _value(fn, inputs, vs)
            data[idx] = old - eps
            fm = _value(fn, inputs, vs)
            data[idx] = old
            num = (fp - fm) / (2 * eps)
            a = float(ga[idx])
            if not abs(a - num) <= atol + rtol * abs(num):
                raise GradcheckError(f"{name}: gradient of input {i} (shape {tuple(x.shape)}) "
                                     f"at {tuple(int(j) for j in idx)}: analytic {a:.10g} vs "
                                     f"numeric {num:.10g} (diff {abs(a - num):.3g})")
    return True


def gradgradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  seed: int = 1, name: str | None = None) -> bool:
    """gradcheck of x, v -> d<v, fn(x)>/dx, the function that backward computes."""
    name = name or getattr(fn, "__name__", "fn")
    inputs = list(inputs)
    ys = _tuple(fn(*inputs))
    gen = np.random.default_rng(seed)
    vs = [Tensor(backend.to_device(gen.standard_normal(y.shape), y.device),
                 requires_grad=True) for y in ys]
    n = len(inputs)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]

    def first_order(*args):
        xs, v = list(args[:n]), args[n:]
        s = _projection(_tuple(fn(*xs)), v)
        if s is None:
            return tuple(Tensor(xs[i].data * 0) for i in wrt)
        gs = grad(s, [xs[i] for i in wrt], create_graph=True, allow_unused=True)
        return tuple(g if g is not None else Tensor(xs[i].data * 0) for i, g in zip(wrt, gs))

    return gradcheck(first_order, inputs + vs, eps, atol, rtol, seed, name=f"{name} (2nd order)")
