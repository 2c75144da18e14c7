"""Optimizers (PyTorch semantics); each parameter is updated by one fused kernel pass.
Also weight averaging as torch.optim.swa_utils has it: AveragedModel, get_ema_multi_avg_fn
(with ema_decay's rampup for young averages)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from .. import backend
from ..kernels import optim as K
from ..nn.module import Module, Parameter
from . import lr_scheduler  # noqa: F401  (minigan.optim.lr_scheduler, as torch's)


class Optimizer:
    """Holds the parameters, per-parameter state, and the hyper-parameters in `defaults`."""

    state_keys: tuple[str, ...] = ()

    def __init__(self, params, **defaults):
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for k, v in defaults.items():
            if isinstance(v, (int, float)) and v < 0:
                raise ValueError(f"{type(self).__name__}: {k} must be >= 0, got {v}")
        self.defaults = defaults
        self.step_count = 0
        self.param_steps = [0] * len(self.params)  # steps each parameter took (PyTorch's 'step')
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def _buffers(self, i: int, p: Parameter) -> list:
        st = self.state[i]
        xp = backend.array_module(p.data)
        for k in self.state_keys:
            if k not in st or st[k].shape != p.shape:
                st[k] = xp.zeros_like(p.data)
        return [st[k] for k in self.state_keys]

    def step(self) -> None:
        self.step_count += 1
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if not p.data.flags.c_contiguous:
                raise ValueError(f"{type(self).__name__}: parameter {i} is not contiguous")
            self.param_steps[i] += 1
            self._update(p.data, p.grad.data, *self._buffers(i, p), t=self.param_steps[i])

    def _update(self, p, g, *buffers, t: int) -> None:
        """Update one parameter in place; t counts the steps in which it had a gradient."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyper-parameters, step count and host copies of every state array."""
        return {"defaults": dict(self.defaults), "step_count": self.step_count,
                "param_steps": list(self.param_steps),
                "state": [{k: backend.to_numpy(v).copy() for k, v in st.items()}
                          for st in self.state]}

    def load_state_dict(self, sd: dict) -> None:
        if len(sd["state"]) != len(self.params):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state has "
                             f"{len(sd['state'])} parameters, this optimizer {len(self.params)}")
        self.defaults.update(sd["defaults"])
        self.step_count = int(sd["step_count"])
        self.param_steps = [int(k) for k in sd.get("param_steps",
                                                   [self.step_count] * len(self.params))]
        for i, (p, st) in enumerate(zip(self.params, sd["state"])):
            for k, v in st.items():
                if tuple(v.shape) != tuple(p.shape):
                    raise ValueError(f"{type(self).__name__}.load_state_dict: state {k!r} of "
                                     f"parameter {i} has shape {v.shape}, parameter {p.shape}")
            self.state[i] = {k: backend.to_device(np.asarray(v, p.dtype), p.device).copy()
                             for k, v in st.items()}

    @property
    def lr(self) -> float:
        return self.defaults["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.defaults["lr"] = value


class SGD(Optimizer):
    state_keys = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _update(self, p, g, buf, t):
        d = self.defaults
        K.sgd_update(p, g, buf, d["lr"], d["momentum"], d["dampening"], d["weight_decay"],
                     d["nesterov"], t == 1)


class Adam(Optimizer):
    state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, p, g, m, v, t):
        d = self.defaults
        b1, b2 = d["betas"]
        K.adam_update(p, g, m, v, d["lr"], b1, b2, d["eps"], d["weight_decay"], 1 - b1 ** t,
                      1 - b2 ** t)


class RMSprop(Optimizer):
    """RMSprop; `decay` is Keras's time decay: lr_t = lr / (1 + decay * iterations)."""

    state_keys = ("square_avg",)

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, decay: float = 0.0):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         decay=decay)

    def current_lr(self) -> float:
        d = self.defaults
        return d["lr"] / (1.0 + d["decay"] * (self.step_count - 1))

    def _update(self, p, g, sq, t):
        d = self.defaults
        K.rmsprop_update(p, g, sq, self.current_lr(), d["alpha"], d["eps"], d["weight_decay"])


