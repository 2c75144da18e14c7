"""A generator as the list of inference steps every exit writes: its Sequential flattened, each
layer with the shapes it maps between, Dropout gone, BatchNorm with its calibrated statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import nn, no_grad
from ..autograd import Tensor
from ..gan.sampling import calibrate

# layer type -> the step kind that every exit knows how to write
RULES: dict[type, str] = {
    nn.Linear: "linear",
    nn.Conv2d: "conv2d",
    nn.ConvTranspose2d: "conv_transpose2d",
    nn.BatchNorm1d: "batch_norm",
    nn.BatchNorm2d: "batch_norm",
    nn.LeakyReLU: "leaky_relu",
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Flatten: "reshape",
    nn.Unflatten: "reshape",
    nn.Upsample: "upsample",
    nn.Dropout: "identity",          # inference: dropout is off
}


class ExportError(ValueError):
    """The generator, or the tools at hand, cannot be exported; the message says what to do."""


@dataclass
class Step:
    """One layer in inference form: `name` is its state-dict prefix ('4' for '4.weight')."""

    kind: str
    name: str
    module: nn.Module
    in_shape: tuple[int, ...]        # per sample, without the batch axis
    out_shape: tuple[int, ...]

    def array(self, key: str) -> np.ndarray | None:
        """The layer's parameter or buffer `key` ('weight', 'running_mean', ...) as float32."""
        m = self.module
        a = m._parameters.get(key, m._buffers.get(key))
        if a is None:
            return None
        return np.ascontiguousarray(getattr(a, "data", a), np.float32)   # G is on the CPU


def _leaves(module: nn.Module, prefix: str = ""):
    """(state-dict prefix, layer) in the order a Sequential runs them, nested ones included."""
    if isinstance(module, nn.Sequential):
        for name, child in module._modules.items():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, module


def steps(G: nn.Module, z_dim: int) -> list[Step]:
    """G's layers as inference steps, shapes traced on a batch of two; raises ExportError for a
    layer no exit can write. G must be in eval mode with the statistics it should keep."""
    known = ", ".join(sorted({t.__name__ for t in RULES}))
    out: list[Step] = []
    leaves = list(_leaves(G))
    for name, m in leaves:
        kind = RULES.get(type(m))
        where = f"layer {name!r} ({type(m).__name__})" if name else f"the generator ({m!r})"
        if kind is None:
            raise ExportError(
                f"{where} has no export rule: minigan exports Sequential generators made of "
                f"{known}. Rebuild the generator from those layers, or add a rule for "
                f"{type(m).__name__} to minigan/export (graph.py, onnx.py and web/generator.js)")
        if kind == "batch_norm" and not m.track_running_stats:
            raise ExportError(f"{where} keeps no running statistics (track_running_stats="
                              "False), so it normalises with each batch's own: there is no "
                              "inference form to export; train with track_running_stats=True")
    x = Tensor(np.zeros((2, z_dim), np.float32))
    with no_grad():
        for name, m in leaves:
            y = m(x)
            if y.shape[0] != x.shape[0]:
                raise ExportError(f"layer {name!r} ({m!r}) changes the batch axis "
                                  f"({tuple(x.shape)} -> {tuple(y.shape)}); exports keep the "
                                  "batch axis free, so it must stay first and untouched")
            kind = RULES[type(m)]
            if kind != "identity":
                out.append(Step(kind, name, m, tuple(x.shape[1:]), tuple(y.shape[1:])))
            x = y
    if not out:
        raise ExportError("the generator has no layers to export (an empty Sequential, or "
                          "only Dropout)")
    return out


def inference_steps(G: nn.Module, z_dim: int, batch_size: int, seed: int = 0,
                    calibration_batches: int | None = None) -> list[Step]:
    """Calibrate G's BatchNorm statistics as `minigan sample --seed SEED` does, on the CPU,
    leave G in eval mode, and return its inference steps."""
    G.to("cpu")
    calibrate(G, z_dim, batch_size, calibration_batches, seed)
    return steps(G, z_dim)
