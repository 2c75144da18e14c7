import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from minigan.data.idx import read_idx, write_idx

TRAIN_HISTOGRAM = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_HISTOGRAM = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def mnist_dir() -> Path:
    root = os.environ.get("MINIGAN_DATA")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("real MNIST not available: set MINIGAN_DATA to a folder holding mnist/")
    return Path(root) / "mnist"


def test_real_mnist_labels(mnist_dir):
    train = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    test = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert train.dtype == np.uint8 and train.shape == (60000,)
    assert test.dtype == np.uint8 and test.shape == (10000,)
    assert np.bincount(train, minlength=10).tolist() == TRAIN_HISTOGRAM
    assert np.bincount(test, minlength=10).tolist() == TEST_HISTOGRAM
    assert train[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]


def test_real_mnist_test_images_match_published_md5(mnist_dir):
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert images.dtype == np.uint8 and images.shape == (10000, 28, 28)
    assert images.flags.writeable
    # md5 of the official uncompressed file, rebuilt from the header and the pixels we read
    raw = struct.pack(">IIII", 2051, 10000, 28, 28) + images.tobytes()
    assert hashlib.md5(raw).hexdigest() == "2646ac647ad5339dbf082846283269ea"


def test_hand_built_files(tmp_path):
    labels = tmp_path / "labels.idx"
    labels.write_bytes(struct.pack(">II", 2049, 3) + bytes([7, 0, 255]))
    assert read_idx(labels).tolist() == [7, 0, 255]

    images = tmp_path / "images.idx.gz"
    pixels = bytes(range(12))
    with gzip.open(images, "wb") as f:
        f.write(struct.pack(">IIII", 2051, 2, 3, 2) + pixels)
    out = read_idx(images)
    assert out.shape == (2, 3, 2)
    assert out.reshape(-1).tolist() == list(range(12))

    shorts = tmp_path / "shorts.idx"  # generic form: dtype byte 0x0B (int16, big-endian)
    shorts.write_bytes(bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + b"\x01\x02\xff\xfe")
    assert read_idx(shorts).tolist() == [258, -2]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path, dtype, name):
    rng = np.random.default_rng(0)
    array = np.clip(rng.standard_normal((4, 3, 5)) * 40, -120, 120).astype(dtype)
    out = read_idx(write_idx(tmp_path / name, array))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_write_is_gzip_only_for_gz(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros(3, np.uint8))
    write_idx(tmp_path / "b", np.zeros(3, np.uint8))
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "b").read_bytes() == struct.pack(">II", 2049, 3) + bytes(3)


@pytest.mark.parametrize("name", ["cut.idx", "cut.idx.gz"])
def test_truncated_file_names_the_file(tmp_path, name):
    data = struct.pack(">IIII", 2051, 10, 28, 28) + bytes(10 * 28 * 28 - 5)
    path = tmp_path / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "7856" in str(info.value)  # the expected length: 16 + 10 * 784


def test_trailing_bytes_rejected(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(struct.pack(">II", 2049, 2) + bytes(3))
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize("head", [struct.pack(">I", 0x89504E47),   # a PNG signature
                                  bytes([0, 0, 0x07, 1]),           # unknown dtype byte
                                  bytes([0, 0, 0x08, 0])])          # zero dimensions
def test_wrong_magic_names_the_file(tmp_path, head):
    path = tmp_path / "not-idx.bin"
    path.write_bytes(head + bytes(16))
    with pytest.raises(ValueError, match="magic") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_header_and_tiny_file(tmp_path):
    path = tmp_path / "head.idx"
    path.write_bytes(struct.pack(">I", 2051) + bytes(6))
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        read_idx(path)


def test_broken_gzip_stream_names_the_file(tmp_path):
    good = tmp_path / "good.gz"
    write_idx(good, np.arange(5000, dtype=np.int32))
    bad = tmp_path / "bad.gz"
    bad.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match="gzip") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)
