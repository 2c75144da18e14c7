"""Time one GAN training step (D on real and fake, then G), optionally beside PyTorch.

Three models (--model, default all):
  tf           the TensorFlow DCGAN tutorial's nets (minigan.gan.models.dcgan), 28x28, batch 64
               and 256, built as a Sequential
  torch-style  the same network written the way PyTorch users write it: a Module whose forward
               reshapes the dense layer's output and applies BatchNorm2d to it, calls the
               activations and dropout from functional, and flattens with x.reshape(n, -1)
  doodles      the nets `python examples/doodles.py` trains: the tf model at half width
               (width 32) with D's third convolution (d_depth 3) and G's first transposed
               convolution 3x3 (g_kernel 3), 28x28, batch 64 and 256
  dcgan64      the PyTorch examples' DCGAN (minigan.gan.models.radford): 64x64 RGB, 4x4 kernels,
               stride 2, ngf = ndf = 64, batch 64 and 128
With --compare torch the same model is rebuilt in PyTorch from minigan's state_dict (the keys
match) and the two frameworks alternate in one process after a warm-up, in blocks of --block
timed steps, each block after one untimed step: a BLAS or OpenMP thread of one framework keeps
spinning for a while after its last call (OpenBLAS's for up to about 0.1 s), and a step that
starts then shares its cores. Medians and their ratio are printed, and which kernels OpenBLAS
runs (OPENBLAS_CORETYPE, when set, chooses them). --memory runs each framework alone in a
subprocess and reports its peak resident set.

    python benchmarks/step.py --compare torch
    python benchmarks/step.py --model tf --batch 64 256 --compare torch
    python benchmarks/step.py --memory --model tf --batch 256 --compare torch
    python benchmarks/step.py --compare torch --beside spin     # under contention

--blas-spin times minigan's step alone with OpenBLAS's idle threads sleeping after 2**E cycles
without work, for each E given (kernels/blas.py: minigan's default is 12, OpenBLAS's own 28),
the settings taking turns in blocks in one process like the frameworks above; it prints each
one's median and its ratio to the first's.

    python benchmarks/step.py --blas-spin 28 12 4

--beside runs another busy process for the whole measurement, as on a user's machine: `spin`
is `python -c "while True: pass"`, `train` a second minigan training run (the DCGAN on
synthetic ellipses, its own threads as configured).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import minigan
import minigan.functional as F
from minigan import backend, nn
from minigan.gan.models import dcgan, radford
from minigan.kernels import blas as _blas
from minigan.kernels import shifted
from minigan.kernels import threads as T
from minigan.optim import Adam

Z_DIM = 100
BATCHES = {"tf": (64, 256), "torch-style": (64, 256), "doodles": (64, 256),
           "dcgan64": (64, 128)}


def torch_style_nets(tnn, tF, width: int = 64):
    """The TF tutorial's G and D as Module subclasses with a forward, in framework `tnn`/`tF`
    (minigan's or torch's nn and functional: the code is the same for both)."""
    c1, c2, c4 = width, 2 * width, 4 * width

    class Generator(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(Z_DIM, c4 * 7 * 7, bias=False)
            self.bn0 = tnn.BatchNorm2d(c4, eps=1e-3, momentum=0.01)
            self.up1 = tnn.ConvTranspose2d(c4, c2, 5, 1, 2, bias=False)
            self.bn1 = tnn.BatchNorm2d(c2, eps=1e-3, momentum=0.01)
            self.up2 = tnn.ConvTranspose2d(c2, c1, 5, 2, 2, output_padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(c1, eps=1e-3, momentum=0.01)
            self.up3 = tnn.ConvTranspose2d(c1, 1, 5, 2, 2, output_padding=1, bias=False)

        def forward(self, z):
            x = self.fc(z).reshape(z.shape[0], c4, 7, 7)
            x = tF.leaky_relu(self.bn0(x), 0.3)
            x = tF.leaky_relu(self.bn1(self.up1(x)), 0.3)
            x = tF.leaky_relu(self.bn2(self.up2(x)), 0.3)
            return tF.tanh(self.up3(x))

    class Discriminator(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, c1, 5, 2, 2)
            self.conv2 = tnn.Conv2d(c1, c2, 5, 2, 2)
            self.fc = tnn.Linear(c2 * 7 * 7, 1)

        def forward(self, x):
            x = tF.dropout(tF.leaky_relu(self.conv1(x), 0.3), 0.3, training=self.training)
            x = tF.dropout(tF.leaky_relu(self.conv2(x), 0.3), 0.3, training=self.training)
            return self.fc(x.reshape(x.shape[0], -1))

    return Generator(), Discriminator()


def build(model: str):
    """minigan's (G, D) of a model and its image shape."""
    if model == "tf":
        return (*dcgan((1, 28, 28), Z_DIM), (1, 28, 28))
    if model == "torch-style":
        return (*torch_style_nets(nn, F), (1, 28, 28))
    if model == "doodles":
        return (*dcgan((1, 28, 28), Z_DIM, width=32, d_depth=3, g_kernel=3), (1, 28, 28))
    if model == "dcgan64":
        return (*radford((3, 64, 64), Z_DIM), (3, 64, 64))
    raise ValueError(f"unknown model {model!r}: choose from {', '.join(BATCHES)}")


