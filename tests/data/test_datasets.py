import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minigan.data import datasets
from minigan.data.datasets import ellipses, image_folder, load_dataset, mnist, quickdraw
from minigan.data.download import DataNotFoundError
from minigan.data.idx import write_idx


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setenv("MINIGAN_OFFLINE", "1")


@pytest.fixture
def real_root() -> Path:
    root = os.environ.get("MINIGAN_DATA")
    if not root or not (Path(root) / "mnist").is_dir() or not (Path(root) / "quickdraw").is_dir():
        pytest.skip("real data not available: set MINIGAN_DATA to a folder holding mnist/ and "
                    "quickdraw/")
    return Path(root)


def test_mnist_real(real_root):
    x, y = mnist("train", root=real_root)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.uint8
    assert y[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    x, y = mnist("test", root=real_root)
    assert x.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert x.max() == 255 and x[:, 0, :].max() == 0  # white digits, black border rows


def test_mnist_files_directly_in_root(real_root, tmp_path):
    for name in datasets.MNIST_FILES["test"]:
        (tmp_path / name).symlink_to(real_root / "mnist" / name)
    x, y = mnist("test", root=tmp_path, download=False)
    x_ref, y_ref = mnist("test", root=real_root)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_mnist_uncompressed_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    images = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.array([3, 1, 4, 1, 5], np.uint8))
    x, y = mnist("test", root=tmp_path)
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == [3, 1, 4, 1, 5]


def test_mnist_count_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        mnist("test", root=tmp_path)


def test_mnist_wrong_file_fails_md5(tmp_path):
    (tmp_path / "mnist").mkdir()
    bad = write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz",
                    np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="md5 checksum mismatch") as info:
        mnist("test", root=tmp_path)
    assert str(bad) in str(info.value)


