"""Declarative op tests: state the inputs and a float64 reference; one routine checks the rest.

An `OpTest` (Chainer's FunctionTestCase idea) names an op, the float64 arrays it takes and an
independent NumPy reference. `check()` runs on every available device: the forward pass against
the reference (in float64, and in float32 at a looser tolerance), the first-order VJP against
`vjp_reference` and the second-order VJP against central differences of `vjp_reference` when
one is given, then `gradcheck` and `gradgradcheck`. A failure names the op, its parameters, the
input shapes, the device and the max error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import backend
from .autograd import Tensor, grad
from .gradcheck import GradcheckError, gradcheck, gradgradcheck


def devices() -> list[str]:
    """'cpu', plus 'cuda' when a GPU works or MINIGAN_DEVICE=cuda asks for one (the test suite
    passes that on as MINIGAN_TEST_CUDA=1, keeping its default device the CPU): asked for, a
    missing GPU fails the checks instead of skipping them."""
    wanted = os.environ.get("MINIGAN_DEVICE", "").lower().startswith("cuda") or \
        os.environ.get("MINIGAN_TEST_CUDA", "") == "1"
    return ["cpu", "cuda"] if wanted or backend.cuda_available() else ["cpu"]


def assert_close(got, want, rtol: float, atol: float, what: str) -> None:
    """Elementwise |got - want| <= atol + rtol |want|; the message gives the worst element."""
    got = np.asarray(backend.to_numpy(got), np.float64)
    want = np.asarray(backend.to_numpy(want), np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: got shape {got.shape}, expected {want.shape}")
    err = np.abs(got - want)
    excess = err - (atol + rtol * np.abs(want))
    if got.size and (excess > 0).any() or not np.isfinite(got).all():
        k = np.unravel_index(np.nanargmax(np.where(np.isfinite(excess), excess, np.inf)),
                             got.shape)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            rel = err / np.abs(want)  # inf where the expected value is 0
        raise AssertionError(f"{what}: max abs error {np.max(err):.3g}, max rel error "
                             f"{np.max(rel):.3g} (rtol {rtol:g}, atol {atol:g}); worst at "
                             f"{tuple(int(i) for i in k)}: got {got[k]:.12g}, "
                             f"expected {want[k]:.12g}")


def training_state(trainer) -> dict:
    """Everything an exact resume must restore, flat: G's, D's (and G's moving average's)
    state_dict entries and both optimizers' per-parameter state, keyed 'G.0.weight',
    'opt_d.3.exp_avg', ..."""
    out = {f"G.{k}": v for k, v in trainer.G.state_dict().items()}
    out.update({f"D.{k}": v for k, v in trainer.D.state_dict().items()})
    if getattr(trainer, "G_ema", None) is not None:
        out.update({f"G_ema.{k}": v for k, v in trainer.G_ema.state_dict().items()})
    for name, opt in (("opt_g", trainer.opt_g), ("opt_d", trainer.opt_d)):
        for i, st in enumerate(opt.state_dict()["state"]):
            out.update({f"{name}.{i}.{k}": v for k, v in st.items()})
    return out


def numeric_grad(f: Callable[[], float], a: np.ndarray, h: float) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of `a`, in place."""
    g = np.zeros(a.shape)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        fp = f()
        flat[k] = old - h
        fm = f()
        flat[k] = old
        gflat[k] = (fp - fm) / (2 * h)
    return g


def splitmix_uniform(key: int, n: int) -> np.ndarray:
    """Dropout's uniforms in plain NumPy, an independent reference for the kernels:
    u_i = top 24 bits of splitmix64(key + (i + 1) * golden) / 2^24, i = 0 .. n-1."""
    u64 = np.uint64
    with np.errstate(over="ignore"):
        z = u64(key) + (np.arange(n, dtype=u64) + u64(1)) * u64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
        z = z ^ (z >> u64(31))
    return (z >> u64(40)).astype(np.float64) / 2.0 ** 24


def _tuple(y) -> tuple:
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


