import pickle

import numpy as np
import pytest

from minigan.data.loader import DataLoader


def _numbered(n: int, h: int = 4, w: int = 5) -> np.ndarray:
    """Images whose top-left pixel is their index (n <= 256), so batches can be traced back."""
    images = np.zeros((n, h, w), np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images


def _ids(batch: np.ndarray) -> list[int]:
    return np.rint((batch[:, 0, 0, 0] + 1) * 127.5).astype(int).tolist()


def test_shapes_dtype_and_range():
    images = np.random.default_rng(0).integers(0, 256, (10, 6, 7), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    batches = list(DataLoader(images, 4, shuffle=False))
    assert len(batches) == 2
    for b in batches:
        assert b.shape == (4, 1, 6, 7) and b.dtype == np.float32
        assert b.min() >= -1.0 and b.max() <= 1.0
    assert batches[0][0, 0, 0, 0] == -1.0 and batches[0][0, 0, 0, 1] == 1.0
    np.testing.assert_allclose(batches[1][0, 0], images[4] / 127.5 - 1, atol=1e-6)

    rgb = np.zeros((5, 3, 4, 3), np.uint8)
    rgb[..., 2] = 255                                    # a blue image
    b = next(iter(DataLoader(rgb, 5, dtype=np.float64)))
    assert b.shape == (5, 3, 3, 4) and b.dtype == np.float64
    assert (b[:, 2] == 1).all() and (b[:, :2] == -1).all()


def test_every_sample_once_per_epoch():
    loader = DataLoader(_numbered(103), 10, drop_last=False, seed=1)
    assert len(loader) == 11
    for _ in range(2):
        seen = [i for b in loader for i in _ids(b)]
        assert sorted(seen) == list(range(103))
    assert loader.epoch == 2


def test_drop_last():
    loader = DataLoader(_numbered(103), 10, drop_last=True, seed=1)
    assert len(loader) == 10
    batches = list(loader)
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    seen = [i for b in batches for i in _ids(b)]
    assert len(set(seen)) == 100


def test_shuffle_is_seeded():
    images = _numbered(64)
    first = [_ids(b) for b in DataLoader(images, 8, seed=5)]
    again = [_ids(b) for b in DataLoader(images, 8, seed=5)]
    other = [_ids(b) for b in DataLoader(images, 8, seed=6)]
    assert first == again and first != other
    assert first != [list(range(i, i + 8)) for i in range(0, 64, 8)]   # really shuffled
    loader = DataLoader(images, 8, seed=5)
    assert [_ids(b) for b in loader] != [_ids(b) for b in loader]     # new order each epoch
    np.random.seed(123)                                                # global RNG is unused
    assert [_ids(b) for b in DataLoader(images, 8, seed=5)] == first


def _run(loader: DataLoader, n: int) -> list[np.ndarray]:
    """The next n batches, re-entering the iterator at epoch ends as a trainer would."""
    out = []
    while len(out) < n:
        for b in loader:
            out.append(b)
            if len(out) == n:
                break
    return out


@pytest.mark.parametrize("stop", [3, 7, 13])          # mid-epoch, epoch end, later mid-epoch
def test_state_dict_resume_gives_same_batches(stop):
    images = np.random.default_rng(0).integers(0, 256, (60, 5, 5), dtype=np.uint8)
    reference = _run(DataLoader(images, 8, flip=True, seed=2), 25)

    first = DataLoader(images, 8, flip=True, seed=2)
    head = _run(first, stop)
    state = pickle.loads(pickle.dumps(first.state_dict()))      # as a checkpoint would
    resumed = DataLoader(images, 8, flip=True, seed=999)        # the seed is overridden
    resumed.load_state_dict(state)
    tail = _run(resumed, 25 - stop)
    assert resumed.epoch == first.epoch + (25 - stop + state["batch"]) // 7
    for a, b in zip(reference, head + tail, strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_rejects_other_dataset():
    state = DataLoader(_numbered(20), 4).state_dict()
    with pytest.raises(ValueError, match="20 images"):
        DataLoader(_numbered(21), 4).load_state_dict(state)


def test_flip_really_flips_some_samples():
    images = np.zeros((200, 4, 6), np.uint8)
    images[:, :, :3] = 255                                # left half white
    batches = list(DataLoader(images, 50, flip=True, seed=0))
    x = np.concatenate(batches)[:, 0]                     # (200, 4, 6)
    left_white = (x[:, :, :3] == 1).all(axis=(1, 2)) & (x[:, :, 3:] == -1).all(axis=(1, 2))
    right_white = (x[:, :, 3:] == 1).all(axis=(1, 2)) & (x[:, :, :3] == -1).all(axis=(1, 2))
    assert (left_white | right_white).all()
    assert 60 < right_white.sum() < 140                   # about half are mirrored
    unflipped = np.concatenate(list(DataLoader(images, 50, flip=False)))
    assert (unflipped[:, 0, :, :3] == 1).all()


def test_flip_mirrors_exactly():
    images = np.random.default_rng(1).integers(0, 256, (30, 5, 5, 3), dtype=np.uint8)
    plain = np.concatenate(list(DataLoader(images, 10, shuffle=False)))
    flipped = np.concatenate(list(DataLoader(images, 10, shuffle=False, flip=True)))
    same = (flipped == plain).all(axis=(1, 2, 3))
    mirrored = (flipped == plain[..., ::-1]).all(axis=(1, 2, 3))
    assert (same | mirrored).all() and mirrored.any() and same.any()


@pytest.mark.parametrize("batch_size", [0, -3, 11, 2.5])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch"):
        DataLoader(_numbered(10), batch_size)


def test_batch_larger_than_data_without_drop_last():
    loader = DataLoader(_numbered(10), 16, drop_last=False)
    assert len(loader) == 1 and next(iter(loader)).shape == (10, 1, 4, 5)


@pytest.mark.parametrize("images", [np.zeros((4, 5, 5), np.float32), np.zeros((4, 5), np.uint8),
                                    np.zeros((4, 5, 5, 2), np.uint8), [[0, 1]]])
def test_bad_input(images):
    with pytest.raises(ValueError, match="DataLoader expects"):
        DataLoader(images, 2)


def test_bad_dtype():
    with pytest.raises(ValueError, match="float"):
        DataLoader(_numbered(4), 2, dtype=np.int32)
