"""Measure what a GAN learned, through the eyes of a small classifier trained with minigan.

A CNN is trained once per dataset (MNIST digits; the Quick, Draw! categories on disk) and cached
in the user cache folder under a key that hashes the training data and the recipe. Its
penultimate features (the 128 inputs of the last layer) and its predictions give:

- `frechet_distance`: the FID formula on those features (lower is closer to the real data);
- the class histogram of the samples, `mode_coverage` (classes with at least 2% of them), the
  KL divergence to the real class distribution, the class entropy, the mean max-softmax
  confidence;
- `diversity`: mean pairwise feature distance relative to real data, and its local twin
  `nn_diversity`, the mean distance to the nearest other sample relative to real data;
- for Quick, Draw! drawings, without the classifier (`minigan.data.enclosed_marks`): `closed`,
  the share of drawings whose outline closes, `marks2`, the share whose outline closes
  around two marks or more (a face's eyes and mouth, the features a blurry sample loses first),
  `marks3`, around three or more (two eyes and a mouth), and `marks2_bold` and `marks3_bold`,
  the same with only bold strokes (uint8 180 or more) counted.

`evaluate` computes them all for a batch of images, `real_floor` the same figures for real test
images (what a perfect generator would score), and `collapse_warning` reads a result and says
when the samples look mode-collapsed.

Measured with the default recipes (seed 0): the MNIST classifier reaches 98.63% test accuracy
(2 epochs, 12 min on two busy CPU cores), the Quick Draw one 93.7% on apple/cat/circle/smiley
face. Real test images against the training images score FD 2.7 (MNIST, 10000 images; 4.9 for
2000, 15.6 for 500: the FD grows as N shrinks, so compare at equal N), 0.3 (Quick Draw, 2400),
with every class covered, KL < 0.002 and diversity 1.00.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import backend, nn, optim
from .atomic import atomic_open
from .autograd import Tensor, no_grad
from .data import datasets, enclosed_marks
from .data.download import data_root

CACHE_ENV = "MINIGAN_CACHE"
RECIPE_VERSION = 1               # bump when the training code changes what a recipe produces
MODE_FRACTION = 0.02             # a class is a covered mode when it holds at least 2% of samples
MIN_REAL_ENTROPY = 0.5           # below (nats), real data has one class: no entropy ratio
DIVERSITY_SAMPLES = 2000         # pairwise distances use at most this many samples
REFERENCE_SAMPLES = 10000        # real training images behind the reference statistics
# Defaults sit between measured healthy and collapsed sets (MNIST and Quick Draw classifiers, 2000
# samples). Healthy (real test images, with pixel noise up to sigma 50, shifted +-2 px): diversity
# >= 0.85, nn_diversity >= 0.88, entropy ratio >= 0.998. Collapsed (copies of one image, one image
# jittered by +-2 px and noise, 5-200 images repeated, a constant generator): diversity <= 0.48
# for the single-image sets, nn_diversity <= 0.14; one class of real images: entropy ratio
# <= 0.31; half the classes: 0.62-0.71.
DEFAULT_THRESHOLDS = {
    "diversity": 0.6,            # mean pairwise feature distance, relative to real
    "nn_diversity": 0.3,         # mean nearest-neighbour feature distance, relative to real
    "class_entropy": 0.75,       # class entropy relative to real (real entropy >= 0.5 nats)
}



def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    f = _features_2d(feats, "gaussian_stats")
    if len(f) < 2:
        raise ValueError(f"gaussian_stats: need at least 2 samples, got {len(f)}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """||mu_a - mu_b||^2 + Tr(Sa + Sb - 2 (Sa Sb)^(1/2)) for two Gaussians.

    Tr (Sa Sb)^(1/2) is computed as Tr (A Sb A)^(1/2) with A = Sa^(1/2): A Sb A is similar to
    Sa Sb, symmetric and PSD, so `eigh` applies and rounding cannot make the root complex.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sa, sb = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(sigma_b)
    sb = sb.astype(np.float64)
    if mu_a.shape != mu_b.shape or sa.shape != sb.shape or sa.shape != mu_a.shape * 2:
        raise ValueError(f"frechet_distance: shapes differ: mu {mu_a.shape} vs {mu_b.shape}, "
                         f"sigma {sa.shape} vs {sb.shape}")
    for name, a in (("mu_a", mu_a), ("mu_b", mu_b), ("sigma_a", sa), ("sigma_b", sb)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"frechet_distance: {name} holds NaN or inf (did the samples "
                             "diverge?)")
    root_a = _sqrtm_psd(sa)
    m = root_a @ sb @ root_a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * tr_covmean
    return float(max(fd, 0.0))


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D)."""
    return frechet_distance_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def class_histogram(labels_or_probs, num_classes: int | None = None) -> np.ndarray:
    """Fraction of samples per class, from labels (N,) or class probabilities (N, K)."""
    a = np.asarray(labels_or_probs)
    if a.ndim == 2:
        num_classes = a.shape[1] if num_classes is None else num_classes
        a = a.argmax(axis=1)
    if a.ndim != 1 or len(a) == 0:
        raise ValueError(f"class_histogram: expected labels (N,) or probabilities (N, K) with "
                         f"N > 0, got shape {np.shape(labels_or_probs)}")
    num_classes = int(a.max()) + 1 if num_classes is None else num_classes
    return np.bincount(a.astype(np.int64), minlength=num_classes) / len(a)


def mode_coverage(hist, min_fraction: float = MODE_FRACTION) -> int:
    """Number of classes that hold at least `min_fraction` of the samples."""
    return int((np.asarray(hist, np.float64) >= min_fraction - 1e-12).sum())


def kl_divergence(p, q, eps: float = 1e-4) -> float:
    """KL(p || q) in nats for two class distributions.

    q is smoothed by `eps` (then renormalised) so that a class the real data never shows costs
    a large but finite amount instead of infinity; p needs no smoothing (0 log 0 = 0).
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"kl_divergence: expected two 1-D histograms of one length, got "
                         f"{p.shape} and {q.shape}")
    p, q = p / p.sum(), (q / q.sum() + eps) / (1 + eps * len(q))
    nz = p > 0
    return float(max((p[nz] * np.log(p[nz] / q[nz])).sum(), 0.0))


