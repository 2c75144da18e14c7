"""Batches of uint8 images as float arrays in [-1, 1], shuffled by a seeded generator.

The loader owns its random generator, so its batches do not depend on other random draws, and
`state_dict` captures the epoch, the position in it and the generator state: a run resumed from
a checkpoint sees exactly the batches it would have seen.
"""

from __future__ import annotations

import copy

import numpy as np
from numpy.typing import DTypeLike

from .. import backend


class DataLoader:
    """Iterate over `images` (uint8 (N, H, W) or (N, H, W, 3)) in batches (B, C, H, W).

    Values are scaled to [-1, 1] (x / 127.5 - 1), the range of a tanh generator. `flip` mirrors
    each sample left-right with probability 1/2. Each epoch draws one permutation and one set of
    flips from the loader's generator.
    """

    def __init__(self, images: np.ndarray, batch_size: int, shuffle: bool = True,
                 drop_last: bool = True, flip: bool = False, seed: int = 0,
                 device: str = "cpu", dtype: DTypeLike = np.float32):
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            got = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"DataLoader expects a uint8 NumPy array of images, got {got}")
        if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))):
            raise ValueError("DataLoader expects images of shape (N, H, W) or (N, H, W, 3), got "
                             f"{images.shape}")
        if len(images) == 0:
            raise ValueError("DataLoader got an empty dataset")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and batch_size > len(images):
            raise ValueError(f"batch_size {batch_size} is larger than the dataset "
                             f"({len(images)} images), so drop_last=True would give no batch; "
                             "use a smaller batch or drop_last=False")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a float type, got {self.dtype}")
        self.images = images if images.ndim == 4 else images[..., None]  # (N, H, W, C)
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.flip = shuffle, drop_last, flip
        self.seed = seed
        self.device = backend.check_device(device)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self.epoch = 0          # epochs completed
        self._batch = 0         # batches of the current epoch already handed out
        self._epoch_state = self._rng.bit_generator.state

    @property
    def num_samples(self) -> int:
        return len(self.images)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _draw_epoch(self) -> tuple[np.ndarray, np.ndarray | None]:
        n = self.num_samples
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        flips = self._rng.random(n) < 0.5 if self.flip else None
        return order, flips

    def _make_batch(self, index: np.ndarray, flips: np.ndarray | None):
        x = self.images[index].transpose(0, 3, 1, 2).astype(self.dtype)   # (B, C, H, W)
        x = x / self.dtype.type(127.5) - self.dtype.type(1.0)
        if flips is not None:
            x[flips] = x[flips, :, :, ::-1]
        return backend.to_device(x, self.device)

    def __iter__(self):
        if self._batch == 0:
            self._epoch_state = self._rng.bit_generator.state
        else:  # resuming inside an epoch: redraw the same permutation and flips
            self._rng.bit_generator.state = self._epoch_state
        order, flips = self._draw_epoch()
        n_batches, b = len(self), self.batch_size
        for i in range(self._batch, n_batches):
            index = order[i * b:(i + 1) * b]
            batch = self._make_batch(index, None if flips is None else flips[index])
            self._batch = i + 1
            if self._batch == n_batches:
                self.epoch += 1
                self._batch = 0
            yield batch

    def state_dict(self) -> dict:
        """Epoch, position and generator state; enough to replay the following batches."""
        state = self._epoch_state if self._batch else self._rng.bit_generator.state
        return {"epoch": self.epoch, "batch": self._batch, "rng": copy.deepcopy(state),
                "num_samples": self.num_samples, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["num_samples"], state["batch_size"]) != (self.num_samples, self.batch_size):
            raise ValueError(f"loader state is for {state['num_samples']} images in batches of "
                             f"{state['batch_size']}, this loader has {self.num_samples} in "
                             f"batches of {self.batch_size}")
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._epoch_state = copy.deepcopy(state["rng"])
        self.epoch, self._batch = int(state["epoch"]), int(state["batch"])
