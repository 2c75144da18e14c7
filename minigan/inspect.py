"""Views of a trained run: is G copying its training set, and where its artifacts come from.

    python -m minigan inspect RUN

writes RUN/nearest.png (samples beside their nearest training images, in the quality
classifier's feature space where the dataset has one, else in pixel space), RUN/spectrum.png
(mean power spectrum of samples beside real images'), RUN/inspect.json (the numbers) and
rewrites RUN/index.html.

The copying figure is a ratio: the mean distance from a sample to its nearest training image
over the mean distance from a held-out real image to its nearest training image. About 1: the
samples are as close to the training set as new real images are; well below 1: G reproduces
training images; above 1: the samples are farther from the data than real images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .gan.callbacks import power_spectrum


def load_run(run: str | os.PathLike, device: str = "cpu"):
    """(G, D, info) of a run folder, with its last checkpoint's weights; info is config.json
    plus 'trained_steps'."""
    from .gan import TrainConfig, build, load_checkpoint, net_options

    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.json)")
    info = json.loads((run / "config.json").read_text())
    c = info["config"]
    from .gan.trainer import make_config_loss

    critic = make_config_loss(TrainConfig.from_dict(c)).critic
    recipe = "wgan-gp" if critic and c["recipe"] == "default" else c["recipe"]
    G, D, _ = build(c["arch"], info["image_shape"], c["z_dim"], recipe, c.get("width", 64),
                    critic=critic, spectral_norm=c.get("spectral_norm", False),
                    **net_options(c))
    state = load_checkpoint(run / "checkpoints" / "last.npz")
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    G.to(device)
    D.to(device)
    info["trained_steps"] = int(state["step"])
    return G, D, info


def nearest(queries: np.ndarray, refs: np.ndarray, k: int = 1,
            chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, k) into `refs` (M, D) of each query's (N, D) k nearest rows, and their
    Euclidean distances (N, k), nearest first."""
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    r = np.asarray(refs, np.float64).reshape(len(refs), -1)
    k = min(k, len(r))
    r2 = (r * r).sum(axis=1)
    idx, dist = [], []
    for lo in range(0, len(q), chunk):
        qc = q[lo:lo + chunk]
        d2 = (qc * qc).sum(axis=1)[:, None] + r2[None, :] - 2.0 * qc @ r.T    # (n, M)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d2, part, axis=1).argsort(axis=1)
        part = np.take_along_axis(part, order, axis=1)
        idx.append(part)
        dist.append(np.sqrt(np.maximum(np.take_along_axis(d2, part, axis=1), 0.0)))
    return np.concatenate(idx), np.concatenate(dist)


