"""Pictures of training: image grids, a progress GIF, loss/accuracy curves, and what a run
recorded (layer-statistics heat maps, D's logit histograms, power spectra, nearest-neighbour
sheets). This is the one plotting module; minigan.report decides what a run folder shows.

Generator output in [-1, 1] (N, C, H, W) and dataset images in uint8 (N, H, W[, 3]) are both
accepted. matplotlib is imported only by `plot_curves`, and without pyplot, so it never needs a
display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import backend

PANELS = (
    ("losses", (("loss_d", "D loss"), ("loss_g", "G loss"))),
    ("D accuracy", (("acc_real", "on real"), ("acc_fake", "on fake"))),
    ("D outputs", (("d_x", "mean D(x)"), ("d_g_z", "mean D(G(z))"))),
)
# A WGAN critic's scores are not probabilities: no accuracy, and the raw scores instead.
CRITIC_PANELS = (
    PANELS[0],
    ("critic", (("wasserstein", "Wasserstein estimate"), ("gp", "gradient penalty"))),
    ("critic outputs", (("critic_real", "mean D(x)"), ("critic_fake", "mean D(G(z))"))),
)
NORM_PANEL = ("gradient norm", (("grad_norm/D", "D"), ("grad_norm/G", "G")))


def _host(array) -> np.ndarray:
    """A NumPy array from a NumPy/CuPy array or a Tensor (anything with `.requires_grad`)."""
    if hasattr(array, "requires_grad"):
        array = array.data
    return np.asarray(backend.to_device(array, "cpu"))


def _as_uint8_nhwc(images) -> np.ndarray:
    """uint8 (N, H, W, C) from float [-1, 1] (N, C, H, W) / (N, H, W) or uint8 (N, H, W[, C])."""
    a = _host(images)
    if a.dtype == np.uint8:
        if a.ndim == 3:
            a = a[..., None]
        if a.ndim != 4 or a.shape[-1] not in (1, 3):
            raise ValueError(f"uint8 images must be (N, H, W) or (N, H, W, 3), got {a.shape}")
        return a
    if a.dtype.kind != "f":
        raise ValueError(f"images must be float in [-1, 1] or uint8, got {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"float images must be (N, C, H, W) with C = 1 or 3, got {a.shape}")
    a = np.nan_to_num(a.astype(np.float64), nan=-1.0)
    a = np.rint(np.clip((a + 1.0) * 127.5, 0, 255)).astype(np.uint8)
    return a.transpose(0, 2, 3, 1)                                    # (N, H, W, C)


def image_grid(images, nrow: int = 8, padding: int = 2, pad_value: int = 128) -> np.ndarray:
    """Tile images into one uint8 picture, `nrow` images per row: (H, W) or (H, W, 3).

    `pad_value` (0-255) fills the gaps; the default mid grey keeps black-background images
    apart. Float input maps -1 -> 0 and 1 -> 255.
    """
    a = _as_uint8_nhwc(images)
    n, h, w, c = a.shape
    if n == 0:
        raise ValueError("image_grid got no images")
    if nrow < 1 or padding < 0:
        raise ValueError(f"need nrow >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c),
                   pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y:y + h, x:x + w] = a[i]
    return grid[..., 0] if c == 1 else grid


def save_grid(images, path: str | os.PathLike, nrow: int = 8, scale: int = 2,
              padding: int = 2, pad_value: int = 128) -> Path:
    """Save `image_grid(images)` as a PNG, each pixel blown up to scale x scale."""
    from PIL import Image

    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    grid = image_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def save_gif(frames: Sequence, path: str | os.PathLike, duration_ms: int = 300, loop: int = 0,
             hold_last_ms: int = 2000) -> Path:
    """Save image files or uint8 arrays ((H, W) or (H, W, 3)) as an animated GIF.

    The last frame stays `hold_last_ms` so the final result can be seen; loop=0 loops forever.
    Pillow merges consecutive identical frames into one longer frame.
    """
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("save_gif got no frames")
    pictures = []
    for f in frames:
        if isinstance(f, (str, os.PathLike)):
            with Image.open(f) as img:
                pictures.append(img.convert("RGB" if img.mode not in ("L", "1") else "L"))
        else:
            a = _host(f)
            if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
                raise ValueError("array frames must be uint8 (H, W) or (H, W, 3), got "
                                 f"{a.dtype} {a.shape}")
            pictures.append(Image.fromarray(a))
    sizes = {p.size for p in pictures}
    if len(sizes) > 1:
        raise ValueError(f"GIF frames must all have one size, got {sorted(sizes)}")
    if any(p.mode == "RGB" for p in pictures):
        pictures = [p.convert("RGB") for p in pictures]
    durations = [int(duration_ms)] * (len(pictures) - 1) + [max(hold_last_ms, duration_ms)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=durations, loop=loop)
    return path


def _series(records: Sequence[dict], key: str) -> tuple[list, list]:
    """(steps, values) for the records that hold a finite number under `key`."""
    xs, ys = [], []
    for i, record in enumerate(records):
        try:
            value = float(record[key])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            xs.append(record.get("step", i))
            ys.append(value)
    return xs, ys


def _plot(ax, xs: list, ys: list, label: str, color: str) -> None:
    """Raw values faint, plus a running mean when there are many points."""
    window = len(ys) // 50
    if window < 2:
        ax.plot(xs, ys, color=color, lw=1.2, label=label)
        return
    ax.plot(xs, ys, color=color, lw=0.6, alpha=0.3)
    mean = np.convolve(ys, np.ones(window) / window, mode="valid")
    ax.plot(xs[window - 1:], mean, color=color, lw=1.4, label=f"{label} (mean of {window})")


def plot_curves(records: Sequence[dict], path: str | os.PathLike,
                marks: Sequence[float] | None = None, title: str | None = None) -> Path:
    """Plot training records to an image: losses, D accuracy, D outputs, and quality metrics.

    Each record is a dict with some of 'step', 'loss_d', 'loss_g', 'acc_real', 'acc_fake',
    'd_x', 'd_g_z', 'fd', 'fd_cls', 'modes', 'lr_g', 'lr_d', 'r1', 'g_top_k'; missing keys are
    skipped. The learning rates, when scheduled (logged), are dashed lines on the loss panel's
    right axis, an R1 penalty a dotted one on its left, and top-k training's k (how many of a
    batch's samples G learns from) a dash-dotted one on the second panel's right axis.
    Records of a WGAN critic ('wasserstein', 'gp', 'critic_real', 'critic_fake') replace the
    accuracy and D output panels; 'grad_norm/D' and 'grad_norm/G' add a gradient-norm panel.
    A last panel shows the Frechet distance ('fd_cls', the classifier-feature one, when
    present, else the pixel 'fd') and 'modes' when any record has them. `marks` are steps
    drawn as red vertical lines (mode-collapse warnings).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    critic = any("wasserstein" in r for r in records)
    panels = list(CRITIC_PANELS if critic else PANELS)
    if any(NORM_PANEL[1][0][0] in r for r in records):
        panels.append(NORM_PANEL)
    quality = any(k in r for r in records for k in ("fd", "fd_cls", "modes"))
    n_panels = len(panels) + quality
    fig = Figure(figsize=(8, 2.4 * n_panels), layout="constrained")
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    colors = ("tab:blue", "tab:orange")
    for ax, (name, keys) in zip(axes, panels, strict=False):
        plotted = False
        for (key, label), color in zip(keys, colors, strict=True):
            xs, ys = _series(records, key)
            if xs:
                _plot(ax, xs, ys, label, color)
                plotted = True
        ax.set_ylabel(name)
        if not plotted:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="gray")
        if name == NORM_PANEL[0] and plotted and any(
                v > 0 for key, _ in keys for v in _series(records, key)[1]):
            ax.set_yscale("log")
    xs, ys = _series(records, "r1")
    if xs:
        axes[0].plot(xs, ys, ":", color="tab:red", lw=1, label="R1 penalty")
    if not critic:
        axes[1].set_ylim(-0.03, 1.03)                                # accuracies
    _plot_lr(axes[0], records)
    _plot_top_k(axes[1], records)
    if quality:
        ax = axes[-1]
        fd_key = "fd_cls" if any("fd_cls" in r for r in records) else "fd"
        xs, ys = _series(records, fd_key)
        if xs:
            ax.plot(xs, ys, "o-", color="tab:green", ms=3,
                    label="Frechet distance" + (" (classifier)" if fd_key == "fd_cls" else ""))
        ax.set_ylabel("quality")
        xs, ys = _series(records, "modes")
        if xs:
            twin = ax.twinx()
            twin.plot(xs, ys, "s--", color="tab:purple", ms=3, label="modes covered")
            twin.set_ylabel("modes")
            top = max(ys + [r.get("num_classes") or 0 for r in records])
            twin.set_ylim(-0.3, top + 0.7)                              # 0 .. all classes
            twin.yaxis.set_major_locator(MaxNLocator(integer=True))
            twin.legend(loc="upper right", fontsize=8)
    for i, ax in enumerate(axes):
        for j, step in enumerate(marks or ()):
            ax.axvline(step, color="red", lw=1, alpha=0.7,
                       label="mode-collapse warning" if i == j == 0 else None)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _plot_lr(ax, records: Sequence[dict]) -> None:
    """G's and D's learning rates (one line when they are equal) on a right-hand axis."""
    xg, yg = _series(records, "lr_g")
    xd, yd = _series(records, "lr_d")
    if not (xg or xd):
        return
    twin = ax.twinx()
    if (xg, yg) == (xd, yd):
        twin.plot(xg, yg, "--", color="gray", lw=1, label="learning rate")
    else:
        for xs, ys, label, style in ((xg, yg, "G's learning rate", "--"),
                                     (xd, yd, "D's learning rate", ":")):
            if xs:
                twin.plot(xs, ys, style, color="gray", lw=1, label=label)
    twin.set_ylim(bottom=0)
    twin.set_ylabel("learning rate", fontsize=8)
    twin.tick_params(labelsize=7)
    twin.legend(loc="upper right", fontsize=8)


