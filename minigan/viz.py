"""Pictures of training: image grids, a progress GIF and loss/accuracy curves.

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
    'd_x', 'd_g_z', 'fd', 'fd_cls', 'modes'; missing keys are skipped. Records of a WGAN
    critic ('wasserstein', 'gp', 'critic_real', 'critic_fake') replace the accuracy and D
    output panels; 'grad_norm/D' and 'grad_norm/G' add a gradient-norm panel. A last panel
    shows the Frechet distance ('fd_cls', the classifier-feature one, when present, else the
    pixel 'fd') and 'modes' when any record has them. `marks` are steps drawn as red vertical
    lines (mode-collapse warnings).
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
        if name == NORM_PANEL[0] and plotted:
            ax.set_yscale("log")
    if not critic:
        axes[1].set_ylim(-0.03, 1.03)                                # accuracies
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