def _to_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W[, 3]) -> float32 (N, C, H, W) in [-1, 1], as the loader scales them."""
    x = images_uint8[:, None] if images_uint8.ndim == 3 else images_uint8.transpose(0, 3, 1, 2)
    return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def _held_out(info: dict, train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(train images to search, held-out real images, what the held-out images are)."""
    from . import metrics
    from .gan import has_quality_metrics

    c = info["config"]
    if has_quality_metrics(c["dataset"]):
        try:
            return train, metrics.real_images(c["dataset"], "test", c.get("data_root")), \
                "the classifier's test split"
        except (ValueError, OSError):
            pass
    rng = np.random.default_rng(seed)               # no split: hold out a tenth of the run's
    order = rng.permutation(len(train))
    cut = max(1, len(train) // 10)
    return train[np.sort(order[cut:])], train[np.sort(order[:cut])], \
        "a tenth of the training images, left out of the search"


def _space(info: dict, device: str):
    """(feature function of uint8 or float images, name of the space)."""
    from . import metrics
    from .gan import has_quality_metrics

    c = info["config"]
    if has_quality_metrics(c["dataset"]):
        try:
            model = metrics.classifier(c["dataset"], c.get("data_root"), device=device)
            return (lambda x: model.predict(x)[0]), "classifier-feature"
        except Exception as e:  # noqa: BLE001 - fall back to pixels and say why
            print(f"inspect: no classifier for {c['dataset']} ({e}); using pixel space")

    def pixels(x):
        x = _to_float(x) if np.asarray(x).dtype == np.uint8 else np.asarray(x, np.float32)
        return x.reshape(len(x), -1)
    return pixels, "pixel"


def inspect_run(run: str | os.PathLike, n: int = 8, k: int = 5, n_stats: int = 500,
                seed: int = 0, device: str = "cpu") -> dict:
    """Write nearest.png, spectrum.png and inspect.json into the run and rewrite its page;
    returns what inspect.json holds."""
    from . import report, viz
    from .gan import TrainConfig, generate, load_images

    run = Path(run)
    G, _, info = load_run(run, device)
    c = info["config"]
    config = TrainConfig.from_dict(c)
    images = load_images(config)                                     # uint8, as trained on
    train, held, held_what = _held_out(info, images, seed)
    n_stats = max(int(n_stats), int(n))
    z = np.random.default_rng(seed).standard_normal((n_stats, c["z_dim"]), dtype=np.float32)
    samples = generate(G, z, batch_size=info["recipe"]["batch_size"], seed=seed)  # (S, C, H, W)

    features, space = _space(info, device)
    f_train = features(train)
    idx, d_samples = nearest(features(samples), f_train, k)
    rng = np.random.default_rng(seed + 1)
    held = held[np.sort(rng.choice(len(held), min(n_stats, len(held)), replace=False))]
    _, d_real = nearest(features(held), f_train, 1)
    ratio = float(d_samples[:, 0].mean() / max(d_real[:, 0].mean(), 1e-12))
    viz.save_nearest_sheet(samples[:n], _to_float(train[idx[:n].ravel()]).reshape(
        n, idx.shape[1], *samples.shape[1:]), run / "nearest.png", scale=2)

    real_spec = power_spectrum(_to_float(train[np.sort(rng.choice(
        len(train), min(2000, len(train)), replace=False))]))
    fake_spec = power_spectrum(samples)
    viz.plot_spectra(real_spec, [(f"samples, step {info['trained_steps']}", fake_spec)],
                     run / "spectrum.png")
    diff = fake_spec - real_spec                  # fftshifted: row 0 and column 0 are Nyquist
    result = {
        "step": info["trained_steps"],
        "nearest": {"space": space, "k": int(idx.shape[1]), "n_samples": len(samples),
                    "sample_to_train": float(d_samples[:, 0].mean()),
                    "real_to_train": float(d_real[:, 0].mean()), "ratio": ratio,
                    "held_out": held_what, "n_held_out": len(held), "n_train": len(train)},
        "spectrum": {"nyquist_excess_log10": float(np.concatenate([diff[0], diff[1:, 0]]).mean()),
                     "mean_excess_log10": float(diff.mean())},
    }
    with atomic_open(run / "inspect.json", "w") as f:
        f.write(json.dumps(result, indent=2) + "\n")
    report.refresh(run)
    return result


def describe(result: dict, run: str | os.PathLike) -> str:
    """The lines `python -m minigan inspect` prints."""
    nn, sp = result["nearest"], result["spectrum"]
    run = Path(run)
    return "\n".join([
        f"{run}: step {result['step']}, {nn['n_samples']} samples, {nn['space']} space",
        f"  mean distance, sample -> nearest of {nn['n_train']} training images: "
        f"{nn['sample_to_train']:.4g}",
        f"  mean distance, held-out real ({nn['held_out']}, {nn['n_held_out']}) -> nearest "
        f"training image: {nn['real_to_train']:.4g}",
        f"  ratio {nn['ratio']:.3f} (well below 1: copying; about 1: as close as new real "
        "images; above 1: farther than real images)",
        f"  power spectrum, samples minus real (log10): {sp['mean_excess_log10']:+.3f} on "
        f"average, {sp['nyquist_excess_log10']:+.3f} at the highest frequencies",
        f"  wrote {run / 'nearest.png'}, {run / 'spectrum.png'}, {run / 'inspect.json'}, "
        f"{run / 'index.html'}",
    ])


__all__ = ["describe", "inspect_run", "load_run", "nearest"]