def _plot_top_k(ax, records: Sequence[dict]) -> None:
    """Top-k training's k, the samples of each batch G learns from, on a right-hand axis."""
    from matplotlib.ticker import MaxNLocator

    xs, ys = _series(records, "g_top_k")
    if not xs:
        return
    twin = ax.twinx()
    twin.plot(xs, ys, "-.", color="tab:brown", lw=1.2, label="top-k: samples G learns from")
    twin.set_ylim(0, max(ys) * 1.08)
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))
    twin.set_ylabel("k", fontsize=8)
    twin.tick_params(labelsize=7)
    twin.legend(loc="lower right", fontsize=8)


# ---- what a run recorded: layer statistics, D's logits, spectra, nearest neighbours --------

INTERNAL_PANELS = (  # (statistic, title, colour map, transform)
    ("mean", "activation mean", "RdBu_r", None),
    ("std", "activation std (log10)", "viridis", "log10"),
    ("neg", "LeakyReLU inputs < 0 (fraction)", "magma", None),
    ("grad", "gradient norm at the output (log10)", "viridis", "log10"),
    ("bn_shift", "BatchNorm |batch - running mean| / running std", "viridis", None),
    ("bn_log_var_ratio", "BatchNorm log(batch var / running var)", "RdBu_r", None),
)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def internals_matrix(lines: Sequence[dict], stat: str) -> tuple[list, list, np.ndarray]:
    """(layer labels, steps, values (layers, steps)) of one statistic of internals.jsonl lines;
    NaN where a layer has no such statistic."""
    names: dict = {}
    for line in lines:
        for name, v in line["layers"].items():
            names.setdefault(name, f"{name} {v.get('type', '')}".strip())
    steps = [line["step"] for line in lines]
    m = np.full((len(names), len(lines)), np.nan)
    for j, line in enumerate(lines):
        for i, name in enumerate(names):
            v = line["layers"].get(name, {}).get(stat)
            if v is not None:
                m[i, j] = v
    return list(names.values()), steps, m


