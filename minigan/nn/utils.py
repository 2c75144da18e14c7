"""Weight reparametrisations (as torch.nn.utils): spectral normalisation.

`spectral_norm(module)` divides a layer's weight by an estimate of its largest singular value
before every forward call (Miyato et al. 2018, "Spectral Normalization for GANs"), so that the
layer is at most 1-Lipschitz. As in PyTorch's hook-based version, the module then holds
`weight_orig` (the trained Parameter) and buffers `weight_u`, `weight_v` (the power iteration's
vectors), and `weight` is recomputed by a forward-pre hook:

    W_mat = weight_orig reshaped to (shape[dim], -1)
    in training mode, n_power_iterations times:  v = normalize(W_mat^T u);  u = normalize(W_mat v)
    sigma = u . (W_mat v)          # u and v are constants: the gradient flows through W_mat only
    weight = weight_orig / sigma

In eval mode the stored u and v are used as they are, so sampling does not move them.
"""

from __future__ import annotations

from .. import backend
from ..autograd import Tensor, no_grad
from ..functional import math as M
from .layers import ConvTranspose2d
from .module import Module, Parameter


def _normalize(x, eps: float):
    xp = backend.array_module(x)
    return x / xp.maximum(xp.sqrt((x * x).sum()), eps)


class SpectralNorm:
    """The forward-pre hook that `spectral_norm` installs (as torch.nn.utils.spectral_norm's)."""

    def __init__(self, name: str, n_power_iterations: int, dim: int, eps: float):
        if n_power_iterations < 1:
            raise ValueError(f"spectral_norm: n_power_iterations must be at least 1, got "
                             f"{n_power_iterations}")
        self.name, self.n_power_iterations, self.dim, self.eps = (name, n_power_iterations, dim,
                                                                  eps)

    def _matrix(self, w: Tensor) -> Tensor:
        """The weight as (shape[dim], rest): dim moved to the front, the rest flattened."""
        if self.dim != 0:
            w = M.transpose(w, (self.dim, *(d for d in range(w.ndim) if d != self.dim)))
        return M.reshape(w, (w.shape[0], -1))

    def power_iteration(self, module: Module) -> None:
        """Move `weight_u` and `weight_v` towards the top singular pair, in place."""
        w = self._matrix(getattr(module, self.name + "_orig")).data
        u, v = module._buffers[self.name + "_u"], module._buffers[self.name + "_v"]
        for _ in range(self.n_power_iterations):
            v[...] = _normalize(w.T @ u, self.eps)
            u[...] = _normalize(w @ v, self.eps)

    def compute_weight(self, module: Module) -> Tensor:
        weight = getattr(module, self.name + "_orig")
        u, v = module._buffers[self.name + "_u"], module._buffers[self.name + "_v"]
        wv = M.matmul(self._matrix(weight), Tensor(v.reshape(-1, 1), requires_grad=False))
        sigma = M.sum(Tensor(u.reshape(-1, 1), requires_grad=False) * wv)
        return weight / sigma

    def __call__(self, module: Module, inputs) -> None:
        if module.training:
            with no_grad():
                self.power_iteration(module)
        object.__setattr__(module, self.name, self.compute_weight(module))


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: int | None = None) -> Module:
    """Spectrally normalise `module.<name>` (torch.nn.utils.spectral_norm); returns the module.

    `dim` is the output dimension: 0, or 1 for ConvTranspose2d, whose weight is
    (in_channels, out_channels, kH, kW).
    """
    if module._hooks is not None and any(isinstance(h, SpectralNorm) and h.name == name
                                         for h in module._hooks["forward_pre"].values()):
        raise RuntimeError(f"spectral_norm: {name!r} of {type(module).__name__} is already "
                           f"spectrally normalised")
    weight = module._parameters.get(name)
    if not isinstance(weight, Parameter):
        raise ValueError(f"spectral_norm: {type(module).__name__} has no parameter {name!r} "
                         f"(its parameters: {list(module._parameters)})")
    if weight.ndim < 2:
        raise ValueError(f"spectral_norm: {name!r} has shape {tuple(weight.shape)}; it needs at "
                         f"least 2 dims (a Linear's or a convolution's weight)")
    if dim is None:
        dim = 1 if isinstance(module, ConvTranspose2d) else 0
    fn = SpectralNorm(name, n_power_iterations, dim, eps)
    with no_grad():
        w = fn._matrix(weight)
    rng = backend.rng
    u = _normalize(rng.randn((w.shape[0],), weight.dtype, weight.device), eps)
    v = _normalize(rng.randn((w.shape[1],), weight.dtype, weight.device), eps)
    del module._parameters[name]
    setattr(module, name + "_orig", weight)
    module.register_buffer(name + "_u", u)
    module.register_buffer(name + "_v", v)
    object.__setattr__(module, name, weight.data)      # a plain array until the first call
    fn.handle = module.register_forward_pre_hook(fn)
    return module


def remove_spectral_norm(module: Module, name: str = "weight") -> Module:
    """Undo `spectral_norm`: `name` becomes a Parameter again holding the normalised weight."""
    hooks = module._hooks["forward_pre"] if module._hooks is not None else {}
    for fn in list(hooks.values()):
        if isinstance(fn, SpectralNorm) and fn.name == name:
            fn.handle.remove()
            with no_grad():
                weight = fn.compute_weight(module).data
            del module._parameters[name + "_orig"]
            del module._buffers[name + "_u"], module._buffers[name + "_v"]
            module.__dict__.pop(name, None)
            setattr(module, name, Parameter(weight))
            return module
    raise ValueError(f"remove_spectral_norm: {name!r} of {type(module).__name__} is not "
                     f"spectrally normalised")
