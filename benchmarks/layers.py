"""Time every layer of a benchmark model alone, forward and backward, beside its PyTorch twin.

Where `step.py` says how a whole training step compares, this says which layers make the
difference. Each layer of G and D (the Sequential models of step.py: tf, dcgan64) gets the input
it sees in a forward pass of the model at this batch size; one timed call is the layer's forward
and the backward of a fixed random output gradient into its input and weights, as in training.
minigan's input is in the memory layout the previous layer hands on (batch-last after a
convolution), PyTorch's is contiguous. The two frameworks alternate in blocks after a warm-up,
as in step.py; medians of --steps calls each.

    python benchmarks/layers.py --model dcgan64 --batch 64
    python benchmarks/layers.py --model tf --batch 256 --steps 15
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from step import BATCHES, Z_DIM, _torch_module, alternate, build

import minigan


def _flops(layer, x_shape, y_shape) -> float:
    """Multiply-adds x 2 of a convolution or linear layer, forward and both gradients (3x)."""
    name = type(layer).__name__
    if name == "Conv2d":
        k = layer.in_channels * np.prod(layer.kernel_size)
        return 3 * 2.0 * np.prod(y_shape) * k
    if name == "ConvTranspose2d":
        k = layer.out_channels * np.prod(layer.kernel_size)
        return 3 * 2.0 * np.prod(x_shape) * k
    if name == "Linear":
        return 3 * 2.0 * x_shape[0] * layer.in_features * layer.out_features
    return 0.0


def inputs(net, x):
    """The input each layer of a Sequential sees for input x (minigan Tensors, as laid out)."""
    seen = []
    with minigan.no_grad():
        for layer in net:
            seen.append(x)
            x = layer(x)
    return seen


def minigan_call(layer, x, gy):
    xt = minigan.tensor(x.data, requires_grad=True)

    def call():
        y = layer(xt)
        y.backward(gy)
        layer.zero_grad()
        xt.grad = None
    return call


def torch_call(layer, x, gy):
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x.data)).requires_grad_(True)
    gt = torch.from_numpy(np.ascontiguousarray(gy))

    def call():
        y = layer(xt)
        y.backward(gt)
        layer.zero_grad(set_to_none=True)
        xt.grad = None
    return call


def compare(model: str, batch: int, steps: int, block: int = 3):
    G, D, shape = build(model)
    tG, tD = _torch_module(G), _torch_module(D)
    z = minigan.randn(batch, Z_DIM)
    with minigan.no_grad():
        fake = G(z)
    rows = []
    for tag, net, tnet, x0 in (("G", G, tG, z), ("D", D, tD, fake)):
        net.train()
        tnet.train()
        for i, (layer, tlayer, x) in enumerate(zip(net, tnet, inputs(net, x0))):
            with minigan.no_grad():
                y = layer(x)
            # the output gradient in the output's memory layout, as backpropagation hands it on
            gy = np.empty_like(y.data)
            gy[...] = np.random.default_rng(i).standard_normal(y.shape)
            fns = {"minigan": minigan_call(layer, x, gy), "torch": torch_call(tlayer, x, gy)}
            times = alternate(fns, steps, 1, block)
            m, t = (statistics.median(times[k]) for k in ("minigan", "torch"))
            rows.append((f"{tag}{i} {type(layer).__name__}", tuple(x.shape), tuple(y.shape),
                         _flops(layer, x.shape, y.shape), m, t))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dcgan64", choices=["tf", "doodles", "dcgan64"])
    p.add_argument("--batch", type=int, default=None, help="default: the model's smaller one")
    p.add_argument("--steps", type=int, default=9, help="timed calls per framework and layer")
    a = p.parse_args()
    batch = a.batch or BATCHES[a.model][0]
    rows = compare(a.model, batch, a.steps)
    print(f"{a.model}, batch {batch}: each layer's forward + backward, medians of {a.steps}")
    print(f"{'layer':24s} {'input':>20s} {'GFLOP':>6s} {'minigan ms':>10s} {'torch ms':>9s} "
          f"{'ratio':>6s} {'GFLOP/s (mg / torch)':>21s}")
    for name, xs, _, flops, m, t in rows:
        rate = (f"{flops / m / 1e9:9.0f} / {flops / t / 1e9:<9.0f}" if flops else "")
        print(f"{name:24s} {str(xs):>20s} {flops / 1e9:6.2f} {1e3 * m:10.2f} {1e3 * t:9.2f} "
              f"{m / t:6.2f} {rate}")
    tm, tt = sum(r[4] for r in rows), sum(r[5] for r in rows)
    print(f"{'all layers':24s} {'':>20s} {sum(r[3] for r in rows) / 1e9:6.2f} {1e3 * tm:10.2f} "
          f"{1e3 * tt:9.2f} {tm / tt:6.2f}")


if __name__ == "__main__":
    main()
