"""Datasets as uint8 image arrays, IDX/npy readers, checked downloads and a batch loader."""

from .datasets import ellipses, image_folder, load_dataset, mnist, quickdraw
from .download import DataNotFoundError, data_root, fetch
from .idx import read_idx, write_idx
from .loader import DataLoader

__all__ = [
    "DataLoader",
    "DataNotFoundError",
    "data_root",
    "ellipses",
    "fetch",
    "image_folder",
    "load_dataset",
    "mnist",
    "quickdraw",
    "read_idx",
    "write_idx",
]
