"""Time one DCGAN training step (D on real and fake, then G), optionally beside PyTorch.

The model is the TensorFlow DCGAN tutorial's (minigan.gan.models.dcgan). With --compare torch
the same model is rebuilt in PyTorch from minigan's state_dict (the keys match) and the two
frameworks alternate step by step in one process after a warm-up; medians and their ratio are
printed. --memory runs each framework alone in a subprocess and reports its peak resident set.

    python benchmarks/step.py --batch 64 256 --compare torch
    python benchmarks/step.py --memory --batch 256 --compare torch
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import minigan
import minigan.functional as F
from minigan import backend, nn
from minigan.gan.models import dcgan
from minigan.optim import Adam

Z_DIM = 100


def minigan_step(batch: int, device: str):
    """A closure running one minigan training step on a fixed real batch."""
    G, D = dcgan((1, 28, 28), Z_DIM)
    G.to(device)
    D.to(device)
    opt_g = Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    xp = backend.xp_for(device)
    real = minigan.tensor(xp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, 1, 28, 28)),
                                     dtype=np.float32))
    ones, zeros = xp.ones((batch, 1), np.float32), xp.zeros((batch, 1), np.float32)

    def step():
        fake = G(minigan.randn(batch, Z_DIM, device=device))
        opt_d.zero_grad()
        loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        loss_g.backward()
        opt_g.step()
        backend.synchronize(device)

    return step, (G, D)


def _torch_module(m: nn.Module):
    """The PyTorch twin of a minigan Sequential, layer by layer."""
    import torch

    tnn = torch.nn
    layers = []
    for layer in m:
        name = type(layer).__name__
        if name == "Linear":
            t = tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        elif name == "Conv2d":
            t = tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                           layer.stride, layer.padding, bias=layer.bias is not None)
        elif name == "ConvTranspose2d":
            t = tnn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                    layer.stride, layer.padding, layer.output_padding,
                                    bias=layer.bias is not None)
        elif name in ("BatchNorm1d", "BatchNorm2d"):
            t = getattr(tnn, name)(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        elif name == "LeakyReLU":
            t = tnn.LeakyReLU(layer.negative_slope)
        elif name == "Dropout":
            t = tnn.Dropout(layer.p)
        elif name == "Unflatten":
            t = tnn.Unflatten(layer.dim, layer.sizes)
        else:
            t = getattr(tnn, name)()
        layers.append(t)
    tm = tnn.Sequential(*layers)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    return tm


def torch_step(batch: int, device: str, models):
    import torch

    dev = "cuda" if device == "cuda" else "cpu"
    G, D = (_torch_module(m).to(dev) for m in models)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    real = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (batch, 1, 28, 28))
                            .astype(np.float32)).to(dev)
    ones, zeros = torch.ones(batch, 1, device=dev), torch.zeros(batch, 1, device=dev)

    def step():
        fake = G(torch.randn(batch, Z_DIM, device=dev))
        opt_d.zero_grad()
        loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = bce(D(fake), ones)
        loss_g.backward()
        opt_g.step()
        if dev == "cuda":
            torch.cuda.synchronize()

    return step


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(batch: int, device: str, steps: int, warmup: int, with_torch: bool) -> dict:
    mg, models = minigan_step(batch, device)
    fns = {"minigan": mg}
    if with_torch:
        fns["torch"] = torch_step(batch, device, models)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(steps):  # alternate, so load changes hit both alike
        for k, fn in fns.items():
            times[k].append(_timed(fn))
    out = {"batch": batch, "device": device, "steps": steps}
    out.update({f"{k}_median_s": statistics.median(v) for k, v in times.items()})
    if with_torch:
        out["ratio"] = out["minigan_median_s"] / out["torch_median_s"]
    return out


def peak_rss(framework: str, batch: int, device: str) -> dict:
    """Peak resident set (MiB) of a fresh process running a few steps of one framework, and
    the resident set before the first step. Each process holds one framework: minigan's never
    imports torch; torch's imports minigan too (its nets start from minigan's weights)."""
    cmd = [sys.executable, __file__, "--only", framework, "--batch", str(batch),
           "--device", device]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per framework")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compare", choices=["torch"], help="time PyTorch beside minigan")
    p.add_argument("--memory", action="store_true", help="peak RSS of each, in own process")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--only", choices=["minigan", "torch"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    backend.check_device(a.device)
    minigan.manual_seed(0)
    if a.threads and a.compare:
        import torch
        torch.set_num_threads(a.threads)
    if a.only:
        if a.only == "torch":
            import torch  # noqa: F401  (before the baseline is read)
        step, models = minigan_step(a.batch[0], a.device)
        if a.only == "torch":
            step = torch_step(a.batch[0], a.device, models)
            del models
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for _ in range(3):
            step()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"peak_rss_mib": rss, "before_steps_mib": base}))
        return
    for b in a.batch:
        if a.memory:
            row = {"batch": b, "minigan": peak_rss("minigan", b, a.device)}
            if a.compare:
                row["torch"] = peak_rss("torch", b, a.device)
        else:
            row = compare(b, a.device, a.steps, a.warmup, a.compare == "torch")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