def minigan_step(batch: int, device: str, model: str = "tf"):
    """A closure running one minigan training step on a fixed real batch."""
    G, D, shape = build(model)
    G.to(device)
    D.to(device)
    opt_g = Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    xp = backend.xp_for(device)
    real = minigan.tensor(xp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, *shape)),
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

    return step, (G, D, model, shape)

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


def _torch_twin(m: nn.Module, model: str, index: int):
    """The PyTorch twin of minigan's G (index 0) or D (1), with minigan's weights."""
    import torch

    if model != "torch-style":
        return _torch_module(m)
    t = torch_style_nets(torch.nn, torch.nn.functional)[index]
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    return t


def torch_step(batch: int, device: str, models, autocast: str | None = None):
    """A closure running one PyTorch training step of the twin nets; with `autocast`
    ('bfloat16' or 'float16'), under torch.autocast of that dtype (mixed precision: on CPUs
    with AMX, oneDNN's bfloat16 kernels; minigan has no counterpart)."""
    import torch

    dev = "cuda" if device == "cuda" else "cpu"
    *nets, model, shape = models
    G, D = (_torch_twin(m, model, i).to(dev) for i, m in enumerate(nets))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    real = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (batch, *shape))
                            .astype(np.float32)).to(dev)
    ones, zeros = torch.ones(batch, 1, device=dev), torch.zeros(batch, 1, device=dev)

    def step():
        if autocast:
            with torch.autocast(dev, dtype=getattr(torch, autocast)):
                plain()
        else:
            plain()
        if dev == "cuda":
            torch.cuda.synchronize()

    def plain():
        fake = G(torch.randn(batch, Z_DIM, device=dev))
        opt_d.zero_grad()
        loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = bce(D(fake), ones)
        loss_g.backward()
        opt_g.step()

    step.nets = (G, D)
    return step


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate(fns: dict, steps: int, warmup: int, block: int) -> dict:
    """{name: [seconds, ...]} of at least `steps` timed calls of each fn, after `warmup` calls
    of each: the fns take turns in blocks of `block` timed calls, so load changes hit them
    alike, each block after one untimed call (the other's threads may still be spinning)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    while min(len(v) for v in times.values()) < steps:
        for k, fn in fns.items():
            fn()
            for _ in range(block):
                times[k].append(_timed(fn))
    return times


def compare(batch: int, device: str, steps: int, warmup: int, with_torch: bool,
            model: str = "tf", block: int = 3, autocast: str | None = None) -> dict:
    mg, models = minigan_step(batch, device, model)
    fns = {"minigan": mg}
    if with_torch:
        fns["torch"] = torch_step(batch, device, models)
        if autocast:
            fns[f"torch_{autocast}"] = torch_step(batch, device, models, autocast)
    times = alternate(fns, steps, warmup, block)
    out = {"model": model, "batch": batch, "device": device, "steps": steps, "block": block,
           "openblas": shifted.BLAS.core, "threads": _threads()}
    out.update({f"{k}_median_s": statistics.median(v) for k, v in times.items()})
    if with_torch:
        out["ratio"] = out["minigan_median_s"] / out["torch_median_s"]
        if autocast:
            out[f"ratio_to_torch_{autocast}"] = (out["minigan_median_s"]
                                                 / out[f"torch_{autocast}_median_s"])
    return out


def spins(batch: int, device: str, steps: int, warmup: int, model: str, block: int,
          exponents) -> dict:
    """minigan's step with OpenBLAS's idle threads sleeping after 2**e cycles, for each e in
    `exponents`, in turns (`alternate`): medians, and their ratios to the first's."""
    step, _ = minigan_step(batch, device, model)
    now = [None]

    def with_spin(e):
        def fn():
            if now[0] != e:   # the threads restart: the block's untimed first step absorbs it
                if not _blas.set_spin(e):
                    raise SystemExit("--blas-spin: NumPy's OpenBLAS lacks openblas_read_env or "
                                     "blas_thread_shutdown_, so its wait cannot be changed")
                now[0] = e
            step()
        return fn

    times = alternate({e: with_spin(e) for e in exponents}, steps, warmup, block)
    first = statistics.median(times[exponents[0]])
    return {"model": model, "batch": batch, "device": device, "steps": steps, "block": block,
            "openblas": shifted.BLAS.core, "threads": _threads(),
            "blas_spin_median_s": {str(e): statistics.median(v) for e, v in times.items()},
            "ratio_to_first": {str(e): statistics.median(v) / first for e, v in times.items()}}