def plot_internals(lines: Sequence[dict], path: str | os.PathLike,
                   title: str | None = None) -> Path:
    """internals.jsonl as heat maps: one row per layer (G's, then D's), training step along x,
    one panel per statistic; a dead layer or an exploding gradient is a stripe."""
    import matplotlib

    labels = internals_matrix(lines, "mean")[0] if lines else []
    rows = max(len(labels), 1)
    fig = _figure(15, 1.2 + 3 * (0.6 + 0.17 * rows))
    axes = fig.subplots(3, 2, squeeze=False).ravel()
    for ax, (stat, name, cmap, transform) in zip(axes, INTERNAL_PANELS, strict=True):
        _, steps, m = internals_matrix(lines, stat) if lines else ([], [], np.zeros((0, 0)))
        zero = np.zeros(m.shape, bool)
        if transform == "log10":
            zero = m == 0                               # a dead layer: drawn in red, below
            with np.errstate(divide="ignore", invalid="ignore"):
                m = np.where(zero, np.nan, np.log10(np.abs(m)))
            if zero.any():
                name += "; red: exactly 0"
        finite = m[np.isfinite(m)]
        ax.set_title(name, fontsize=10)
        if finite.size == 0:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="gray")
            ax.set_yticks([])
            continue
        lo, hi = np.percentile(finite, [1, 99])
        if cmap == "RdBu_r":                                     # centred on 0
            lo, hi = -max(abs(lo), abs(hi), 1e-12), max(abs(lo), abs(hi), 1e-12)
        elif stat == "neg":
            lo, hi = 0.0, 1.0
        cm = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")
        x0, x1 = (steps[0], steps[-1]) if len(steps) > 1 else (steps[0] - 0.5, steps[0] + 0.5)
        extent = (x0, x1, len(labels) - 0.5, -0.5)
        im = ax.imshow(np.ma.masked_invalid(np.clip(m, lo, hi)), aspect="auto", cmap=cm,
                       vmin=lo, vmax=hi if hi > lo else lo + 1e-12, interpolation="nearest",
                       extent=extent)
        if zero.any():                                   # exact zeros on top, in red
            red = matplotlib.colors.ListedColormap(["red"]).with_extremes(bad=(0, 0, 0, 0))
            ax.imshow(np.ma.masked_where(~zero, np.ones(m.shape)), aspect="auto", cmap=red,
                      vmin=0, vmax=2, interpolation="nearest", extent=extent)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("step", fontsize=8)
        first_d = next((i for i, s in enumerate(labels) if s.startswith("D")), 0)
        if first_d:
            ax.axhline(first_d - 0.5, color="black", lw=1.2)          # G above, D below
        fig.colorbar(im, ax=ax, shrink=0.9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def spread(items: Sequence, n: int) -> list:
    """At most n of `items`, evenly spread, in order: the first and the last always (the last
    alone when n is 1)."""
    items = list(items)
    if len(items) <= n:
        return items
    if n < 2:
        return items[-1:] if n == 1 else []
    keep = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in keep]


