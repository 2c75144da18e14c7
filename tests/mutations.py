"""A mutation check of our own: plant realistic bugs one at a time and demand the tests catch each.

    python tests/mutations.py              # baseline, then every mutant; a table at the end
    python tests/mutations.py --list       # the mutants and the tests meant to catch them
    python tests/mutations.py --only NAME  # one mutant (repeat --only, or NAME,NAME)

Each mutant is a file, an exact source snippet that must occur there exactly once (so the list
fails loudly instead of rotting when the code moves), its replacement, and the test files (and
-k expression) that should catch it. The working tree is first copied once to a temporary snapshot
(with the __pycache__ folders and copy2's mtimes, so numba's on-disk cache of the untouched kernel
files is reused; .git, .venv*, runs/, .hypothesis are left out), so that edits made while the
check runs cannot mix into it. For the baseline and for each mutant the snapshot is copied again,
the replacement applied, and `python -m pytest -x -q -p no:cacheprovider <tests>` run there.
minigan/__init__.py registers the copy's kernels/ folder as minigan.kernels, and a first import
in each copy checks that minigan, minigan.kernels and the mutated module all come from the copy
and that the mutated module's source holds the replacement.

Results: caught (pytest ran and a test failed), survived (all passed: a blind spot, to be closed
with a test, never by dropping the mutant), error (collection or import error, a crash, a
timeout: the mutant proved nothing). The exit status is non-zero unless every mutant is caught
and the unmutated baseline passes. Hypothesis runs with a fixed seed, so a table is repeatable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_TOP = {".git", "runs", "build", "dist", ".whl"}  # at the repository root only
SKIP_ANYWHERE = {".hypothesis", ".pytest_cache", ".ruff_cache"}
TIMEOUT_S = 420


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]
    k: str | None = None  # a pytest -k expression, to keep the run short
    why: str = ""


CONV = "minigan/functional/conv.py"
SHIFTED = "kernels/shifted.py"
KCONV = "kernels/conv.py"
KNORM = "kernels/norm.py"
T_CONV = "tests/functional/test_conv.py"
T_SHIFTED = "tests/kernels/test_shifted_kernels.py"
T_KCONV = "tests/kernels/test_conv_kernels.py"
T_KNORM = "tests/kernels/test_norm_kernels.py"
T_NORM = "tests/functional/test_norm.py"
T_ACT = "tests/functional/test_activation.py"
T_KACT = "tests/kernels/test_activation_kernels.py"
T_DROP = "tests/functional/test_dropout.py"
T_KDROP = "tests/kernels/test_dropout_kernels.py"
T_LOSS = "tests/functional/test_loss.py"
T_MATH = "tests/functional/test_math.py"
T_OPTIM = "tests/test_optim.py"
T_KOPTIM = "tests/kernels/test_optim_kernels.py"
T_LAYOUT = "tests/test_layout.py"
T_LAYERS = "tests/nn/test_layers.py"
FAST = "fast_path"

MUTANTS = [
    # -- how conv.py hands stride and padding to the shifted-GEMM fast path (float32, >= 16 ch.)
    Mutant("conv2d-fast-stride-swapped", CONV,
           "y = S.conv2d(pre, w, sh, sw, ph, pw, oh, ow, rows)",
           "y = S.conv2d(pre, w, sw, sh, ph, pw, oh, ow, rows)", (T_CONV,), FAST,
           "conv2d forward gets (sW, sH)"),
    Mutant("conv2d-fast-padding-swapped", CONV,
           "y = S.conv2d(pre, w, sh, sw, ph, pw, oh, ow, rows)",
           "y = S.conv2d(pre, w, sh, sw, pw, ph, oh, ow, rows)", (T_CONV,), FAST,
           "conv2d forward gets (pW, pH)"),
    Mutant("conv2d-fast-split-swapped", CONV,
           "else S.split(_chwn(x), sh, sw, kh, kw, ph, pw, oh, ow))",
           "else S.split(_chwn(x), sw, sh, kh, kw, ph, pw, oh, ow))", (T_CONV,), FAST,
           "phase images cut with the strides swapped"),
    Mutant("conv-transpose-fast-stride-swapped", CONV,
           "S.conv2d_input_grad(gy, w, sh, sw, ph, pw, oh, ow, rows)",
           "S.conv2d_input_grad(gy, w, sw, sh, ph, pw, oh, ow, rows)", (T_CONV,), FAST),
    Mutant("conv-transpose-fast-padding-swapped", CONV,
           "S.conv2d_input_grad(gy, w, sh, sw, ph, pw, oh, ow, rows)",
           "S.conv2d_input_grad(gy, w, sh, sw, pw, ph, oh, ow, rows)", (T_CONV,), FAST),
    Mutant("conv-transpose-backward-split-swapped", CONV,
           "pre = S.split(_chwn(gy.data), sh, sw, kh, kw, ph, pw, *x.shape[2:])",
           "pre = S.split(_chwn(gy.data), sw, sh, kh, kw, ph, pw, *x.shape[2:])", (T_CONV,), FAST,
           "the transposed conv's gradients read mis-cut phase images"),
    Mutant("grad-weight-fast-padding-swapped", CONV,
           "_chwn(gy), sh, sw,\n                                        ph, pw, kh, kw)",
           "_chwn(gy), sh, sw,\n                                        pw, ph, kh, kw)", (T_CONV,),
           FAST),
    Mutant("conv2d-backward-grid-with-strides-swapped", CONV,
           "grid = S.on_grid(_chwn(gy.data), sh, sw, ph, pw,",
           "grid = S.on_grid(_chwn(gy.data), sw, sh, ph, pw,", (T_CONV,), FAST,
           "the output gradient both shifted gradients share is laid out for the wrong strides"),
    Mutant("grad-weight-own-split-swapped", CONV,
           "xs = pre if pre is not None else S.split(_chwn(x), sh, sw, kh, kw, ph, pw, oh, ow)",
           "xs = pre if pre is not None else S.split(_chwn(x), sw, sh, kh, kw, ph, pw, oh, ow)",
           (T_CONV,), FAST,
           "only when the weight gradient is an op of its own (second order)"),
    Mutant("output-padding-other-axis", CONV,
           "((y_shape[2 + i] - 1) * stride[i] - 2 * padding[i]",
           "((y_shape[2 + i] - 1) * stride[1 - i] - 2 * padding[i]", (T_CONV,),
           "conv2d and not fast_path"),
    Mutant("conv2d-backward-detached-weight", CONV,
           "self.padding), self.rows, grid)(gy, w)",
           "self.padding), self.rows, grid)(gy, Tensor(w.data))",
           (T_CONV,), "acceptance_conv2d",
           "the input gradient built from w.data: first order right, second order wrong"),
    # -- the shifted-GEMM kernels themselves
    Mutant("shifted-plan-tap-off-by-one", SHIFTED,
           "dy = (i - ph - py) // sh", "dy = (i - ph - py + 1) // sh", (T_SHIFTED,)),
    Mutant("shifted-calls-last-column-dropped", SHIFTED,
           "x0, x1 = max(0, -dx), min(ow, wp - dx)", "x0, x1 = max(0, -dx), min(ow, wp - dx - 1)",
           (T_SHIFTED,)),
    Mutant("shifted-input-grad-phases-interleaved-wrong", SHIFTED,
           "s = (at[py * sw + ix - q * sw] * c_ + c) * length",
           "s = (at[(ix - q * sw) * sh + py] * c_ + c) * length", (T_SHIFTED,)),
    Mutant("shifted-split-ignores-the-phase-order", SHIFTED,
           "        p = order[k]\n", "        p = k\n", (T_SHIFTED,), None,
           "the phase images are stacked in the natural order, the plan reads them in its own"),
    Mutant("shifted-split-column-stride-of-rows", SHIFTED,
           "ix = px + q * sw\n", "ix = px + q * sh\n", (T_SHIFTED,), None,
           "the phase images step through columns by the vertical stride"),
    Mutant("shifted-gap-too-narrow-on-the-right", SHIFTED,
           "extra = max(0, -lo, ow - wp + max(hi, 0))", "extra = max(0, -lo)", (T_SHIFTED,),
           "gap", "rows too narrow for the rightmost taps: their reads wrap into the next row"),
    Mutant("shifted-tap-weights-kh-kw-swapped", SHIFTED,
           "i * kw + j for _, _, _, taps in plan", "j * kw + i for _, _, _, taps in plan",
           (T_SHIFTED,)),
    Mutant("shifted-chunk-runner-drops-the-last-gemm", SHIFTED,
           "    for i in range(calls.shape[0]):\n", "    for i in range(calls.shape[0] - 1):\n",
           ("tests/kernels/test_blas.py", T_SHIFTED), None,
           "the numba kernel that runs a chunk's GEMMs stops one short"),
    Mutant("shifted-input-grad-fresh-when-first-gemm-misses-pixels", SHIFTED,
           "fresh = (bool(pieces) and pieces[0][1:] == (0, hp * wq)         # all pixels",
           "fresh = (bool(pieces)                                           # all pixels",
           (T_SHIFTED,), None,
           "the input gradient's buffer is left unzeroed although its first GEMM misses pixels"),
    Mutant("shifted-weight-grad-unwritten-block-left-unset", SHIFTED,
           "            parts[i, :, o:o + k] = 0",
           "            pass", (T_SHIFTED,), None,
           "a shift that meets only padding leaves its weight-gradient block as np.empty left it"),
    # -- the row chunks of the shifted GEMMs on the thread pool (kernels/threads.py)
    Mutant("shifted-chunk-input-grad-source-offset", SHIFTED,
           "4 * (a - shift) * n, oh * wq * n", "4 * a * n, oh * wq * n",
           ("tests/kernels/test_threads.py",), "split_over_row_chunks",
           "a chunk of input pixels reads the output gradient without the tap's shift"),
    Mutant("shifted-chunk-weight-grad-source-offset", SHIFTED,
           "k[g], (b - a) * n, 4 * a * n", "k[g], (b - a) * n, 4 * q0 * n",
           ("tests/kernels/test_threads.py",), "split_over_row_chunks",
           "a GEMM that starts inside a chunk reads the output gradient from the chunk's start"),
    Mutant("shifted-weight-grad-chunks-share-one-buffer", SHIFTED,
           "x_ptr, p_ptr + 4 * i * co * taps)", "x_ptr, p_ptr)",
           ("tests/kernels/test_threads.py",), "split_over_row_chunks",
           "every chunk's weight-gradient sums placed in the first chunk's buffer"),
    Mutant("row-pool-last-row-dropped", "kernels/threads.py",
           "return [total * i // chunks for i in range(chunks + 1)]",
           "return [total * i // chunks for i in range(chunks)] + [total - 1]",
           ("tests/kernels/test_threads.py",), "row_pool or split or same_bits",
           "the last chunk stops a row short"),
    # -- the default threads: the load meter and detect (kernels/threads.py)
    Mutant("load-meter-counts-own-time-as-others", "kernels/threads.py",
           "return max(0.0, machine - own) / max(seconds, 1e-3)",
           "return max(0.0, machine) / max(seconds, 1e-3)",
           ("tests/kernels/test_threads.py",), "load_meter",
           "this process's own threads counted as other processes' load"),
    Mutant("load-meter-counts-idle", "kernels/threads.py",
           "user, nice, system, _idle, _iowait, irq, softirq, steal = ticks",
           "user, nice, system, irq, _iowait, _idle, softirq, steal = ticks",
           ("tests/kernels/test_threads.py",), "load_meter", "idle ticks read as busy"),
    Mutant("detect-leaves-the-pool-at-once", "kernels/threads.py",
           'want = "blas" if self._quiet >= self.patience else "pool"',
           'want = "blas" if self._quiet >= 1 else "pool"',
           ("tests/kernels/test_threads.py",), "detect", "no patience before leaving the pool"),
    Mutant("resume-forgets-the-thread-family", "minigan/gan/trainer.py",
           '            shifted.use_thread_family(state.get("threads"))',
           '            shifted.use_thread_family(None)',
           ("tests/gan/test_trainer.py",), "threaded",
           "a resumed run probes the load again and may round differently"),
    # -- pictures within their time budget, one calibration per step (gan/)
    Mutant("picture-budget-ignored-after-the-first-epoch", "minigan/gan/trainer.py",
           "        return self._picture_seconds <= budget * (time.perf_counter() - self._t0)",
           "        return True", ("tests/report/test_page.py",), "budget",
           "every epoch redraws, whatever the budget"),
    Mutant("pictures-not-redrawn-when-training-is-interrupted", "minigan/gan/trainer.py",
           "        if self._pictures_step == self.step or not self.records:\n            return",
           "        return", ("tests/report/test_page.py",), "interrupted",
           "after Ctrl-C the GIF and the page miss the epochs since the last redraw"),
    Mutant("kept-calibration-never-used", "minigan/gan/sampling.py",
           "        if calibration:\n", "        if False:\n", ("tests/gan/test_sampling.py",),
           "calibration", "a kept calibration is recomputed and overwritten"),
    Mutant("calibration-a-fixed-number-of-batches", "minigan/gan/sampling.py",
           "    return -(-CALIBRATION_SAMPLES // max(int(batch_size), 2))",
           "    return 32", ("tests/gan/test_sampling.py",), "batch_size or noise_vectors",
           "a run trained at batch 32 is sampled from half as many noise vectors"),
    Mutant("logit-rows-spread-drops-the-last-epoch", "minigan/viz.py",
           "    keep = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))",
           "    keep = np.unique(np.linspace(0, len(items) - 2, n).round().astype(int))",
           ("tests/test_viz.py",), "spread or logit",
           "d_logits.png and spectra.png leave out the latest epoch"),
    Mutant("calibration-keeps-only-the-last-batch", "minigan/gan/sampling.py",
           "            m.momentum = 1.0 / (i + 1)", "            m.momentum = 1.0",
           ("tests/gan/test_sampling.py",), "population",
           "BatchNorm statistics from one batch of noise, not the mean of all of them"),
    Mutant("calibration-stops-before-the-last-batchnorm", "minigan/gan/sampling.py",
           "        for layer in layers[:last + 1]:", "        for layer in layers[:last]:",
           ("tests/gan/test_sampling.py",), "last_batchnorm",
           "the last BatchNorm keeps its stale running statistics when sampling"),
    Mutant("calibration-shortcut-for-any-sequential", "minigan/gan/sampling.py",
           "    if type(G) is not nn.Sequential or (G._hooks and any(G._hooks.values())):",
           "    if not isinstance(G, nn.Sequential):",
           ("tests/gan/test_sampling.py",), "own_forward_or_pre_hook",
           "a Sequential subclass's forward, or a pre-hook on G, is skipped when calibrating"),
    Mutant("augment-gradient-shifts-the-same-way", "minigan/gan/augment.py",
           "        return Translate(-self.dy, -self.dx)(gy)",
           "        return Translate(self.dy, self.dx)(gy)",
           ("tests/gan/test_augment.py",), "gradients",
           "the gradient of a shift shifted on, not back (the adjoint of a shift is its inverse)"),
    Mutant("augment-cutout-square-one-short", "minigan/gan/augment.py",
           "max(y0 + ch, 0), max(x0, 0)",
           "max(y0 + ch - 1, 0), max(x0, 0)",
           ("tests/gan/test_augment.py",), "cutout",
           "cutout's square a row short: 13 x 14, not DiffAugment's 14 x 14"),
    Mutant("augment-not-applied-in-training", "minigan/gan/trainer.py",
           "self.D_seen = Augmented(self.D, config.augment) if",
           "self.D_seen = self.D if",
           ("tests/gan/test_augment.py",), "training",
           "--augment accepted and ignored: D trained on the plain images"),
    Mutant("calibration-kept-across-training-steps", "minigan/gan/trainer.py",
           "        self._calibration = {}              # G changes: sample() calibrates afresh\n",
           "", ("tests/gan/test_trainer.py",), "samples_follow",
           "samples after a step drawn with the statistics of the generator before it"),
    Mutant("ema-rampup-off-by-one-update", "minigan/optim/__init__.py",
           "return min(decay, 0.5 ** (1.0 / (rampup * (num_averaged + 1))))",
           "return min(decay, 0.5 ** (1.0 / (rampup * num_averaged)))",
           ("tests/test_optim.py",), "rampup",
           "the ramp's half-life counts the updates before this one, not with it"),
    Mutant("ema-rampup-ignored-by-the-trainer", "minigan/gan/trainer.py",
           "config.ema, config.ema_rampup or None)) if config.ema else None)",
           "config.ema, None)) if config.ema else None)",
           ("tests/gan/test_trainer.py",), "ema_draws",
           "--ema-rampup accepted and ignored: the average keeps its decay from the first step"),
    Mutant("g-kernel-not-a-net-option", "minigan/gan/models.py",
           'NET_OPTIONS = ("g_width", "d_width", "d_dropout", "d_depth", "g_kernel")',
           'NET_OPTIONS = ("g_width", "d_width", "d_dropout", "d_depth")',
           ("tests/gan/test_cli.py",), "g_kernel",
           "--g-kernel accepted and ignored: trained, sampled and inspected with the 5x5 layer"),
    Mutant("bold-count-at-the-usual-threshold", "minigan/metrics.py",
           "strong = enclosed_marks(u8, threshold=bold)",
           "strong = enclosed_marks(u8, threshold=threshold)",
           ("tests/test_metrics.py",), "drawing_structure",
           "the bold-stroke count counts faint strokes too: the same as marks2"),
    Mutant("three-marks-count-two", "minigan/metrics.py",
           '"marks3": float(np.mean(marks >= 3))', '"marks3": float(np.mean(marks >= 2))',
           ("tests/test_metrics.py",), "drawing_structure",
           "the two-eyes-and-a-mouth count takes a mouth and one eye for a face"),
    Mutant("weight-grad-deals-out-single-gemms", "kernels/shifted.py",
           "        blocks.setdefault(int(row[10]), []).append(i)\n",
           "        blocks.setdefault(i, []).append(i)\n",
           ("tests/kernels/test_threads.py",), "dealt",
           "the GEMMs summing into one block of the weight gradient run on different threads"),
    Mutant("weight-grad-dealt-idle-blocks-not-zeroed", "kernels/shifted.py",
           "            for o, k in idle:\n                parts[0, :, o:o + k] = 0\n", "",
           ("tests/kernels/test_threads.py",), "dealt",
           "taps no GEMM reaches keep whatever the buffer held"),
    Mutant("openblas-threads-keep-spinning", "kernels/__init__.py",
           "\nspin_less()\n", "\n",
           ("tests/kernels/test_blas.py",), "sleep",
           "OpenBLAS's idle threads spin for 2**28 cycles after every threaded GEMM"),
    Mutant("lab-decay-not-restored-on-resume", "minigan/lab/trainer.py",
           "        restore_schedule(self.schedulers, self.step)\n", "",
           ("tests/lab/test_trainer.py",), "lr_decay",
           "a resumed lab run restarts its learning-rate schedule"),
    # -- im2col / col2im / the tiled transpose
    Mutant("im2col-last-column-dropped", KCONV,
           "hi = max(lo, min(ow, (w - 1 + pw - j) // sw + 1))",
           "hi = max(lo, min(ow, (w - 1 + pw - j) // sw))", (T_KCONV,)),
    Mutant("im2col-row-uses-column-padding", KCONV,
           "            iy = oy * sh - ph + i\n            d = oy * ow * n_",
           "            iy = oy * sh - pw + i\n            d = oy * ow * n_", (T_KCONV,)),
    Mutant("col2im-kernel-flipped", KCONV,
           "            for j in range(kw):\n                r = (c * kh + i) * kw + j\n",
           "            for j in range(kw):\n                r = (c * kh + i) * kw + kw - 1 - j\n",
           (T_KCONV,)),
    Mutant("transpose-tile-row-skipped", KCONV,
           "for r in range(rr, rr + 8):", "for r in range(rr, rr + 7):", (T_KCONV,)),
    # -- batchnorm kernels: the wide-channel (L == 1) branch and the formulas
    Mutant("bn-wide-rows-at-block-index", KNORM,
           "xr = _row(x, n, c0, w)\n                yr = _row(y, n, c0, w)",
           "xr = _row(x, n, blk, w)\n                yr = _row(y, n, blk, w)", (T_KNORM, T_NORM),
           None, "normalise pass of the (N, C) branch offset by the block number, not c0"),
    Mutant("bn-wide-sums-read-block-0", KNORM,
           "xr = _row(x, n, c0, w)\n            if gy is None:",
           "xr = _row(x, n, 0, w)\n            if gy is None:", (T_KNORM, T_NORM), None,
           "every (N, C) work item sums the first block's channels"),
    Mutant("bn-gamma-without-block-offset", KNORM,
           "a[c] = gamma[c0 + c] * inv\n            b[c]",
           "a[c] = gamma[c] * inv\n            b[c]", (T_KNORM, T_NORM)),
    Mutant("bn-backward-mean-without-block-offset", KNORM,
           "mu[c] = mean[c0 + c]", "mu[c] = mean[c]", (T_KNORM, T_NORM)),
    Mutant("bn-backward-xhat-term-dropped", KNORM,
           "k1[c] = sgx[c] * inv * inv / m", "k1[c] = 0.0", (T_KNORM, T_NORM)),
    Mutant("bn-unbiased-variance-in-forward", KNORM,
           "inv = 1.0 / np.sqrt(q[c] / m + eps)", "inv = 1.0 / np.sqrt(q[c] / (m - 1) + eps)",
           (T_KNORM, T_NORM)),
    Mutant("bn-second-order-constant-invstd", "minigan/functional/norm.py",
           "inv = ((xc * xc).mean(axis=(0, 2), keepdims=True) + eps) ** -0.5",
           "inv = Tensor((((xc * xc).mean(axis=(0, 2), keepdims=True) + eps) ** -0.5).data)",
           (T_NORM,), "acceptance or own_derivatives",
           "DeZero's bug: 1/std treated as a constant in the second derivative"),
    Mutant("bn-running-var-biased", "minigan/functional/norm.py",
           "- eps) * (m / (m - 1))", "- eps)", (T_NORM,), "running"),
    # -- batchnorm fused with the LeakyReLU / ReLU after it (Sequential's fusion)
    Mutant("bn-fused-backward-ignores-relu-mask", KNORM,
           "return g if z > 0 else g * slope", "return g", (T_KNORM, T_NORM, T_LAYERS),
           "fused or fuses", "the fused backward passes gz through where the ReLU was off"),
    Mutant("bn-fused-forward-skips-activation-on-channel-runs", KNORM,
           "yr[k] = xr[k] * ac + bc\n                    yr[k] = _leaky(yr[k], slope)",
           "yr[k] = xr[k] * ac + bc", (T_KNORM, T_NORM, T_LAYERS), "fused or fuses"),
    Mutant("bn-fused-second-order-without-graph", "minigan/functional/norm.py",
           "if is_grad_enabled():  # a graph of the gradient",
           "if False:  # a graph of the gradient", (T_NORM, T_LAYERS), "fused or fusion"),
    Mutant("sequential-fuses-hooked-modules", "minigan/nn/layers.py",
           "or _hooked(m) or _hooked(after)):", "):", (T_LAYERS,), "fusion"),
    # -- activations
    Mutant("leaky-relu-slope-on-wrong-side", "kernels/activation.py",
           "for i in prange(x.size):\n        v = x[i]\n        y[i] = v if v > 0 else v * slope",
           "for i in prange(x.size):\n        v = x[i]\n        y[i] = v * slope if v > 0 else v",
           (T_KACT, T_ACT)),
    Mutant("leaky-relu-grad-on-wrong-side", "kernels/activation.py",
           "        gx[i] = gy[i] if x[i] > 0 else gy[i] * slope\n\n\n@on_device",
           "        gx[i] = gy[i] if x[i] < 0 else gy[i] * slope\n\n\n@on_device",
           (T_ACT,), "leaky"),
    Mutant("tanh-derivative-wrong", "minigan/functional/activation.py",
           "return gy * (1 - y * y)", "return gy * (1 - y)", (T_ACT,), "tanh"),
    Mutant("tanh-backward-detached", "minigan/functional/activation.py",
           "return gy * (1 - y * y)", "return gy * Tensor(1 - y.data * y.data)", (T_ACT,),
           "tanh", "a gradient built from .data: right first order, wrong second order"),
    Mutant("sigmoid-derivative-wrong", "minigan/functional/activation.py",
           "return gy * y * (1 - y)", "return gy * (1 - y)", (T_ACT,), "sigmoid"),
    # -- dropout and upsampling
    Mutant("dropout-scale-missing", "kernels/dropout.py",
           "_dropout_cpu(x.reshape(-1), _threshold(p), x.dtype.type(1.0 / (1.0 - p)),",
           "_dropout_cpu(x.reshape(-1), _threshold(p), x.dtype.type(1.0),", (T_KDROP, T_DROP)),
    Mutant("dropout-batch-last-scale-missing", "kernels/dropout.py",
           "_dropout_batch_last_cpu(x2, _threshold(p), x.dtype.type(1.0 / (1.0 - p)),",
           "_dropout_batch_last_cpu(x2, _threshold(p), x.dtype.type(1.0),", (T_LAYOUT,),
           "dropout"),
    Mutant("upsample-adjoint-strided-sum", "minigan/functional/dropout.py",
           "return g.reshape(n, c, h // s, s, w // s, s).sum(axis=(3, 5))",
           "return g.reshape(n, c, s, h // s, s, w // s).sum(axis=(2, 4))", (T_DROP,),
           "upsample"),
    Mutant("upsample-adjoint-batch-last-strided-sum", "minigan/functional/dropout.py",
           "reshape(c, h // s, s, w // s, s, n)\n            return rows.sum(axis=(2, 4))",
           "reshape(c, s, h // s, s, w // s, n)\n            return rows.sum(axis=(1, 3))",
           (T_LAYOUT,), "upsample"),
    # -- losses
    Mutant("bce-logits-sign", "kernels/loss.py",
           "for i in prange(z.size):\n        v = z[i]\n        loss[i] = max(v, zero) - v * t[i]",
           "for i in prange(z.size):\n        v = z[i]\n        loss[i] = max(v, zero) + v * t[i]",
           (T_LOSS,), "bce_with_logits"),
    Mutant("bce-logits-grad-sign", "kernels/loss.py",
           "        gz[i] = gl[i] * (s - t[i])\n\n\n@on_device\ndef bce_with_logits(",
           "        gz[i] = gl[i] * (t[i] - s)\n\n\n@on_device\ndef bce_with_logits(", (T_LOSS,),
           "bce_with_logits"),
    Mutant("bce-logits-target-grad-sign", "minigan/functional/loss.py",
           "gt = -gl * z if", "gt = gl * z if", (T_LOSS,), "bce_with_logits"),
    # -- optimizers
    Mutant("adam-bias-corrections-swapped", "minigan/optim/__init__.py",
           "1 - b1 ** t,\n                      1 - b2 ** t)",
           "1 - b2 ** t,\n                      1 - b1 ** t)", (T_OPTIM,)),
    Mutant("adam-bias-correction-outside-sqrt", "kernels/optim.py",
           "(np.sqrt(vi / bc2) + eps)", "(np.sqrt(vi) / bc2 + eps)", (T_KOPTIM,)),
    Mutant("rmsprop-alpha-swapped", "kernels/optim.py",
           "s = alpha * sq[i] + (one - alpha) * gi * gi\n        sq[i] = s\n"
           "        p[i] -= lr * gi / (np.sqrt",
           "s = (one - alpha) * sq[i] + alpha * gi * gi\n        sq[i] = s\n"
           "        p[i] -= lr * gi / (np.sqrt",
           (T_KOPTIM,)),
    Mutant("sgd-momentum-as-dampening", "kernels/optim.py",
           "if momentum != 0:\n"
           "            b = gi if first else momentum * buf[i] + (one - dampening) * gi",
           "if momentum != 0:\n"
           "            b = gi if first else momentum * buf[i] + (one - momentum) * gi",
           (T_KOPTIM,)),
    # -- arithmetic and linear
    Mutant("linear-input-grad-detached-weight", "minigan/functional/math.py",
           "gx = MatMulT()(gy, w) if need[0] else None",
           "gx = MatMulT()(gy, Tensor(w.data)) if need[0] else None", (T_MATH,), "linear",
           "dL/dx built from w.data: first order right, no second derivative in w"),
    Mutant("mul-backward-detached", "minigan/functional/math.py",
           "ga = sum_to(gy * b, a.shape)", "ga = sum_to(gy * Tensor(b.data), a.shape)",
           (T_MATH,), "broadcasting", "d(a*b)/da built from b.data: no second derivative in b"),
    Mutant("div-backward-sign", "minigan/functional/math.py",
           "gb = sum_to(-gy * a / (b * b), b.shape)", "gb = sum_to(gy * a / (b * b), b.shape)",
           (T_MATH,), "broadcasting"),
    Mutant("spectral-norm-sigma-detached", "minigan/nn/utils.py",
           "wv = M.matmul(self._matrix(weight), Tensor(v.reshape(-1, 1), requires_grad=False))",
           "wv = Tensor(self._matrix(weight).data @ v.reshape(-1, 1))",
           ("tests/nn/test_spectral_norm.py",), "gradient",
           "sigma as a constant: the gradient misses the -<G, W> u v^T / sigma^2 term"),
    Mutant("spectral-norm-iterates-in-eval", "minigan/nn/utils.py",
           "        if module.training:\n            with no_grad():",
           "        if True:\n            with no_grad():",
           ("tests/nn/test_spectral_norm.py",), "eval_mode",
           "sampling (eval mode) moves u and v"),
    Mutant("spectral-norm-convT-dim-0", "minigan/nn/utils.py",
           "dim = 1 if isinstance(module, ConvTranspose2d) else 0", "dim = 0",
           ("tests/nn/test_spectral_norm.py",), "convT",
           "a transposed convolution normalised along its input channels"),
    Mutant("conv-taps-not-handed-on", CONV,
           "gx = Conv2d(self.stride, self.padding, pre, self.rows)(gy, w)",
           "gx = Conv2d(self.stride, self.padding, pre)(gy, w)",
           (T_CONV,), "rearranges", "the weight transposed again in the backward pass"),
    Mutant("r1-graph-not-kept", "minigan/gan/losses.py",
           "(g,) = grad(out.sum(), [x], create_graph=True)              # like x",
           "(g,) = grad(out.sum(), [x])                                 # like x",
           ("tests/gan/test_r1.py",), "weight",
           "R1's gradient taken without its graph: the penalty cannot train D"),
    Mutant("r1-lazy-weight-not-scaled", "minigan/gan/trainer.py",
           "return c.r1_gamma * c.r1_every if d_step % c.r1_every == 0 else 0.0",
           "return c.r1_gamma if d_step % c.r1_every == 0 else 0.0",
           ("tests/gan/test_r1.py",), "lazy",
           "lazy R1 without its K-fold weight: K times weaker than the setting says"),
    Mutant("r1-on-fakes", "minigan/gan/steps.py",
           "r1 = r1_penalty(D, real, r1_gamma)", "r1 = r1_penalty(D, fake.detach(), r1_gamma)",
           ("tests/gan/test_r1.py",), "real_batch",
           "the penalty taken at G's images instead of the real ones"),
]


def check_mutants(mutants, root: Path = ROOT) -> None:
    """Every snippet occurs exactly once in its file, the replacement differs, names are unique:
    the list must fail loudly, not rot, when the code moves."""
    problems, seen = [], set()
    for m in mutants:
        if m.name in seen:
            problems.append(f"{m.name}: duplicate name")
        seen.add(m.name)
        path = root / m.path
        if not path.is_file():
            problems.append(f"{m.name}: no file {m.path}")
            continue
        n = path.read_text().count(m.old)
        if n != 1:
            problems.append(f"{m.name}: snippet occurs {n} times in {m.path} (must be once): "
                            f"{m.old!r}")
        if m.old == m.new:
            problems.append(f"{m.name}: replacement equals the snippet")
        for t in m.tests:
            if not (root / t).is_file():
                problems.append(f"{m.name}: no test file {t}")
    if problems:
        sys.exit("mutations.py: the mutant list is out of date:\n  " + "\n  ".join(problems))


def copy_repo(src: Path, dst: Path) -> None:
    """src's files (working tree, __pycache__ included) to dst, mtimes kept (copy2)."""
    src = src.resolve()

    def ignore(folder, names):
        top = Path(folder).resolve() == src
        return [n for n in names if n in SKIP_ANYWHERE or n.startswith(".venv")
                or (top and n in SKIP_TOP)]

    shutil.copytree(src, dst, symlinks=True, ignore=ignore, copy_function=shutil.copy2)


