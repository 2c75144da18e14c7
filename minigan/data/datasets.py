"""Image datasets as uint8 arrays: MNIST, Quick, Draw! bitmaps, synthetic ellipses, a folder.

Every loader returns (N, H, W) for grayscale or (N, H, W, 3) for colour, white strokes on black
where the source has them; `DataLoader` turns them into float batches.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import numpy as np

from .download import data_root, fetch
from .idx import read_idx

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/{}.npy"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DATASET_FORMS = (
    "mnist | mnist:train | mnist:test",
    "quickdraw:CATEGORY (e.g. 'quickdraw:smiley face')",
    "ellipses | ellipses:N",
    "folder:PATH",
)


def _mnist_file(name: str, root: Path, download: bool) -> Path:
    """The .gz file (checked by md5, downloaded if missing) or an uncompressed copy beside it."""
    folders = [root / "mnist", root]
    plain = name.removesuffix(".gz")
    if not any((d / name).is_file() for d in folders):
        for d in folders:
            if (d / plain).is_file():
                return d / plain
    return fetch(name, [m + name for m in MNIST_MIRRORS], folders[0], md5=MNIST_MD5[name],
                 also_look_in=folders[1:], download=download)


def mnist(split: str = "train", root: str | os.PathLike | None = None,
          download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits: images uint8 (N, 28, 28) and labels uint8 (N,), N = 60000 or 10000.

    Files are looked for in `<root>/mnist/` and `<root>/` (root from `data_root`) and
    downloaded into `<root>/mnist/` when missing.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"unknown MNIST split {split!r}: use 'train' or 'test'")
    root = data_root(root)
    image_name, label_name = MNIST_FILES[split]
    image_path = _mnist_file(image_name, root, download)
    label_path = _mnist_file(label_name, root, download)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{image_path}: expected uint8 images of shape (N, 28, 28), got "
                         f"{images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{label_path}: expected uint8 labels of shape (N,), got "
                         f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"MNIST {split}: {image_path} holds {len(images)} images but "
                         f"{label_path} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{label_path}: labels must be digits 0-9, found {labels.max()}")
    return images, labels


def _load_bitmaps(path: Path) -> np.ndarray:
    """Open a numpy_bitmap .npy lazily (mmap) and check it is uint8 (N, 784)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy file ({e})") from e
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != 784:
        raise ValueError(f"{path}: expected Quick, Draw! numpy_bitmap data, uint8 of shape "
                         f"(N, 784), got {array.dtype} {array.shape}")
    return array


def _check_limit(limit: int | None) -> None:
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


def quickdraw(category: str, root: str | os.PathLike | None = None, limit: int | None = None,
              download: bool = True) -> np.ndarray:
    """Quick, Draw! doodles of one category as uint8 (N, 28, 28); `limit` keeps the first rows.

    Looks for `<category>.npy` (spaces may be underscores) in `<root>/quickdraw/` and `<root>/`,
    else downloads Google's full numpy_bitmap file (often 100+ MB) into `<root>/quickdraw/`.
    """
    _check_limit(limit)
    root = data_root(root)
    folders = [root / "quickdraw", root]
    stored = category.replace(" ", "_") + ".npy"
    path = next((d / name for name in (f"{category}.npy", stored) for d in folders
                 if (d / name).is_file()), None)
    if path is None:
        url = QUICKDRAW_URL.format(urllib.parse.quote(category))
        path = fetch(stored, [url], folders[0], also_look_in=folders[1:], download=download,
                     validate=_load_bitmaps)
    bitmaps = _load_bitmaps(path)
    return np.array(bitmaps[:limit]).reshape(-1, 28, 28)


