"""The autograd engine: Tensor, Function, and reverse-mode differentiation.

A Function's `forward` works on raw arrays; its `backward` works on Tensors and is itself made
of Functions, so gradients of gradients come from the same machinery (`create_graph=True`).
"""

from __future__ import annotations

import contextlib
import itertools
import weakref

import numpy as np

from . import backend

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Run a block without recording a graph (inference, optimizer steps)."""
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = old


@contextlib.contextmanager
def enable_grad(enabled: bool = True):
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, enabled
    try:
        yield
    finally:
        _grad_enabled = old


def is_grad_enabled() -> bool:
    return _grad_enabled


class Tensor:
    """An array with an optional gradient and a link to the Function that made it."""

    __slots__ = ("data", "requires_grad", "grad", "creator", "_index", "_hooks", "__weakref__")
    __array_priority__ = 1000  # so that ndarray * Tensor defers to Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False):
        self.data = data
        self.requires_grad = requires_grad
        self.grad: Tensor | None = None
        self.creator: Function | None = None
        self._index = 0
        self._hooks = None                 # a leaf's gradient hooks: {0: {id: fn}}

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({backend.to_numpy(self.data)!r}, device={self.device!r}{grad})"

    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data."""
        return np.array(backend.to_numpy(self.data))

    def item(self) -> float:
        return backend.to_numpy(self.data).item()

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        self.requires_grad = flag
        return self

    def to(self, device: str) -> Tensor:
        if backend.check_device(device) == self.device:
            return self
        return Tensor(backend.to_device(self.data, device), self.requires_grad)

    def register_hook(self, fn) -> RemovableHandle:
        """Call fn(grad) whenever this tensor's gradient is computed (before a leaf's `.grad`
        accumulates it); a Tensor it returns replaces the gradient, as in PyTorch."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        owner = self if self.creator is None else self.creator  # a non-leaf's live on its maker
        if owner._hooks is None:
            owner._hooks = {}
        return RemovableHandle(owner._hooks.setdefault(self._index, {}), fn)

    def backward(self, grad=None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad`."""
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output, got "
                                   f"shape {self.shape}; pass grad= of the same shape")
            grad = Tensor(self.data.dtype.type(1) + 0 * self.data)
        _backprop([self], [as_tensor(grad, like=self)], None, retain_graph or create_graph,
                  create_graph)


class RemovableHandle:
    """Holds one hook in its table; `remove()` (or leaving a `with` block) takes it out."""

    _ids = itertools.count()

    def __init__(self, table: dict, fn):
        self.table, self.id = table, next(RemovableHandle._ids)
        table[self.id] = fn

    def remove(self) -> None:
        self.table.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _run_hooks(hooks: dict, g: Tensor) -> Tensor:
    for fn in list(hooks.values()):
        out = fn(g)
        if out is not None:
            g = as_tensor(out)
    return g


def _hooked(t: Tensor, g: Tensor) -> Tensor:
    """g after the gradient hooks registered on t (if any)."""
    owner = t if t.creator is None else t.creator
    hooks = owner._hooks and owner._hooks.get(t._index)
    return _run_hooks(hooks, g) if hooks else g


class Function:
    """A differentiable operation. Subclasses define forward(*arrays) and backward(*grads)."""

    inputs: tuple[Tensor, ...] | None = None
    retain_outputs = False
    _hooks: dict | None = None           # gradient hooks of its outputs: {index: {id: fn}}

    def __call__(self, *inputs):
        xs = inputs
        if not all(isinstance(x, Tensor) for x in inputs):  # wrap arrays and numbers once
            like = _first_tensor(inputs)
            xs = tuple(as_tensor(x, like=like) for x in inputs)
        if len(xs) > 1 and any(type(x.data) is not np.ndarray for x in xs):
            _check_same_device(self, xs)                    # all NumPy: all on the CPU
        ys = self.forward(*[x.data for x in xs])
        multi = type(ys) is tuple
        outs = tuple(map(Tensor, ys)) if multi else (Tensor(ys),)
        needs = [x.requires_grad for x in xs]
        if _grad_enabled and True in needs:
            self.inputs = xs
            self.needs_input_grad = tuple(needs)
            self.outputs = tuple(map(weakref.ref, outs))
            xp = np if type(outs[0].data) is np.ndarray else backend.array_module(outs[0].data)
            self.out_meta = tuple((y.data.shape, y.data.dtype, xp) for y in outs)
            if self.retain_outputs:
                self.saved_outputs = tuple(y.data for y in outs)
            for i, y in enumerate(outs):
                y.requires_grad, y.creator, y._index = True, self, i
        return outs if multi else outs[0]

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

    def output(self, i: int = 0) -> Tensor:
        """Output i as a graph Tensor, for backward formulas written in terms of outputs.

        Outputs are held weakly (a strong link would make a reference cycle); a Function that
        uses them sets `retain_outputs = True` so a dropped one can be rebuilt from its data.
        """
        y = self.outputs[i]()
        if y is None:
            y = Tensor(self.saved_outputs[i], requires_grad=True)
            y.creator, y._index = self, i
            self.outputs = self.outputs[:i] + (weakref.ref(y),) + self.outputs[i + 1:]
        return y

    def release(self) -> None:
        """Drop references to the graph once backward is done (frees activations)."""
        self.inputs = None
        self.__dict__.pop("saved", None)
        self.__dict__.pop("saved_outputs", None)