def _threads() -> str:
    """MINIGAN_THREADS, and for the default what it chose (with the other processes' load)."""
    setting = os.environ.get("MINIGAN_THREADS") or "detect"
    detect = shifted.THREADS if isinstance(shifted.THREADS, T.Detect) else None
    if detect is None:
        return setting
    return " ".join(f"{f}@{t}s({b if b is None else round(b, 2)} busy)"
                    for t, f, b in detect.switches) or setting


def peak_rss(framework: str, batch: int, device: str, model: str = "tf") -> dict:
    """Peak resident set (MiB) of a fresh process running a few steps of one framework, and
    the resident set before the first step. Each process holds one framework: minigan's never
    imports torch; torch's imports minigan too (its nets start from minigan's weights)."""
    cmd = [sys.executable, __file__, "--only", framework, "--batch", str(batch),
           "--device", device, "--model", model]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


_BESIDE = {
    "spin": [sys.executable, "-c", "while True: pass"],
    "train": [sys.executable, "-m", "minigan", "train", "--dataset", "ellipses", "--steps",
              "100000", "--no-progress", "--overwrite", "--quality-every", "0"],
}


@contextlib.contextmanager
def _beside(kind: str | None):
    """Keep a busy process of this kind running for the duration (nothing for None)."""
    if kind is None:
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = list(_BESIDE[kind]) + (["--out", tmp] if kind == "train" else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(20 if kind == "train" else 1)   # past its start-up (kernels, data)
            if proc.poll() is not None:
                raise RuntimeError(f"the busy process beside the benchmark exited: "
                                   f"{' '.join(cmd)}")
            yield
        finally:
            proc.kill()
            proc.wait()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", choices=list(BATCHES), default=list(BATCHES),
                   help="models to time (default all)")
    p.add_argument("--batch", type=int, nargs="+",
                   help="batch sizes (default: each model's, 64 256 or 64 128)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per framework")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--block", type=int, default=3,
                   help="timed steps in a row per framework, after one untimed step (whose time "
                        "the other framework's still-spinning BLAS/OpenMP threads would skew)")
    p.add_argument("--compare", choices=["torch"], help="time PyTorch beside minigan")
    p.add_argument("--memory", action="store_true", help="peak RSS of each, in own process")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--torch-autocast", choices=["bfloat16", "float16"],
                   help="with --compare torch: also time PyTorch's step under torch.autocast "
                        "of this dtype, in turn with its float32 one (minigan's stays float32)")
    p.add_argument("--beside", choices=list(_BESIDE),
                   help="keep another busy process running meanwhile (spin or train)")
    p.add_argument("--blas-spin", type=int, nargs="+", metavar="E",
                   help="time minigan alone with OpenBLAS's idle threads sleeping after 2**E "
                        "cycles, for each E (4-30), in turns")
    p.add_argument("--only", choices=["minigan", "torch"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.torch_autocast and a.compare != "torch":
        p.error("--torch-autocast times PyTorch's step: add --compare torch")
    if a.blas_spin and (a.compare or a.memory or a.device != "cpu"):
        p.error("--blas-spin times minigan's CPU step alone: leave out --compare, --memory "
                "and --device cuda")
    if a.blas_spin and not all(4 <= e <= 30 for e in a.blas_spin):
        p.error(f"--blas-spin: OpenBLAS takes exponents from 4 to 30, got {a.blas_spin}")
    backend.check_device(a.device)
    minigan.manual_seed(0)
    if a.threads and a.compare:
        import torch
        torch.set_num_threads(a.threads)
    if a.only:
        if a.only == "torch":
            import torch  # noqa: F401  (before the baseline is read)
        step, models = minigan_step(a.batch[0], a.device, a.model[0])
        if a.only == "torch":
            step = torch_step(a.batch[0], a.device, models)
            del models
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for _ in range(3):
            step()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"peak_rss_mib": rss, "before_steps_mib": base}))
        return
    with _beside(a.beside):
        _measure(a)


def _measure(a) -> None:
    for model in a.model:
        for b in a.batch or BATCHES[model]:
            if a.blas_spin:
                row = spins(b, a.device, a.steps, a.warmup, model, a.block, a.blas_spin)
            elif a.memory:
                row = {"model": model, "batch": b,
                       "minigan": peak_rss("minigan", b, a.device, model)}
                if a.compare:
                    row["torch"] = peak_rss("torch", b, a.device, model)
            else:
                row = compare(b, a.device, a.steps, a.warmup, a.compare == "torch", model,
                              a.block, a.torch_autocast)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