def test_mnist_missing_says_where_and_how(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        mnist("train", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    for mirror in datasets.MNIST_MIRRORS:
        assert mirror + "train-images-idx3-ubyte.gz" in message
    assert "MINIGAN_DATA" in message


def test_mnist_bad_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        mnist("valid")


def test_quickdraw_real(real_root):
    faces = quickdraw("smiley face", root=real_root)
    assert faces.shape == (5000, 28, 28) and faces.dtype == np.uint8
    raw = np.load(real_root / "quickdraw" / "smiley_face.npy")
    np.testing.assert_array_equal(faces, raw.reshape(-1, 28, 28))
    first = quickdraw("smiley face", root=real_root, limit=10)
    assert first.shape == (10, 28, 28)
    np.testing.assert_array_equal(first, faces[:10])
    assert quickdraw("cat", root=real_root).shape == (3000, 28, 28)


def test_quickdraw_name_with_spaces_in_root(tmp_path):
    bitmaps = np.arange(3 * 784).astype(np.uint8).reshape(3, 784)
    np.save(tmp_path / "hot dog.npy", bitmaps)
    out = quickdraw("hot dog", root=tmp_path)
    np.testing.assert_array_equal(out, bitmaps.reshape(3, 28, 28))


def test_quickdraw_corrupt_file(tmp_path):
    (tmp_path / "quickdraw").mkdir()
    np.save(tmp_path / "quickdraw" / "cat.npy", np.zeros((3, 100), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, 784\)") as info:
        quickdraw("cat", root=tmp_path)
    assert str(tmp_path / "quickdraw" / "cat.npy") in str(info.value)
    with pytest.raises(ValueError, match="positive integer"):
        quickdraw("cat", root=tmp_path, limit=0)


def test_quickdraw_missing_names_the_url(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        quickdraw("smiley face", root=tmp_path)
    message = str(info.value)
    assert "numpy_bitmap/smiley%20face.npy" in message
    assert str(tmp_path / "quickdraw" / "smiley_face.npy") in message


@pytest.fixture
def npy_server(tmp_path, monkeypatch):
    """Serves tmp_path/served over HTTP and points the Quick Draw URL at it."""
    monkeypatch.delenv("MINIGAN_OFFLINE")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    monkeypatch.setattr(datasets, "QUICKDRAW_URL",
                        f"http://127.0.0.1:{httpd.server_address[1]}/{{}}.npy")
    yield served
    httpd.shutdown()
    httpd.server_close()


def test_quickdraw_download_is_validated(npy_server, tmp_path):
    good = np.random.default_rng(0).integers(0, 256, (4, 784), dtype=np.uint8)
    np.save(npy_server / "hot dog.npy", good)
    np.save(npy_server / "bad.npy", np.zeros((4, 28, 28), np.float32))
    root = tmp_path / "cache"
    out = quickdraw("hot dog", root=root, limit=3)
    np.testing.assert_array_equal(out, good[:3].reshape(3, 28, 28))
    assert [p.name for p in (root / "quickdraw").iterdir()] == ["hot_dog.npy"]
    with pytest.raises(DataNotFoundError, match="numpy_bitmap"):
        quickdraw("bad", root=root)
    assert [p.name for p in (root / "quickdraw").iterdir()] == ["hot_dog.npy"]


def test_ellipses_shape_range_and_determinism():
    a = ellipses(50, seed=3)
    assert a.shape == (50, 28, 28) and a.dtype == np.uint8
    assert a.min() == 0 and a.max() > 200
    assert (a.reshape(50, -1).max(axis=1) >= 0.5 * 255 * 0.9).all()   # brightness >= 0.5
    border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
    assert border.max() == 0  # every ellipse lies inside the frame
    np.testing.assert_array_equal(a, ellipses(50, seed=3))
    assert not np.array_equal(a, ellipses(50, seed=4))
    assert ellipses(2, size=64).shape == (2, 64, 64)
    assert ellipses(0).shape == (0, 28, 28)


def _centroid_pixel(img: np.ndarray) -> tuple[int, int]:
    w = img.astype(float)
    ys, xs = np.indices(img.shape)
    return int((ys * w).sum() / w.sum()), int((xs * w).sum() / w.sum())


def test_ellipses_filled_and_outline_geometry():
    size = 28
    filled = ellipses(40, size=size, filled=True, seed=1)
    outline = ellipses(40, size=size, filled=False, seed=1)
    for f, o in zip(filled, outline, strict=True):
        assert f[_centroid_pixel(f)] == f.max()          # solid inside
        assert o[_centroid_pixel(o)] == 0                 # hollow inside
        edge = (f > 0) & (f < f.max())                   # antialiased rim of the solid one
        assert edge.any() and (o[edge] > 0).all()         # is where the outline runs
        area = f.sum() / f.max()                          # coverage-weighted pixel count
        lo, hi = np.pi * (0.12 * size) ** 2, np.pi * (0.28 * size) ** 2
        assert 0.9 * lo < area < 1.1 * hi


def test_ellipses_color():
    c = ellipses(20, color=True, seed=0)
    assert c.shape == (20, 28, 28, 3) and c.dtype == np.uint8
    peak = c.reshape(20, -1, 3).max(axis=1)               # (20, 3) peak of each channel
    assert (peak.max(axis=1) - peak.min(axis=1) > 20).any()  # really coloured, not grey


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_crop_and_channels(tmp_path):
    wide = np.zeros((20, 60), np.uint8)
    wide[:, 20:40] = 255                                  # white middle third
    _save(tmp_path / "a_wide.png", wide)
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[10:30, :, 0] = 200                               # red middle half
    _save(tmp_path / "sub" / "b_tall.png", tall)
    _save(tmp_path / "sub" / "deeper" / "c.JPG", np.full((30, 30, 3), 90, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")

    gray = image_folder(tmp_path, size=20)
    assert gray.shape == (3, 20, 20) and gray.dtype == np.uint8
    assert (gray[0] == 255).all()                         # the crop kept the middle third
    rgb = image_folder(tmp_path, size=20, channels=3)
    assert rgb.shape == (3, 20, 20, 3)
    assert (rgb[1, :, :, 0] == 200).all() and (rgb[1, :, :, 1:] == 0).all()
    assert abs(int(rgb[2].mean()) - 90) <= 2              # JPEG, nearly exact
    small = image_folder(tmp_path, size=10)               # shorter side 20 -> 10
    assert small.shape == (3, 10, 10)
    assert small[0, :, 2:8].min() > 240


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images found"):
        image_folder(tmp_path, size=8)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nope", size=8)
    with pytest.raises(ValueError, match="channels"):
        image_folder(tmp_path, size=8, channels=2)


def test_load_dataset_specs(real_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGAN_DATA", str(real_root))
    assert load_dataset("mnist:test").shape == (10000, 28, 28)
    assert load_dataset("mnist:test", limit=5).shape == (5, 28, 28)
    faces = load_dataset("quickdraw:smiley face", limit=7)
    assert faces.shape == (7, 28, 28)
    assert load_dataset("ellipses", limit=6).shape == (6, 28, 28)
    assert load_dataset("ellipses:9", channels=3).shape == (9, 28, 28, 3)
    _save(tmp_path / "x.png", np.zeros((32, 32), np.uint8))
    assert load_dataset(f"folder:{tmp_path}", size=16).shape == (1, 16, 16)


@pytest.mark.parametrize("spec", ["cifar10", "mnist:valid", "quickdraw:", "folder:", "ellipses:x"])
def test_load_dataset_unknown(spec):
    with pytest.raises(ValueError, match="valid forms") as info:
        load_dataset(spec)
    for form in ("mnist:test", "quickdraw:CATEGORY", "ellipses", "folder:PATH"):
        assert form in str(info.value)
