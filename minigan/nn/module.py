"""Module and Parameter: containers of parameters and buffers with PyTorch's naming.

Forward-pre, forward and full-backward hooks follow PyTorch's signatures; a module without
hooks pays one `is None` check per call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from .. import backend
from ..autograd import Function, RemovableHandle, Tensor, is_grad_enabled


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad)


class Module:
    """Base class: assign Parameters, Modules and buffers as attributes; define forward()."""

    _hooks: dict | None = None    # {"forward_pre" | "forward" | "backward": {id: fn}} once used

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() first")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value
            return
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for table in ("_parameters", "_modules", "_buffers"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_buffer(self, name: str, array) -> None:
        """A non-trainable array saved in the state dict (e.g. BatchNorm's running mean)."""
        self._buffers[name] = array

    def forward(self, *args):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        if self._hooks is None:
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    def _hook_table(self, kind: str) -> dict:
        if self._hooks is None:
            object.__setattr__(self, "_hooks", {"forward_pre": {}, "forward": {}, "backward": {}})
        return self._hooks[kind]

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """hook(module, args) runs before forward; a returned value (a tuple, or one value)
        replaces the positional arguments."""
        return RemovableHandle(self._hook_table("forward_pre"), hook)

    def register_forward_hook(self, hook) -> RemovableHandle:
        """hook(module, args, output) runs after forward; a returned value replaces the
        output."""
        return RemovableHandle(self._hook_table("forward"), hook)

    def register_full_backward_hook(self, hook) -> RemovableHandle:
        """hook(module, grad_input, grad_output) runs once the gradients with respect to the
        module's tensor inputs are computed (grad_input is None for inputs that need none); a
        returned tuple replaces grad_input."""
        return RemovableHandle(self._hook_table("backward"), hook)

    def _call_with_hooks(self, args: tuple, kwargs: dict):
        hooks = self._hooks
        if not (hooks["forward_pre"] or hooks["forward"] or hooks["backward"]):
            object.__setattr__(self, "_hooks", None)     # all removed: the plain path again
            return self.forward(*args, **kwargs)
        for hook in list(hooks["forward_pre"].values()):
            out = hook(self, args)
            if out is not None:
                args = out if isinstance(out, tuple) else (out,)
        state = None
        if hooks["backward"] and is_grad_enabled():
            state = _BackwardState(self)
            args = state.wrap_inputs(args)
        output = self.forward(*args, **kwargs)
        for hook in list(hooks["forward"].values()):
            out = hook(self, args, output)
            if out is not None:
                output = out
        return output if state is None else state.wrap_outputs(output)

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def children(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, object]]:
        for prefix, m in self.named_modules():
            for name, b in m._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), b

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device=None, dtype=None) -> Module:
        """Move parameters and buffers to a device and/or cast floats to a dtype, in place."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        dev = backend.check_device(device) if device is not None else None

        def fn(a):
            if dev is not None:
                a = backend.to_device(a, dev)
            if dtype is not None and a.dtype.kind == "f":
                a = a.astype(dtype)
            return a
        for m in self.modules():
            for p in m._parameters.values():
                p.data, p.grad = fn(p.data), None
            for name, b in list(m._buffers.items()):
                m._buffers[name] = fn(b)
        return self

    def double(self) -> Module:
        return self.to(dtype=np.float64)

    def float(self) -> Module:
        return self.to(dtype=np.float32)

    def state_dict(self) -> OrderedDict:
        """Host NumPy copies of every parameter and buffer, keyed as PyTorch keys them."""
        out = OrderedDict()
        for prefix, m in self.named_modules():
            for name, a in [(n, p.data) for n, p in m._parameters.items()] + \
                    list(m._buffers.items()):
                out[f"{prefix}.{name}" if prefix else name] = np.array(backend.to_numpy(a))
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the existing parameters/buffers; names and shapes must match."""
        own = dict(self.named_parameters())
        bufs = dict(self.named_buffers())
        missing = [k for k in list(own) + list(bufs) if k not in state]
        unexpected = [k for k in state if k not in own and k not in bufs]
        if strict and (missing or unexpected):
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for k, v in state.items():
            target = own[k].data if k in own else bufs.get(k)
            if target is None:
                continue
            if tuple(np.shape(v)) != tuple(target.shape):
                raise ValueError(f"{type(self).__name__}.load_state_dict: {k} has shape "
                                 f"{tuple(target.shape)} here but {tuple(np.shape(v))} in the "
                                 "state dict")
            xp = backend.array_module(target)
            target[...] = xp.asarray(backend.to_numpy(v) if xp is np else v, dtype=target.dtype)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in
                 self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")


class _BackwardState:
    """The identity nodes around one hooked call: the one after the outputs records
    grad_output; the one before the inputs calls the hooks with grad_input (as PyTorch's
    BackwardHook does). With no input that needs a gradient, the hooks run at the outputs."""

    def __init__(self, module: Module):
        self.module, self.grad_output, self.n_args, self.where = module, None, 0, []

    def wrap_inputs(self, args: tuple) -> tuple:
        self.n_args = len(args)
        self.where = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not self.where:
            return args
        outs = _Identity(self, "inputs")(*(args[i] for i in self.where))
        args = list(args)
        for i, y in zip(self.where, outs):
            args[i] = y
        return tuple(args)

    def wrap_outputs(self, output):
        single = isinstance(output, Tensor)
        outs = (output,) if single else tuple(output)
        if not any(isinstance(y, Tensor) and y.requires_grad for y in outs):
            return output
        wrapped = _Identity(self, "outputs")(*outs)
        return wrapped[0] if single else wrapped

    def call(self, grads: tuple) -> tuple:
        """Run the hooks on grad_input (one entry per positional argument) and return the
        (possibly replaced) gradients of the inputs that need one."""
        grad_input = [None] * self.n_args
        for i, g in zip(self.where, grads):
            grad_input[i] = g
        grad_input = tuple(grad_input)
        for hook in list(self.module._hooks["backward"].values()):
            out = hook(self.module, grad_input, self.grad_output)
            if out is not None:
                grad_input = tuple(out)
        return tuple(grad_input[i] for i in self.where)


class _Identity(Function):
    """Passes tensors through; its backward hands their gradients to a _BackwardState."""

    def __init__(self, state: _BackwardState, side: str):
        self.state, self.side = state, side

    def forward(self, *xs):
        return xs

    def backward(self, *gys):
        if self.side == "inputs":
            return self.state.call(gys)
        self.state.grad_output = gys
        if not self.state.where:            # no input needs a gradient: no later node
            self.state.call(())
        return gys
