"""Datasets as uint8 image arrays, IDX/npy readers, checked downloads, a batch loader, and what
a line drawing is made of (enclosed_marks)."""

from .datasets import ellipses, image_folder, load_dataset, mnist, quickdraw
from .download import DataNotFoundError, data_root, fetch
from .drawings import enclosed_marks
from .idx import read_idx, write_idx
from .loader import DataLoader

__all__ = [
    "DataLoader",
    "DataNotFoundError",
    "data_root",
    "ellipses",
    "enclosed_marks",
    "fetch",
    "image_folder",
    "load_dataset",
    "mnist",
    "quickdraw",
    "read_idx",
    "write_idx",
]