@dataclass
class OpTest:
    """One op at one set of parameters; `check()` runs every test that applies."""

    name: str
    op: Callable                        # minigan op: Tensors -> Tensor or tuple of Tensors
    inputs: Sequence[np.ndarray]        # float64 host arrays, one per op argument
    reference: Callable | None = None   # float64 NumPy forward: arrays -> array(s)
    vjp_reference: Callable | None = None  # (*inputs, *output_grads) -> grads of `wrt` inputs
    params: dict = field(default_factory=dict)   # shown in failure messages
    wrt: Sequence[int] | None = None    # inputs to differentiate (default: all)
    rtol: float = 1e-6                  # forward and VJPs against the float64 references
    atol: float = 1e-9
    float32_tol: float | None = 1e-4    # forward in float32 (rtol = atol); None skips it
    second_order: bool = True
    eps: float = 1e-6                   # gradcheck / gradgradcheck settings
    grad_atol: float = 1e-5
    grad_rtol: float = 1e-3
    fd_step: float = 1e-5               # central-difference step on the reference VJP
    seed: int = 0

    def __post_init__(self):
        self.inputs = [np.asarray(a, np.float64) for a in self.inputs]
        if self.wrt is None:
            self.wrt = tuple(range(len(self.inputs)))

    def label(self, device: str) -> str:
        ps = ", ".join(f"{k}={v}" for k, v in self.params.items())
        shapes = ", ".join(str(a.shape) for a in self.inputs)
        return f"{self.name}({ps}) on {device}, input shapes [{shapes}]"

    def tensors(self, device: str, dtype=np.float64) -> list[Tensor]:
        return [Tensor(backend.to_device(a.astype(dtype), device), requires_grad=i in self.wrt)
                for i, a in enumerate(self.inputs)]

    def check(self, on: Sequence[str] | None = None) -> None:
        for device in on or devices():
            self.check_on(device)

    def check_on(self, device: str) -> None:
        label = self.label(device)
        if self.reference is not None:
            self._forward(device, label)
        if self.vjp_reference is not None:
            self._vjps(device, label)
        try:
            kw = {"eps": self.eps, "atol": self.grad_atol, "rtol": self.grad_rtol, "name": label}
            gradcheck(self.op, self.tensors(device), seed=self.seed, **kw)
            if self.second_order:
                gradgradcheck(self.op, self.tensors(device), seed=self.seed + 1, **kw)
        except GradcheckError as e:
            raise AssertionError(str(e)) from None

    def _forward(self, device: str, label: str) -> None:
        want = _tuple(self.reference(*[a.copy() for a in self.inputs]))
        got = _tuple(self.op(*self.tensors(device)))
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.dtype == np.float64, f"{label}: output {i} is {g.dtype}, expected float64"
            assert_close(g.data, w, self.rtol, self.atol, f"{label}: forward output {i}")
        if self.float32_tol is not None:
            got = _tuple(self.op(*self.tensors(device, np.float32)))
            for i, (g, w) in enumerate(zip(got, want)):
                assert g.dtype == np.float32, f"{label}: float32 inputs gave {g.dtype} output {i}"
                tol = self.float32_tol
                assert_close(g.data, w, tol, tol, f"{label}: float32 forward output {i}")

    def _vjps(self, device: str, label: str) -> None:
        """First order against vjp_reference; second order against its central differences."""
        gen = np.random.default_rng(self.seed + 2)
        ys = _tuple(self.op(*self.tensors(device)))
        gys = [gen.standard_normal(y.shape) for y in ys]
        us = [gen.standard_normal(self.inputs[i].shape) for i in self.wrt]
        want = _tuple(self.vjp_reference(*[a.copy() for a in self.inputs], *gys))
        got = self._second_order(device, gys, us, want, label, const_gy=False)
        if not self.second_order:
            return
        ref_args = [a.copy() for a in self.inputs] + gys

        def phi() -> float:
            out = _tuple(self.vjp_reference(*ref_args))
            return float(sum(np.vdot(u, o) for u, o in zip(us, out)))

        scale = abs(phi()) + sum(float(np.abs(u).sum()) for u in us)
        # Central differences of the float64 reference: truncation O(h^2 f''') is ~1e-10 for
        # the smooth ops here and zero for (bi)linear ones; rounding is ~1e-16 * |terms| / h,
        # which `scale` bounds, so atol = 1e-9 * scale sits well above it (the errors measured
        # on conv, batchnorm, BCE and linear stay under 1e-3 of it); rtol stays 1e-6.
        atol = max(self.atol, 1e-9 * scale)
        targets = [ref_args[i] for i in self.wrt] + ref_args[len(self.inputs):]
        names = [f"input {i}" for i in self.wrt] + [f"output grad {j}" for j in range(len(gys))]
        numeric = [numeric_grad(phi, a, self.fd_step) for a in targets]
        # again with constant output grads (as a gradient penalty has): the graph differs then
        const = self._second_order(device, gys, us, want, label, const_gy=True)
        for g, num, nm in zip(got + const, numeric + numeric[:len(self.wrt)],
                              names + [f"{n} with constant output grads" for n in names]):
            assert_close(np.zeros(num.shape) if g is None else g.data, num, self.rtol, atol,
                         f"{label}: second-order gradient wrt {nm} (vs central differences of "
                         "the reference VJP)")

    def _second_order(self, device, gys, us, want, label, const_gy: bool) -> list:
        """Check minigan's first-order VJP against `want`; return the gradient of <u, VJP>."""
        xs = self.tensors(device)
        gy_t = [Tensor(backend.to_device(g, device), requires_grad=not const_gy) for g in gys]
        s = sum(((y * g).sum() for y, g in zip(_tuple(self.op(*xs)), gy_t)), start=0.0)
        first = grad(s, [xs[i] for i in self.wrt], create_graph=True, allow_unused=True)
        for i, g, w in zip(self.wrt, first, want):
            g = np.zeros(w.shape) if g is None else g.data
            assert_close(g, w, self.rtol, self.atol, f"{label}: gradient of input {i}")
        args = [xs[i] for i in self.wrt] + ([] if const_gy else gy_t)
        q = sum(((g * Tensor(backend.to_device(u, device))).sum()
                 for g, u in zip(first, us) if g is not None and g.requires_grad), start=0.0)
        if isinstance(q, float) or not self.second_order:  # no graph: the VJP is constant
            return [None] * len(args)
        return grad(q, args, allow_unused=True)


@contextmanager
def chromium_page(url: str, executable: str):
    """(page, errors) of `url` loaded in a headless Chromium (Playwright) that may read local
    files; `errors` collects page errors and failed requests as the page is used."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--allow-file-access-from-files"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.goto(url)
            page.wait_for_load_state("load")
            yield page, errors
        finally:
            browser.close()