def _first_tensor(items):
    return next((x for x in items if isinstance(x, Tensor)), None)


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Wrap arrays and Python numbers as constant Tensors (numbers take `like`'s dtype)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and np.isscalar(x):
        xp = backend.array_module(like.data)
        return Tensor(xp.full((), x, dtype=like.dtype))  # filled on the device: no host copy
    return Tensor(x if hasattr(x, "dtype") and hasattr(x, "shape") else np.asarray(x))


def _check_same_device(fn, xs) -> None:
    devices = {x.device for x in xs}
    if len(devices) > 1:
        got = ", ".join(f"{x.device} {tuple(x.shape)}" for x in xs)
        raise RuntimeError(f"{type(fn).__name__}: inputs are on different devices ({got}); "
                           "move them with .to(device) first")


def _toposort(roots: list[Function], stop=frozenset()) -> list[Function]:
    """Functions ordered so that each comes before the Functions that made its inputs.

    The search does not go past tensors whose key is in `stop`.
    """
    order, seen, stack = [], set(), [(f, False) for f in roots]
    while stack:  # iterative DFS: deep graphs must not hit the recursion limit
        f, done = stack.pop()
        if done:
            order.append(f)
            continue
        if id(f) in seen:
            continue
        seen.add(id(f))
        stack.append((f, True))
        if f.inputs is None:
            raise RuntimeError("trying to backward through the graph a second time, but its "
                               "buffers were freed: pass retain_graph=True the first time")
        stack.extend((x.creator, False) for x in f.inputs
                     if x.creator is not None and id(x.creator) not in seen
                     and _key(x) not in stop)
    return order[::-1]


def _key(t: Tensor):
    return (id(t.creator), t._index) if t.creator is not None else id(t)


def _accumulate(grads: dict, key, g: Tensor) -> None:
    grads[key] = g if key not in grads else grads[key] + g


def _backprop(outputs, grad_outputs, inputs, retain_graph, create_graph, partial=False):
    """Reverse sweep. With `inputs` None, leaf grads go to `.grad`; else they are returned."""
    grads: dict = {}
    for y, g in zip(outputs, grad_outputs):
        if not y.requires_grad:
            raise RuntimeError("this tensor does not require grad and has no graph: did it come "
                               "from a no_grad() block or from constants only?")
        if g.shape != y.shape:
            raise ValueError(f"grad shape {g.shape} does not match output shape {y.shape}")
        _accumulate(grads, _key(y), g)
    wanted = None if inputs is None else {_key(x) for x in inputs}
    captured, leaves = {}, {id(y): y for y in outputs if y.creator is None}
    with enable_grad(create_graph):
        stop = wanted if partial else frozenset()
        for f in _toposort([y.creator for y in outputs if y.creator is not None], stop):
            gys = [grads.pop((id(f), i), None) for i in range(len(f.out_meta))]
            if f._hooks:
                gys = [g if g is None or not f._hooks.get(i) else _run_hooks(f._hooks[i], g)
                       for i, g in enumerate(gys)]
            for i, g in enumerate(gys):
                if wanted is not None and (id(f), i) in wanted and g is not None:
                    captured[(id(f), i)] = g
            if all(g is None for g in gys):
                continue
            gys = [g if g is not None else _zeros(f, i) for i, g in enumerate(gys)]
            gxs = f.backward(*gys)
            gxs = gxs if isinstance(gxs, tuple) else (gxs,)
            for x, need, gx in zip(f.inputs, f.needs_input_grad, gxs):
                if need and gx is not None:
                    if gx.shape != x.shape:
                        raise RuntimeError(f"{type(f).__name__}.backward returned a gradient of "
                                           f"shape {gx.shape} for an input of shape {x.shape}")
                    _accumulate(grads, _key(x), as_tensor(gx))
                    if x.creator is None:
                        leaves[id(x)] = x
            if not retain_graph:
                f.release()
        if wanted is not None:              # leaves, and inputs the sweep stopped at
            rest = {_key(x): x for x in inputs if _key(x) in grads}
            captured.update((k, _hooked(x, grads[k])) for k, x in rest.items())
            return captured
        for key, leaf in leaves.items():
            g = grads.get(key)
            if g is None:
                continue
            if leaf._hooks:
                g = _hooked(leaf, g)
            if not create_graph:
                g = Tensor(g.data)
            leaf.grad = g if leaf.grad is None else (
                leaf.grad + g if create_graph else Tensor(leaf.grad.data + g.data))
    return None


def _zeros(f: Function, i: int) -> Tensor:
    shape, dtype, xp = f.out_meta[i]
    return Tensor(xp.zeros(shape, dtype))


def grad(outputs, inputs, grad_outputs=None, create_graph: bool = False,
         retain_graph: bool | None = None, allow_unused: bool = False, _partial: bool = False):
    """Gradients of `outputs` with respect to `inputs`, as torch.autograd.grad.

    `_partial=True` (internal) treats the inputs as independent: the sweep stops at them.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or hasattr(grad_outputs, "shape"):
        grad_outputs = [grad_outputs]
    gos = []
    for y, g in zip(outputs, grad_outputs):
        if g is None:
            if y.size != 1:
                raise RuntimeError(f"grad of a non-scalar output of shape {y.shape} needs "
                                   "grad_outputs")
            g = Tensor(y.data.dtype.type(1) + 0 * y.data)
        gos.append(as_tensor(g, like=y))
    retain = create_graph if retain_graph is None else retain_graph
    captured = _backprop(outputs, gos, inputs, retain, create_graph, _partial)
    result = []
    for x in inputs:
        g = captured.get(_key(x))
        if g is None and not allow_unused:
            raise RuntimeError(f"one of the inputs (shape {x.shape}) was not used to compute the "
                               "outputs; pass allow_unused=True to get None for it")
        result.append(g)
    return result