def class_entropy(hist) -> float:
    """Entropy in nats of a class histogram: ln K for K equally used classes, 0 for one."""
    h = np.asarray(hist, np.float64)
    h = h[h > 0] / h.sum()
    return float(max(-(h * np.log(h)).sum(), 0.0)) + 0.0  # + 0.0: no negative zero


def mean_confidence(probs) -> float:
    """Mean of the largest softmax probability: how sure the classifier is of the samples."""
    return float(np.asarray(probs, np.float64).max(axis=1).mean())


def _subsample(feats: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(feats) <= n:
        return feats
    return feats[np.sort(np.random.default_rng(seed).choice(len(feats), n, replace=False))]


def _distances(feats: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix (N, N) of float64 features."""
    f = feats - feats.mean(axis=0)
    sq = (f * f).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * f @ f.T
    d2[d2 <= 1e-12 * (sq[:, None] + sq[None, :])] = 0.0     # rounding, e.g. repeated samples
    return np.sqrt(d2)


def mean_pairwise_distance(feats, max_samples: int = DIVERSITY_SAMPLES, seed: int = 0) -> float:
    """Mean Euclidean distance over distinct pairs (of at most `max_samples` samples)."""
    f = _subsample(_features_2d(feats, "mean_pairwise_distance"), max_samples, seed)
    n = len(f)
    if n < 2:
        raise ValueError("mean_pairwise_distance: need at least 2 samples")
    return float(_distances(f).sum() / (n * (n - 1)))


def nearest_neighbour_distance(feats, max_samples: int = DIVERSITY_SAMPLES,
                               seed: int = 0) -> float:
    """Mean distance from each sample to its nearest other sample; 0 when all are repeats.

    Unlike the mean pairwise distance it sees partial collapse (a few images repeated), but it
    shrinks as N grows: compare it with real data at the same N.
    """
    f = _subsample(_features_2d(feats, "nearest_neighbour_distance"), max_samples, seed)
    if len(f) < 2:
        raise ValueError("nearest_neighbour_distance: need at least 2 samples")
    d = _distances(f)
    np.fill_diagonal(d, np.inf)
    return float(d.min(axis=1).mean())


def diversity(feats, real_feats, max_samples: int = DIVERSITY_SAMPLES, seed: int = 0) -> float:
    """Mean pairwise feature distance of the samples divided by the same figure on real data:
    about 1 for a generator as varied as the data, near 0 for a collapsed one."""
    return mean_pairwise_distance(feats, max_samples, seed) / max(
        mean_pairwise_distance(real_feats, max_samples, seed), 1e-12)


def _features_2d(feats, name: str) -> np.ndarray:
    f = np.asarray(backend.to_numpy(feats.data if isinstance(feats, Tensor) else feats),
                   np.float64)
    if f.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got {f.shape}")
    return f


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights besides the data (part of the cache key)."""

    channels: tuple[int, int, int] = (32, 32, 64)
    hidden: int = 128
    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    final_lr: float = 1e-4       # learning rate decays linearly to this over training
    seed: int = 0
    max_steps: int | None = None  # stop early (small checks)


MNIST_RECIPE = Recipe()
QUICKDRAW_RECIPE = Recipe(epochs=3)


class Classifier(nn.Module):
    """Conv 1->c1 (28x28), conv c1->c2 stride 2 (14x14), conv c2->c3 stride 2 (7x7), each with
    ReLU, then Linear -> `hidden` + ReLU (the features) and Linear -> classes."""

    def __init__(self, num_classes: int, channels: Sequence[int] = (32, 32, 64),
                 hidden: int = 128, classes: Sequence[str] | None = None):
        super().__init__()
        c1, c2, c3 = channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, 1, 1), nn.ReLU(),       # (N, c1, 28, 28)
            nn.Conv2d(c1, c2, 3, 2, 1), nn.ReLU(),      # (N, c2, 14, 14)
            nn.Conv2d(c2, c3, 3, 2, 1), nn.ReLU(),      # (N, c3, 7, 7)
            nn.Flatten(),                               # (N, c3 * 49)
            nn.Linear(c3 * 49, hidden), nn.ReLU(),      # (N, hidden): the features
        )
        self.head = nn.Linear(hidden, num_classes)      # (N, classes)
        self.classes = list(classes) if classes is not None else [str(i) for i in
                                                                  range(num_classes)]
        self.info: dict = {}

    def forward(self, x):
        return self.head(self.body(x))

    def predict(self, images, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, hidden) and class probabilities (N, K) as float64 NumPy arrays."""
        x = as_uint8_images(images)
        device = backend.device_of(next(self.parameters()).data)
        feats, probs = [], []
        with no_grad():
            for lo in range(0, len(x), batch_size):
                f = self.body(_to_input(x[lo:lo + batch_size], device))
                z = self.head(f).data
                z = z - z.max(axis=1, keepdims=True)
                e = backend.array_module(z).exp(z)
                feats.append(backend.to_numpy(f.data).astype(np.float64))
                probs.append(backend.to_numpy(e / e.sum(axis=1, keepdims=True)).astype(
                    np.float64))
        return np.concatenate(feats), np.concatenate(probs)

    def accuracy(self, images, labels) -> float:
        """Fraction of images whose most probable class is the label."""
        return float((self.predict(images)[1].argmax(axis=1) == np.asarray(labels)).mean())


def as_uint8_images(images) -> np.ndarray:
    """uint8 (N, 28, 28) from uint8 (N, 28, 28[, 1]) / (N, 1, 28, 28) or float [-1, 1] images
    (generator output: (N, 1, 28, 28) or (N, 28, 28), NumPy/CuPy arrays or Tensors)."""
    a = images.data if isinstance(images, Tensor) else images
    a = np.asarray(backend.to_numpy(a))
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise ValueError(f"expected grayscale 28x28 images (N, 28, 28) or (N, 1, 28, 28), got "
                         f"shape {np.shape(images)}")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind != "f":
        raise ValueError(f"images must be uint8 or float in [-1, 1], got {a.dtype}")
    a = np.nan_to_num(a.astype(np.float64), nan=-1.0)
    return np.rint(np.clip((a + 1.0) * 127.5, 0, 255)).astype(np.uint8)


def _to_input(x_uint8: np.ndarray, device: str) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [-1, 1], as DataLoader scales them."""
    x = x_uint8[:, None].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return Tensor(backend.to_device(x, device))