def plot_logit_histograms(views: Sequence[dict], path: str | os.PathLike,
                          max_rows: int = 16) -> Path:
    """D's logits on the fixed real and fake batches, one row of two histograms per epoch (at
    most `max_rows` epochs, spread evenly over the run: the first and the last always), stacked
    on shared bins with the latest on top; 0 (D undecided) marked, and how often D is right at
    0 written beside each row. One axes, so it redraws quickly."""
    views = spread(views, max_rows)
    fig = _figure(7.0, 1.2 + 0.36 * max(len(views), 1))
    ax = fig.subplots()
    every = np.concatenate([np.asarray(v[k], np.float64) for v in views
                            for k in ("logits_real", "logits_fake")]) if views else np.zeros(1)
    every = every[np.isfinite(every)]
    span = np.percentile(np.abs(every), 99.5) if every.size else 1.0
    lo, hi = -max(span, 1e-6), max(span, 1e-6)                       # 0 in the middle
    bins = np.linspace(lo, hi, 41)
    labels = []
    for row, v in enumerate(views):
        real = np.clip(np.asarray(v["logits_real"], np.float64), lo, hi)
        fake = np.clip(np.asarray(v["logits_fake"], np.float64), lo, hi)
        counts = [np.histogram(x, bins)[0].astype(np.float64) for x in (real, fake)]
        top = max(c.max() for c in counts) or 1.0
        for c, color, label in zip(counts, ("tab:blue", "tab:orange"), ("real", "G(z)"),
                                   strict=True):
            ax.stairs(row + 0.9 * c / top, bins, baseline=row, fill=True, color=color,
                      alpha=0.55, label=label if row == 0 else None)
        acc = 0.5 * ((real > 0).mean() + (fake < 0).mean()              # a tie is half right
                     + 0.5 * (real == 0).mean() + 0.5 * (fake == 0).mean())
        labels.append(f"epoch {v['epoch']}: D right on {100 * acc:.0f}%")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(views)) + 0.35, labels, fontsize=8)
    ax.set_ylim(-0.1, max(len(views), 1))
    ax.set_xlim(lo, hi)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("D's logit (> 0: 'real')", fontsize=9)
    if views:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_spectra(real: np.ndarray, fakes: Sequence[tuple[str, np.ndarray]],
                 path: str | os.PathLike, max_panels: int = 6) -> Path:
    """Mean log10 power spectra (fftshifted: lowest frequency in the middle, highest at the
    edges): real images, then each labelled fake one, and below each fake, fake - real."""
    import matplotlib

    fakes = spread(fakes, max_panels)
    cols = 1 + len(fakes)
    fig = _figure(2.3 * cols + 0.8, 4.8)
    axes = fig.subplots(2, cols, squeeze=False)
    real = np.asarray(real, np.float64)
    lo, hi = np.percentile(np.concatenate([real.ravel()] + [np.ravel(f) for _, f in fakes]),
                           [1, 99.5])
    diffs = [np.asarray(f, np.float64) - real for _, f in fakes]
    span = max([np.abs(d).max() for d in diffs] + [1e-6])
    im = axes[0, 0].imshow(real, cmap="inferno", vmin=lo, vmax=hi)
    axes[0, 0].set_title("real", fontsize=9)
    axes[1, 0].text(0.5, 0.5, "below: samples\nminus real\n(log10 power)", ha="center",
                    va="center", fontsize=8, transform=axes[1, 0].transAxes)
    cm = matplotlib.colormaps["RdBu_r"]
    dim = None
    for j, ((label, f), d) in enumerate(zip(fakes, diffs, strict=True), start=1):
        axes[0, j].imshow(np.asarray(f, np.float64), cmap="inferno", vmin=lo, vmax=hi)
        axes[0, j].set_title(label, fontsize=9)
        dim = axes[1, j].imshow(d, cmap=cm, vmin=-span, vmax=span)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.8, label="log10 power")
    if dim is not None:
        fig.colorbar(dim, ax=axes[1, :].tolist(), shrink=0.8, label="difference")
    return _save(fig, path)