def _env() -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)  # numba's cache must be the one beside each kernel file
    env.pop("PYTHONPATH", None)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_PROBE = """
import importlib, inspect, json, sys
import minigan, minigan.kernels
out = {"minigan": minigan.__file__, "kernels": minigan.kernels.__file__}
if len(sys.argv) > 1:
    mod = importlib.import_module(sys.argv[1])
    out["module"] = mod.__file__
    out["has_replacement"] = sys.argv[2] in inspect.getsource(mod)
print(json.dumps(out))
"""


def _module_name(path: str) -> str:
    """minigan/functional/conv.py -> minigan.functional.conv; kernels/norm.py ->
    minigan.kernels.norm (kernels/ is registered as minigan.kernels)."""
    mod = path[:-3].replace("/", ".")
    return "minigan." + mod if mod.startswith("kernels.") else mod


def verify_copy(copy: Path, mutant: Mutant | None) -> None:
    """Import minigan in the copy and check that it, its kernels and the mutated module are the
    copy's own (not the editable install's checkout); raise otherwise."""
    args = [sys.executable, "-c", _PROBE]
    if mutant is not None:
        args += [_module_name(mutant.path), mutant.new]
    r = subprocess.run(args, cwd=copy, env=_env(), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"importing minigan in {copy} failed:\n{r.stderr[-3000:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("minigan", "kernels", "module"):
        if key in info and not Path(info[key]).resolve().is_relative_to(copy.resolve()):
            raise RuntimeError(f"{key} was imported from {info[key]}, not from the copy {copy}: "
                               "the mutant would not be tested (is minigan/__init__.py "
                               "registering the checkout's kernels/?)")
    if mutant is not None and not info["has_replacement"]:
        raise RuntimeError(f"{mutant.name}: the imported {info['module']} lacks the replacement")


_SUMMARY = re.compile(r"(\d+) (failed|passed|errors?|skipped|deselected)")


def run_pytest(copy: Path, tests, k, seed: int) -> tuple[str, str, float]:
    """(outcome, output tail, seconds); outcome: passed, failed, error, timeout or crash."""
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            f"--hypothesis-seed={seed}", *tests]
    if k:
        args += ["-k", k]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(args, cwd=copy, env=_env(), capture_output=True, text=True,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        return "timeout", out[-2000:], time.perf_counter() - t0
    dt = time.perf_counter() - t0
    out = r.stdout + r.stderr
    counts = {}
    for n, what in _SUMMARY.findall(out.strip().splitlines()[-1] if out.strip() else ""):
        counts[what.rstrip("s") if what.startswith("error") else what] = int(n)
    if r.returncode == 0 and counts.get("passed"):
        return "passed", out[-2000:], dt
    if r.returncode == 1 and counts.get("failed") and not counts.get("error"):
        return "failed", out[-2000:], dt
    if r.returncode < 0:
        return "crash", out[-2000:], dt
    return "error", out[-2000:], dt  # collection/import errors, no tests, usage errors


def _first_failure(out: str) -> tuple[str, str]:
    """(the failing test, the first 'E   ...' line of its report) from pytest's output."""
    test = message = ""
    for line in out.splitlines():
        if line.startswith("FAILED ") and not test:
            test = line[len("FAILED "):].split(" - ")[0].split("::", 1)[-1]
        if line.startswith("E ") and not message:
            message = line[1:].strip()
    return test, message[:200]


def run_mutant(m: Mutant, snapshot: Path, seed: int, keep: bool) -> tuple[str, float, tuple]:
    """(result, seconds, (catching test, first error line or output tail)) of one mutant."""
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"minigan-mutant-{m.name}-"))
    copy = tmp / "repo"
    try:
        copy_repo(snapshot, copy)
        target = copy / m.path
        text = target.read_text()
        if text.count(m.old) != 1:
            raise RuntimeError(f"{m.name}: snippet not found once in the copy of {m.path}")
        st = target.stat()
        target.write_text(text.replace(m.old, m.new))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # newer, surely
        verify_copy(copy, m)
        outcome, out, _ = run_pytest(copy, m.tests, m.k, seed)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return "error", time.perf_counter() - t0, ("", str(e)[:600])
    finally:
        if keep:
            print(f"    kept {copy}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {"failed": "caught", "passed": "SURVIVED"}.get(outcome, outcome.upper())
    if outcome == "failed":
        test, message = _first_failure(out)
        return result, time.perf_counter() - t0, (test, message)
    return result, time.perf_counter() - t0, ("", out.strip()[-600:])


def run_baseline(mutants, snapshot: Path, seed: int) -> float:
    """The unmutated copy must pass every test file the mutants use (without their -k)."""
    tests = sorted({t for m in mutants for t in m.tests})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minigan-mutant-baseline-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repo(snapshot, copy)
        verify_copy(copy, None)
        outcome, out, _ = run_pytest(copy, tests, None, seed)
    dt = time.perf_counter() - t0
    if outcome != "passed":
        sys.exit(f"baseline: the unmutated tests do not pass ({outcome}, {dt:.0f} s):\n{out}")
    print(f"baseline: {len(tests)} test files pass unmutated ({dt:.0f} s)", flush=True)
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only these mutants (repeatable, or comma-separated)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    ap.add_argument("--keep", action="store_true", help="keep each mutant's copy")
    ap.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    args = ap.parse_args(argv)
    check_mutants(MUTANTS)
    mutants = MUTANTS
    if args.only:
        names = {n for o in args.only for n in o.split(",") if n}
        unknown = names - {m.name for m in MUTANTS}
        if unknown:
            sys.exit(f"unknown mutant(s): {', '.join(sorted(unknown))} (see --list)")
        mutants = [m for m in MUTANTS if m.name in names]
    if args.list:
        for m in mutants:
            k = f" -k {m.k!r}" if m.k else ""
            print(f"{m.name:45s} {m.path:32s} {' '.join(m.tests)}{k}")
            if m.why:
                print(f"{'':45s} {m.why}")
        print(f"{len(mutants)} mutants")
        return 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minigan-mutant-snapshot-") as tmp:
        snapshot = Path(tmp) / "repo"
        copy_repo(ROOT, snapshot)
        check_mutants(mutants, snapshot)  # the snapshot is what gets mutated
        if not args.no_baseline:
            run_baseline(mutants, snapshot, args.seed)
        rows = []
        for i, m in enumerate(mutants, 1):
            result, dt, (test, detail) = run_mutant(m, snapshot, args.seed, args.keep)
            rows.append((m, result, dt, test))
            print(f"[{i:2d}/{len(mutants)}] {m.name:45s} {result:9s} {dt:6.1f} s  {test}",
                  flush=True)
            print("    " + detail.replace("\n", "\n    "), flush=True)
    width = max(len(m.name) for m in mutants)
    print(f"\n{'mutant':{width}s}  {'file':32s}  {'result':9s}  seconds  caught by")
    for m, result, dt, test in rows:
        print(f"{m.name:{width}s}  {m.path:32s}  {result:9s}  {dt:7.1f}  {test}")
    caught = sum(r == "caught" for _, r, _, _ in rows)
    print(f"\n{caught} of {len(rows)} mutants caught; total {time.perf_counter() - t0:.0f} s")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