def _cross_entropy(logits: Tensor, onehot) -> Tensor:
    """Mean softmax cross-entropy; the row max is subtracted as a constant for stability."""
    z = logits - Tensor(logits.data.max(axis=1, keepdims=True))
    log_p = z - z.exp().sum(axis=1, keepdims=True).log()
    return -(log_p * Tensor(onehot)).sum() * (1.0 / len(onehot))


def train_classifier(images: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                     recipe: Recipe = MNIST_RECIPE, device: str | None = None,
                     log: Callable[[str], None] | None = print,
                     log_every: int = 100) -> tuple[Classifier, dict]:
    """Train a Classifier with Adam on uint8 images (N, 28, 28) and integer labels (N,).

    Returns the model (in eval mode) and a record: losses (one per `log_every` steps, averaged),
    steps, wall and CPU seconds. The global minigan RNG is seeded from the recipe and restored
    afterwards.
    """
    x, y = as_uint8_images(images), np.asarray(labels).astype(np.int64)
    if len(x) != len(y) or len(x) < recipe.batch_size:
        raise ValueError(f"train_classifier: {len(x)} images and {len(y)} labels; need equal "
                         f"counts and at least one batch ({recipe.batch_size})")
    k = len(classes)
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"train_classifier: labels must lie in [0, {k}), got {y.min()}..{y.max()}")
    device = backend.check_device(device)
    saved = backend.rng.get_state()
    backend.manual_seed(recipe.seed)
    try:
        model = Classifier(k, recipe.channels, recipe.hidden, classes).to(device)
    finally:
        backend.rng.set_state(saved)
    opt = optim.Adam(model.parameters(), lr=recipe.lr)
    order_rng = np.random.Generator(np.random.PCG64(recipe.seed))
    steps_per_epoch = len(x) // recipe.batch_size
    total = steps_per_epoch * recipe.epochs
    if recipe.max_steps is not None:
        total = min(total, recipe.max_steps)
    eye = np.eye(k, dtype=np.float32)
    losses, window, step = [], [], 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while step < total:
        order = order_rng.permutation(len(x))
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            opt.lr = recipe.lr + (recipe.final_lr - recipe.lr) * step / max(total - 1, 1)
            loss = _cross_entropy(model(_to_input(x[idx], device)),
                                  backend.to_device(eye[y[idx]], device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            window.append(loss.item())
            step += 1
            if step % log_every == 0 or step == total:
                losses.append(float(np.mean(window)))
                window = []
                if log:
                    log(f"classifier step {step}/{total}  loss {losses[-1]:.4f}  "
                        f"{time.perf_counter() - start:.0f} s")
    model.eval()
    return model, {"losses": losses, "steps": step, "train_seconds": time.perf_counter() - start,
                   "cpu_seconds": time.process_time() - cpu_start}



def cache_root() -> Path:
    """$MINIGAN_CACHE, else $XDG_CACHE_HOME/minigan, else ~/.cache/minigan."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / \
        "minigan"


@dataclass
class LabelledData:
    """A classification task: uint8 images and int labels, split into train and test."""

    name: str
    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def digest(self) -> str:
        """sha256 of the class names, images and labels of both splits."""
        h = hashlib.sha256(json.dumps([self.name, self.classes]).encode())
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def mnist_data(root=None) -> LabelledData:
    """MNIST's own train (60000) and test (10000) splits."""
    x_train, y_train = datasets.mnist("train", root)
    x_test, y_test = datasets.mnist("test", root)
    return LabelledData("mnist", [str(i) for i in range(10)], x_train, y_train, x_test, y_test)


def quickdraw_categories(root=None) -> list[str]:
    """Quick, Draw! categories with a .npy bitmap file in `<root>/quickdraw/` or `<root>/`."""
    root = data_root(root)
    names = set()
    for folder in (root / "quickdraw", root):
        if folder.is_dir():
            names.update(p.stem.replace("_", " ") for p in folder.glob("*.npy"))
    return sorted(names)


def quickdraw_data(root=None, categories: Sequence[str] | None = None,
                   per_class: int = 10000, test_fraction: float = 0.15,
                   seed: int = 0) -> LabelledData:
    """Quick, Draw! categories (all on disk by default) as classes; per category, at most
    `per_class` images, of which a seeded random `test_fraction` is held out for testing."""
    categories = sorted(categories) if categories else quickdraw_categories(root)
    if len(categories) < 2:
        raise ValueError(f"a Quick, Draw! classifier needs at least 2 categories; found "
                         f"{categories} under {data_root(root)} (quickdraw/<category>.npy)")
    parts = ([], [], [], [])
    for label, cat in enumerate(categories):
        x = datasets.quickdraw(cat, root, limit=per_class, download=False)
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, round(len(x) * test_fraction))
        for i, part in enumerate((x[order[n_test:]], x[order[:n_test]])):
            parts[2 * i].append(part)
            parts[2 * i + 1].append(np.full(len(part), label, np.uint8))
    x_tr, y_tr, x_te, y_te = (np.concatenate(p) for p in parts)
    return LabelledData("quickdraw", list(categories), x_tr, y_tr, x_te, y_te)


def cache_key(data: LabelledData, recipe: Recipe) -> str:
    """sha256 of the data digest, the recipe, the architecture and the recipe version."""
    spec = {"data": data.digest(), "recipe": asdict(recipe), "version": RECIPE_VERSION,
            "arch": Classifier.__doc__}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def atomic_save_npz(path: str | os.PathLike, arrays: dict) -> Path:
    """np.savez to a fresh temp file beside `path`, then os.replace: readers never see a
    partial file, and a failure leaves any previous file untouched."""
    path = Path(path)
    with atomic_open(path) as f:
        np.savez(f, **arrays)
    return path


def save_classifier(model: Classifier, path: str | os.PathLike) -> Path:
    """Weights and `model.info` (with the class names) into one .npz, atomically."""
    meta = dict(model.info, classes=model.classes)
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    arrays["meta"] = np.array(json.dumps(meta))
    return atomic_save_npz(path, arrays)


def load_classifier(path: str | os.PathLike, recipe: Recipe | None = None,
                    device: str | None = None) -> Classifier:
    """A Classifier saved by `save_classifier`; its shape comes from the saved recipe."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        state = {k.removeprefix("param/"): f[k] for k in f.files if k.startswith("param/")}
    if recipe is None:
        saved = meta.get("recipe", {})
        recipe = Recipe(channels=tuple(saved.get("channels", Recipe.channels)),
                        hidden=saved.get("hidden", Recipe.hidden))
    model = Classifier(len(meta["classes"]), recipe.channels, recipe.hidden, meta["classes"])
    model.load_state_dict(state)
    model.info = meta
    return model.to(backend.check_device(device)).eval()


def _task(dataset: str) -> str:
    kind = dataset.partition(":")[0].strip().lower()
    if kind not in ("mnist", "quickdraw"):
        raise ValueError(f"no classifier for dataset {dataset!r}: use 'mnist' or "
                         "'quickdraw[:CATEGORY[,CATEGORY...]]'")
    return kind


_DATA: dict = {}
_MODELS: dict = {}


def task_data(dataset: str = "mnist", root=None) -> LabelledData:
    """The labelled data behind the classifier for `dataset` (loaded once per process)."""
    kind = _task(dataset)
    key = (kind, str(data_root(root)))
    if key not in _DATA:
        _DATA[key] = mnist_data(root) if kind == "mnist" else quickdraw_data(root)
    return _DATA[key]


def classifier(dataset: str = "mnist", root=None, recipe: Recipe | None = None,
               device: str | None = None, train: bool = True,
               log: Callable[[str], None] | None = print) -> Classifier:
    """The cached classifier for 'mnist' or 'quickdraw[:...]', trained first when missing.

    Weights live in `<cache_root()>/classifiers/<task>-<key>.npz`; the key hashes the data and
    the recipe, so new data or a new recipe trains a new classifier. Training MNIST takes a few
    minutes on a CPU; `model.info` records the test accuracy and training time.
    """
    kind = _task(dataset)
    recipe = recipe or (MNIST_RECIPE if kind == "mnist" else QUICKDRAW_RECIPE)
    data = task_data(dataset, root)
    key = cache_key(data, recipe)
    device = backend.check_device(device)
    if (key, device) in _MODELS:
        return _MODELS[(key, device)]
    path = cache_root() / "classifiers" / f"{kind}-{key[:20]}.npz"
    model = _load_cached(path, recipe, device, train, log)
    if model is None:
        if not train:
            raise FileNotFoundError(f"no cached {kind} classifier at {path}; call "
                                    f"minigan.metrics.classifier({dataset!r}) to train it")
        if log:
            log(f"training the {kind} classifier ({len(data.x_train)} images, "
                f"{len(data.classes)} classes); it is cached in {path}")
        model, record = train_classifier(data.x_train, data.y_train, data.classes, recipe,
                                         device, log)
        model.info = {"key": key, "recipe": asdict(recipe), "classes": data.classes,
                      "test_accuracy": model.accuracy(data.x_test, data.y_test),
                      "n_train": len(data.x_train), "n_test": len(data.x_test), **record}
        if log:
            log(f"{kind} classifier: test accuracy {model.info['test_accuracy']:.4f} after "
                f"{record['train_seconds']:.0f} s")
        save_classifier(model, path)
    _MODELS[(key, device)] = model
    return model


def _load_cached(path: Path, recipe: Recipe, device: str, train: bool,
                 log: Callable[[str], None] | None) -> Classifier | None:
    """The classifier saved at `path`; None when there is none, or it is damaged and may be
    retrained."""
    if not path.is_file():
        return None
    try:
        return load_classifier(path, recipe, device)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        if not train:
            raise ValueError(f"{path}: unreadable classifier file ({e}); delete it or call "
                             "with train=True to train a new one") from e
        if log:
            log(f"{path} is unreadable ({e}); training a new classifier")
        return None


@dataclass
class Reference:
    """Statistics of real images under a classifier, the yardstick for samples."""

    mu: np.ndarray
    sigma: np.ndarray
    hist: np.ndarray
    feats: np.ndarray            # a subsample, for distances at matching sample counts
    mean_pairwise: float
    n: int

    @classmethod
    def from_images(cls, model: Classifier, images, max_images: int = REFERENCE_SAMPLES,
                    seed: int = 0) -> Reference:
        x = as_uint8_images(images)
        if len(x) > max_images:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_images, False))]
        feats, probs = model.predict(x)
        mu, sigma = gaussian_stats(feats)
        sub = _subsample(feats, DIVERSITY_SAMPLES, seed)
        return cls(mu, sigma, class_histogram(probs, len(model.classes)), sub,
                   mean_pairwise_distance(sub), len(x))


def _split_categories(dataset: str) -> list[str] | None:
    arg = dataset.partition(":")[2].strip()
    if _task(dataset) == "mnist" or not arg:
        return None
    return [c.strip() for c in arg.split(",") if c.strip()]


def real_images(dataset: str = "mnist", split: str = "train", root=None) -> np.ndarray:
    """Real images of a dataset spec from the classifier's own split ('train' or 'test'):
    'mnist', 'quickdraw' (all categories) or 'quickdraw:CAT[,CAT...]'."""
    data = task_data(dataset, root)
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    cats = _split_categories(dataset)
    if cats is None:
        return x
    missing = [c for c in cats if c not in data.classes]
    if missing:
        raise ValueError(f"categories {missing} are not among the Quick, Draw! data on disk: "
                         f"{data.classes}")
    return x[np.isin(y, [data.classes.index(c) for c in cats])]


_REFERENCES: dict = {}


def reference(dataset: str = "mnist", root=None, model: Classifier | None = None,
              device: str | None = None) -> Reference:
    """Reference statistics of the training images of `dataset` (cached per process)."""
    model = model or classifier(dataset, root, device=device)
    key = (model.info.get("key", id(model)), dataset, str(data_root(root)))
    if key not in _REFERENCES:
        _REFERENCES[key] = Reference.from_images(model, real_images(dataset, "train", root))
    return _REFERENCES[key]


def evaluate(images, dataset: str = "mnist", *, root=None, model: Classifier | None = None,
             real=None, device: str | None = None, seed: int = 0) -> dict:
    """All figures for generated images (uint8 (N, 28, 28), or float [-1, 1] generator output).

    Compared with the training images of `dataset` ('mnist', 'quickdraw',
    'quickdraw:smiley face', ...) through the dataset's cached classifier; `model` and `real`
    (images or a Reference) replace those, e.g. for a custom classifier. Keys: fd, modes,
    num_classes, kl, class_entropy, class_entropy_real, class_entropy_ratio, confidence,
    diversity, nn_diversity, histogram, n, n_real; for Quick, Draw! datasets also closed,
    marks2, marks3, marks2_bold and marks3_bold (`drawing_structure`).
    """
    model = model or classifier(dataset, root, device=device)
    if real is None:
        ref = reference(dataset, root, model)
    elif isinstance(real, Reference):
        ref = real
    else:
        ref = Reference.from_images(model, real, seed=seed)
    feats, probs = model.predict(images)
    if len(feats) < 2:
        raise ValueError(f"evaluate needs at least 2 images, got {len(feats)}")
    k = len(model.classes)
    hist = class_histogram(probs, k)
    mu, sigma = gaussian_stats(feats)
    sub = _subsample(feats, DIVERSITY_SAMPLES, seed)
    real_sub = _subsample(ref.feats, len(sub), seed)
    h, h_real = class_entropy(hist), class_entropy(ref.hist)
    structure = drawing_structure(images) if _task(dataset) == "quickdraw" else {}
    return {
        "fd": frechet_distance_from_stats(mu, sigma, ref.mu, ref.sigma),
        "modes": mode_coverage(hist),
        "num_classes": k,
        "modes_real": mode_coverage(ref.hist),
        "kl": kl_divergence(hist, ref.hist),
        "class_entropy": h,
        "class_entropy_real": h_real,
        "class_entropy_ratio": h / h_real if h_real >= MIN_REAL_ENTROPY else float("nan"),
        "confidence": mean_confidence(probs),
        "diversity": mean_pairwise_distance(sub) / max(ref.mean_pairwise, 1e-12),
        "nn_diversity": nearest_neighbour_distance(sub) / max(
            nearest_neighbour_distance(real_sub), 1e-12),
        "histogram": hist.tolist(),
        "classes": list(model.classes),
        "n": len(feats),
        "n_real": ref.n,
        **structure,
    }


# drawing_structure's figures, in order, as `minigan eval`, the trainer's records and the run page
# name them
DRAWING_STRUCTURE = (("closed", "outline closed"), ("marks2", "closed, 2+ marks inside"),
                     ("marks2_bold", "closed, 2+ marks, bold strokes"),
                     ("marks3", "closed, 3+ marks inside"),
                     ("marks3_bold", "closed, 3+ marks, bold strokes"))


def drawing_structure(images, threshold: int = 128, bold: int = 180) -> dict:
    """{'closed': share of drawings whose outline closes, 'marks2': share whose outline closes
    around two marks or more, 'marks3': around three or more}, strokes at `threshold` or
    brighter (uint8), as `minigan.data.enclosed_marks` counts them, and 'marks2_bold',
    'marks3_bold': the same shares with only the strokes at `bold` or brighter, where faint
    marks and smudged outlines no longer count (what the eye calls a clear face). Two marks are
    a mouth and one eye as well as two eyes; three are two eyes and a mouth. 750 held-out
    "smiley face" drawings: 0.71, 0.52, 0.31, 0.55 and 0.35 (thin real strokes part from the
    outline at the higher threshold)."""
    u8 = as_uint8_images(images)
    marks = enclosed_marks(u8, threshold=threshold)
    strong = enclosed_marks(u8, threshold=bold)
    return {"closed": float(np.mean(marks >= 0)), "marks2": float(np.mean(marks >= 2)),
            "marks3": float(np.mean(marks >= 3)), "marks2_bold": float(np.mean(strong >= 2)),
            "marks3_bold": float(np.mean(strong >= 3))}


def real_floor(dataset: str = "mnist", root=None, device: str | None = None,
               n: int | None = None, seed: int = 0) -> dict:
    """`evaluate` of real held-out test images against the training images: the scores of a
    generator that draws from the data itself (`n` test images, all by default)."""
    x = real_images(dataset, "test", root)
    if n is not None and n < len(x):
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]
    return evaluate(x, dataset, root=root, device=device, seed=seed)


def collapse_warning(metrics: dict, thresholds: dict | None = None) -> str | None:
    """A one-line warning when the samples look mode-collapsed, else None.

    Fires when any of these falls below its threshold (DEFAULT_THRESHOLDS, overridable):
    `diversity` and `nn_diversity` (relative to real data) and `class_entropy_ratio` (skipped
    when NaN or missing, e.g. for single-category data).
    """
    limits = dict(DEFAULT_THRESHOLDS, **(thresholds or {}))
    names = {"diversity": "feature diversity", "nn_diversity": "nearest-neighbour distance",
             "class_entropy": "class entropy"}
    found = []
    for key, limit in limits.items():
        value = metrics.get("class_entropy_ratio" if key == "class_entropy" else key)
        if value is None or not np.isfinite(value) or value >= limit:
            continue
        found.append(f"{names.get(key, key)} {value:.2f} of real (threshold {limit:g})")
    if not found:
        return None
    modes = metrics.get("modes")
    tail = f"; {modes} of {metrics['num_classes']} classes covered" if modes is not None and \
        "num_classes" in metrics else ""
    return "possible mode collapse: " + ", ".join(found) + tail


__all__ = [
    "DEFAULT_THRESHOLDS", "Classifier", "LabelledData", "Recipe", "Reference",
    "as_uint8_images", "atomic_save_npz", "cache_key", "cache_root", "class_entropy",
    "class_histogram", "classifier", "collapse_warning", "diversity", "evaluate",
    "frechet_distance", "frechet_distance_from_stats", "gaussian_stats", "kl_divergence",
    "load_classifier", "mean_confidence", "mean_pairwise_distance", "mnist_data",
    "mode_coverage", "nearest_neighbour_distance", "quickdraw_categories", "quickdraw_data",
    "real_floor", "real_images", "reference", "save_classifier", "train_classifier",
]