def save_nearest_sheet(samples, neighbours, path: str | os.PathLike, scale: int = 2) -> Path:
    """Each sample (N, C, H, W) in a row, a gap, then its k nearest training images
    (N, k, C, H, W); floats in [-1, 1] or uint8 as image_grid takes them."""
    s = _as_uint8_nhwc(samples)                                   # (N, H, W, C)
    nb = _as_uint8_nhwc(np.asarray(neighbours).reshape((-1,) + np.shape(neighbours)[2:]))
    n, k = s.shape[0], np.shape(neighbours)[1]
    nb = nb.reshape(n, k, *nb.shape[1:])
    blank = np.full_like(s[:1], 128)                              # the gap column
    tiles = np.concatenate([np.concatenate([s[i:i + 1], blank, nb[i]]) for i in range(n)])
    return save_grid(tiles, path, nrow=k + 2, scale=scale, pad_value=128)


# ---- the 2-D lab: D's judgement, G's mapping, the mode protocol ------------------------------

def plot_lab_frame(path: str | os.PathLike, surface: np.ndarray, extent: Sequence[float],
                   real: np.ndarray, fake: np.ndarray, push: np.ndarray, noise_grid: np.ndarray,
                   critic: bool = False, title: str | None = None) -> Path:
    """One frame of a 2-D run, always the same pixel size (so frames make a GIF).

    Left: D's output over the plane as a heat map (`surface` (H, W) over `extent` (x0, x1, y0,
    y1); probabilities in [0, 1], or a critic's scores), real points (black) and fake points
    (white), and on each fake point an arrow along `push` (where G's loss moves it; lengths
    scaled so the longest is a tenth of the width). Right: G's image of a regular grid of noise
    points, `noise_grid` (L, P, 2) polylines, over the real points.
    """
    fig = _figure(10.0, 5.0)
    left, right = fig.subplots(1, 2)
    x0, x1, y0, y1 = extent
    if critic:
        image = left.imshow(surface, origin="lower", extent=extent, cmap="RdBu_r", aspect="auto")
        label = "D's score (critic)"
    else:
        image = left.imshow(surface, origin="lower", extent=extent, cmap="RdBu_r", vmin=0,
                            vmax=1, aspect="auto")
        label = "D(x): probability real"
    fig.colorbar(image, ax=left, shrink=0.8, label=label)
    left.scatter(real[:, 0], real[:, 1], s=3, c="black", alpha=0.6, label="real")
    left.scatter(fake[:, 0], fake[:, 1], s=4, c="white", edgecolors="none", label="fake")
    norms = np.linalg.norm(push, axis=1)
    if norms.max() > 0:
        scale = 0.1 * (x1 - x0) / norms.max()
        left.quiver(fake[:, 0], fake[:, 1], scale * push[:, 0], scale * push[:, 1],
                    angles="xy", scale_units="xy", scale=1, color="gold", width=0.003,
                    alpha=0.8)
    left.set_title("D over the plane; real (black), fake (white), G's pull (arrows)",
                   fontsize=9)
    right.scatter(real[:, 0], real[:, 1], s=3, c="tab:red", alpha=0.5)
    half = len(noise_grid) // 2
    for i, line in enumerate(noise_grid):
        right.plot(line[:, 0], line[:, 1], lw=0.6,
                   color="tab:blue" if i < half else "tab:green", alpha=0.8)
    right.set_title("G's image of a regular noise grid; real points in red", fontsize=9)
    for ax in (left, right):
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_protocol(records: Sequence[dict], path: str | os.PathLike,
                  num_modes: int | None = None) -> Path:
    """The mode protocol over training: modes covered, % high-quality samples, reverse KL."""
    fig = _figure(8.0, 6.0)
    axes = fig.subplots(3, 1, sharex=True)
    for ax, key, label, color in zip(
            axes, ("modes", "high_quality", "reverse_kl"),
            ("modes covered", "high quality (%)", "reverse KL"),
            ("tab:purple", "tab:green", "tab:red"), strict=True):
        xs, ys = _series(records, key)
        ax.plot(xs, ys, "o-", ms=3, color=color)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if num_modes:
        axes[0].axhline(num_modes, color="gray", ls=":", lw=1)
        axes[0].set_ylim(-0.3, num_modes + 0.7)
    axes[1].set_ylim(-2, 102)
    axes[-1].set_xlabel("step")
    return _save(fig, path)