def ema_decay(decay: float, num_averaged: int, rampup: float | None = None) -> float:
    """The decay of the moving average's update after `num_averaged` earlier ones: `decay`, or
    with `rampup` at most the decay whose half-life is that fraction of the updates so far,
    min(decay, 0.5 ** (1 / (rampup * (num_averaged + 1)))) (StyleGAN2-ADA's `ema_rampup`,
    Karras et al. 2020): a young average then follows the model instead of holding its first
    weights, and reaches `decay` once rampup * updates is its half-life (ln 0.5 / ln decay)."""
    if not rampup:
        return decay
    return min(decay, 0.5 ** (1.0 / (rampup * (num_averaged + 1))))


def get_ema_multi_avg_fn(decay: float = 0.999, rampup: float | None = None) -> Callable:
    """The exponential moving average as AveragedModel's `multi_avg_fn`:
    averaged <- d * averaged + (1 - d) * current, for every array at once, d = `decay`; with
    `rampup` (not in PyTorch) d = ema_decay(decay, n_averaged, rampup), a half-life at most
    that fraction of the updates so far."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    if rampup is not None and not rampup > 0:
        raise ValueError(f"EMA rampup must be a fraction > 0 of the updates so far (e.g. 0.25), "
                         f"or None for a constant decay; got {rampup}")

    def ema_update(averaged: list, current: list, num_averaged) -> None:
        d = ema_decay(decay, int(num_averaged), rampup)
        for a, c in zip(averaged, current):
            a += (1.0 - d) * (c - a)          # lerp towards the current weights, in place

    return ema_update


class AveragedModel(Module):
    """A copy of `model` whose weights are a running average of the model's
    (torch.optim.swa_utils.AveragedModel): call `update_parameters(model)` after each step.

    The first update copies the weights; later ones apply `multi_avg_fn(averaged, current,
    n_averaged)` (e.g. `get_ema_multi_avg_fn(0.999)`), or the equal-weight running mean (SWA)
    when none is given. With `use_buffers` the buffers (BatchNorm's running statistics) are
    averaged too; otherwise they are copied from the model.
    """

    def __init__(self, model: Module, multi_avg_fn: Callable | None = None,
                 use_buffers: bool = False):
        super().__init__()
        self.module = copy.deepcopy(model)
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers
        self.register_buffer("n_averaged", np.zeros((), np.int64))

    def forward(self, *args):
        return self.module(*args)

    def _arrays(self, model: Module) -> tuple[list, list]:
        """(arrays to average, buffers to copy): integer buffers (counters) are always copied."""
        averaged = [p.data for p in model.parameters()]
        copied = []
        for _, b in model.named_buffers():
            floating = np.issubdtype(b.dtype, np.floating)
            (averaged if self.use_buffers and floating else copied).append(b)
        return averaged, copied

    def update_parameters(self, model: Module) -> None:
        (mine, my_copies), (theirs, their_copies) = self._arrays(self.module), self._arrays(model)
        if len(mine) != len(theirs) or len(my_copies) != len(their_copies):
            raise ValueError(f"AveragedModel.update_parameters: the model has {len(theirs)} "
                             f"arrays to average, the average {len(mine)}; pass the model "
                             "this average was made from")
        n = int(self.n_averaged)
        if n == 0:
            for a, c in zip(mine, theirs):
                a[...] = c
        elif self.multi_avg_fn is not None:
            self.multi_avg_fn(mine, theirs, n)
        else:
            for a, c in zip(mine, theirs):
                a += (c - a) / (n + 1)        # the running mean of all updates (SWA)
        for a, c in zip(my_copies, their_copies):
            a[...] = c
        self.n_averaged = np.asarray(n + 1, np.int64)