def ellipses(n: int, size: int = 28, color: bool = False, filled: bool = True,
             seed: int = 0) -> np.ndarray:
    """Random antialiased ellipses on black: uint8 (n, size, size), or (n, size, size, 3).

    Centre, semi-axes, rotation and brightness (or colour) are drawn per image; every ellipse
    stays inside the frame. `filled=False` draws a 1.5-pixel outline. Needs no download.
    """
    if n < 0 or size < 4:
        raise ValueError(f"ellipses needs n >= 0 and size >= 4, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.35, 0.65, (n, 2)) * size          # (n, 2): x, y
    axes = rng.uniform(0.12, 0.28, (n, 2)) * size            # (n, 2): semi-axes a, b
    angle = rng.uniform(0.0, np.pi, n)
    if color:
        tint = rng.uniform(0.2, 1.0, (n, 3))
        tint *= rng.uniform(0.6, 1.0, (n, 1)) / tint.max(axis=1, keepdims=True)
    else:
        tint = rng.uniform(0.5, 1.0, (n, 1))
    out = np.empty((n, size, size, tint.shape[1]), np.uint8)
    grid = np.arange(size) + 0.5                              # pixel centres
    for lo in range(0, n, 4096):
        hi = min(n, lo + 4096)
        cover = _ellipse_coverage(grid, centre[lo:hi], axes[lo:hi], angle[lo:hi], filled)
        out[lo:hi] = np.rint(cover[..., None] * tint[lo:hi, None, None, :] * 255)
    return out if color else out[..., 0]


def _ellipse_coverage(grid: np.ndarray, centre: np.ndarray, axes: np.ndarray,
                      angle: np.ndarray, filled: bool) -> np.ndarray:
    """Pixel coverage in [0, 1], (n, size, size), from an approximate signed edge distance."""
    dx = grid[None, None, :] - centre[:, 0, None, None]       # (n, 1, size)
    dy = grid[None, :, None] - centre[:, 1, None, None]       # (n, size, 1)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    a, b = axes[:, 0, None, None], axes[:, 1, None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos          # (n, size, size), ellipse frame
    s = np.sqrt((u / a) ** 2 + (v / b) ** 2)                  # 1 on the edge
    grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
    # first-order distance to the edge in pixels: (s - 1) / |grad s|, with |grad s| = grad / s
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(grad > 1e-9, s / grad, np.minimum(a, b))
    dist = (s - 1.0) * scale
    if filled:
        return np.clip(0.5 - dist, 0.0, 1.0)
    return np.clip(1.25 - np.abs(dist), 0.0, 1.0)              # 1.5 px line, 1 px ramp


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def image_folder(path: str | os.PathLike, size: int, channels: int = 1) -> np.ndarray:
    """PNG/JPEG files under `path` (recursive, sorted): shorter side resized to `size`, centre
    cropped to size x size; uint8 (N, size, size) for channels=1, (N, size, size, 3) for 3."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder.absolute()} does not exist or is not a "
                                "folder")
    files = _image_files(folder)
    if not files:
        raise FileNotFoundError(f"no images found under {folder.absolute()} (looked "
                                f"recursively for {', '.join(IMAGE_EXTENSIONS)} files)")
    mode = "L" if channels == 1 else "RGB"
    shape = (size, size) if channels == 1 else (size, size, 3)
    out = np.empty((len(files),) + shape, np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as img:
                img = img.convert(mode)
        except OSError as e:
            raise ValueError(f"{file}: cannot read image ({e})") from e
        w, h = img.size
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        if new != img.size:
            img = img.resize(new, Image.LANCZOS)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        out[i] = np.asarray(img.crop((left, top, left + size, top + size)))
    return out


def load_dataset(spec: str, root: str | os.PathLike | None = None, limit: int | None = None,
                 *, size: int = 28, channels: int = 1) -> np.ndarray:
    """Images named by a spec string, uint8 (N, H, W) or (N, H, W, 3); see DATASET_FORMS.

    `limit` keeps the first images (for ellipses it is the count, 10000 by default); `size`
    and `channels` apply to folders and ellipses.
    """
    _check_limit(limit)
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind == "mnist" and arg in ("", "train", "test"):
        images = mnist(arg or "train", root)[0]
    elif kind == "quickdraw" and arg:
        return quickdraw(arg, root, limit)
    elif kind == "ellipses" and (arg == "" or arg.isdigit()):
        n = int(arg) if arg else (limit or 10000)
        images = ellipses(n, size=size, color=channels == 3)
    elif kind == "folder" and arg:
        images = image_folder(arg, size, channels)
    else:
        raise ValueError(f"unknown dataset {spec!r}; valid forms: " + "; ".join(DATASET_FORMS))
    return images[:limit]