# ---- sweeps: one value per run, many runs per setting ---------------------------------------

def plot_distributions(panels: Sequence[tuple[str, dict]], path: str | os.PathLike,
                       title: str | None = None) -> Path:
    """Side-by-side panels, each (y label, {group: [value per run]}): a box per group with
    every run drawn over it as a point (jittered sideways, seeded, so a redraw is the same).
    A panel whose label starts with '%' shows each group's mean as a bar instead (a fraction
    of runs, e.g. how many collapsed). Groups without a value are left empty."""
    panels = list(panels)
    groups = list(dict.fromkeys(g for _, d in panels for g in d))
    fig = _figure(max(3.2, 0.9 * len(groups) + 1.6) * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    rng = np.random.default_rng(0)
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for ax, (label, data) in zip(axes, panels, strict=True):
        pos = np.arange(1, len(groups) + 1)
        if label.startswith("%"):
            means = [np.mean(data[g]) * 100 if data.get(g) else 0.0 for g in groups]
            ax.bar(pos, means, color=colors, alpha=0.7)
            for x, m, g in zip(pos, means, groups, strict=True):
                ax.text(x, m + 2, f"{sum(map(bool, data.get(g, [])))}/{len(data.get(g, []))}",
                        ha="center", fontsize=8)
            ax.set_ylim(0, 105)
            label = label[1:].strip() + " (% of runs)"
        else:
            values = [np.asarray([v for v in data.get(g, []) if v is not None], np.float64)
                      for g in groups]
            filled = [i for i, v in enumerate(values) if v.size]
            if filled:
                ax.boxplot([values[i] for i in filled], positions=pos[filled], widths=0.5,
                           showfliers=False, medianprops={"color": "black"})
            for i, v in enumerate(values):
                x = pos[i] + rng.uniform(-0.12, 0.12, v.size)
                ax.plot(x, v, "o", color=colors[i], ms=5, alpha=0.8, zorder=3)
        ax.set_xticks(pos, [g.replace(" ", "\n") for g in groups], fontsize=8)
        ax.set_xlim(0.4, len(groups) + 0.6)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
