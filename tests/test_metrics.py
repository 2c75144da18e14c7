import math
import os
from pathlib import Path

import numpy as np
import pytest

import minigan
from minigan import metrics as M
from minigan import nn
from minigan.data import ellipses

TINY = M.Recipe(channels=(4, 8, 8), hidden=32, epochs=2, batch_size=32, lr=1e-2,
                final_lr=3e-3, max_steps=40)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No network, a private cache folder, and no classifiers remembered between tests."""
    monkeypatch.setenv("MINIGAN_OFFLINE", "1")
    monkeypatch.setenv("MINIGAN_CACHE", str(tmp_path / "cache"))
    for table in ("_DATA", "_MODELS", "_REFERENCES"):
        monkeypatch.setattr(M, table, {})


def real_root() -> Path:
    root = os.environ.get("MINIGAN_DATA")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("real MNIST not available: set MINIGAN_DATA to a folder holding mnist/")
    return Path(root)



def test_fd_of_identical_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(400, 16)) * 3 + 1
    assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-9)


def test_fd_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    d1, d2 = rng.uniform(0.1, 4, 6), rng.uniform(0.1, 4, 6)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    got = M.frechet_distance_from_stats(mu1, np.diag(d1), mu2, np.diag(d2))
    assert got == pytest.approx(want, rel=1e-10)
    # the same Gaussians in a rotated frame: covariances share eigenvectors, FD is unchanged
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    got = M.frechet_distance_from_stats(q @ mu1, q @ np.diag(d1) @ q.T, q @ mu2,
                                        q @ np.diag(d2) @ q.T)
    assert got == pytest.approx(want, rel=1e-9)
    # from samples: the estimate approaches the closed form
    a = mu1 + rng.normal(size=(40000, 6)) * np.sqrt(d1)
    b = mu2 + rng.normal(size=(40000, 6)) * np.sqrt(d2)
    assert M.frechet_distance(a, b) == pytest.approx(want, rel=0.03, abs=0.02)


def test_fd_general_covariances_and_symmetry():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)   # do not commute
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # Tr (S1 S2)^(1/2) = sum of square roots of the (real, positive) eigenvalues of S1 S2
    tr_root = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_root
    fd12 = M.frechet_distance_from_stats(mu1, s1, mu2, s2)
    fd21 = M.frechet_distance_from_stats(mu2, s2, mu1, s1)
    assert fd12 == pytest.approx(want, rel=1e-8)
    assert fd21 == pytest.approx(fd12, rel=1e-8)
    fa, fb = rng.normal(size=(300, 5)), rng.normal(size=(200, 5)) @ a + 1
    assert M.frechet_distance(fa, fb) == pytest.approx(M.frechet_distance(fb, fa), rel=1e-8)


def test_fd_guards():
    rng = np.random.default_rng(3)
    few = rng.normal(size=(5, 32))                # rank-deficient covariances: still finite
    fd = M.frechet_distance(few, rng.normal(size=(7, 32)))
    assert np.isfinite(fd) and fd >= 0
    same = np.ones((10, 4))                       # zero covariance
    assert M.frechet_distance(same, same) == pytest.approx(0.0, abs=1e-12)
    bad = rng.normal(size=(10, 4))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.frechet_distance(bad, rng.normal(size=(10, 4)))
    with pytest.raises(ValueError, match="shapes differ"):
        M.frechet_distance(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        M.frechet_distance(rng.normal(size=(1, 4)), rng.normal(size=(10, 4)))



def test_histogram_modes_kl_entropy():
    uniform = np.full(10, 0.1)
    assert M.mode_coverage(uniform) == 10
    assert M.kl_divergence(uniform, uniform) == pytest.approx(0.0, abs=1e-12)
    assert M.class_entropy(uniform) == pytest.approx(math.log(10))
    one = np.eye(10)[3]
    assert M.mode_coverage(one) == 1
    assert M.class_entropy(one) == 0.0
    assert M.kl_divergence(one, uniform) == pytest.approx(math.log(10), rel=1e-3)
    # a class holding exactly 2% counts as a mode, 1.9% does not
    assert M.mode_coverage(np.array([0.98, 0.02])) == 2
    assert M.mode_coverage(np.array([0.981, 0.019])) == 1
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    want = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert M.kl_divergence(p, q) == pytest.approx(want, rel=1e-3)
    # a class the real data never shows is expensive but finite: q is smoothed by 1e-4
    q = (np.array([1.0, 0.0]) + 1e-4) / (1 + 2e-4)
    want = 0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1])
    assert M.kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(want)


def test_class_histogram_and_confidence():
    labels = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(M.class_histogram(labels, 4), [2 / 6, 1 / 6, 3 / 6, 0])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    np.testing.assert_allclose(M.class_histogram(probs), [0.5, 0.25, 0.25])
    assert M.mean_confidence(probs) == pytest.approx((0.7 + 0.8 + 0.6 + 0.5) / 4)


def test_diversity_figures():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(600, 8))
    assert M.diversity(rng.normal(size=(600, 8)), real) == pytest.approx(1.0, abs=0.05)
    copies = np.repeat(real[:1], 600, axis=0)
    assert M.diversity(copies, real) == 0.0
    assert M.nearest_neighbour_distance(copies) == 0.0
    few = np.repeat(real[:10], 60, axis=0)        # ten distinct samples: pairwise spread stays
    assert M.diversity(few, real) > 0.7
    assert M.nearest_neighbour_distance(few) == 0.0
    # mean pairwise distance of two points is their distance
    assert M.mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def test_collapse_warning_on_metric_dicts():
    healthy = {"diversity": 1.0, "nn_diversity": 1.05, "class_entropy_ratio": 0.99,
               "modes": 10, "num_classes": 10}
    assert M.collapse_warning(healthy) is None
    msg = M.collapse_warning(dict(healthy, nn_diversity=0.0))
    assert msg and "nearest-neighbour" in msg and "10 of 10" in msg
    msg = M.collapse_warning(dict(healthy, class_entropy_ratio=0.1, modes=1))
    assert msg and "class entropy 0.10" in msg and "1 of 10" in msg
    # single-category data has no class spread to lose: a NaN ratio is skipped
    assert M.collapse_warning(dict(healthy, class_entropy_ratio=float("nan"))) is None
    assert M.collapse_warning(healthy, {"diversity": 1.5}) is not None
    assert M.collapse_warning({"diversity": 0.1}) is not None



def test_as_uint8_images_accepts_generator_output():
    x = np.zeros((3, 1, 28, 28), np.float32)
    x[:, :, 0, 0] = 1.0
    u = M.as_uint8_images(minigan.tensor(x))
    assert u.shape == (3, 28, 28) and u.dtype == np.uint8
    assert u[0, 0, 0] == 255 and u[0, 1, 1] == 128
    np.testing.assert_array_equal(M.as_uint8_images(u[..., None]), u)
    with pytest.raises(ValueError, match="28x28"):
        M.as_uint8_images(np.zeros((2, 32, 32), np.uint8))


def shapes_data(n: int = 600, seed: int = 0) -> M.LabelledData:
    """Two synthetic classes that need no download: filled ellipses and ellipse outlines."""
    x = np.concatenate([ellipses(n, seed=seed), ellipses(n, filled=False, seed=seed + 1)])
    y = np.repeat(np.arange(2, dtype=np.uint8), n)
    order = np.random.default_rng(seed).permutation(2 * n)
    x, y = x[order], y[order]
    k = n * 3 // 2
    return M.LabelledData("shapes", ["filled", "outline"], x[:k], y[:k], x[k:], y[k:])


@pytest.fixture(scope="module")
def shapes():
    """A tiny classifier trained for 40 steps on the synthetic shapes (shared by tests)."""
    data = shapes_data()
    state = minigan.backend.rng.get_state()["numpy"]
    model, record = M.train_classifier(data.x_train, data.y_train, data.classes, TINY,
                                       log=None, log_every=10)
    record["rng_kept"] = minigan.backend.rng.get_state()["numpy"] == state
    return data, model, record


def test_train_classifier_learns_synthetic_shapes(shapes):
    data, model, record = shapes
    assert record["steps"] == 40 and len(record["losses"]) == 4
    assert record["losses"][-1] < 0.5 * record["losses"][0], record["losses"]
    assert model.accuracy(data.x_test, data.y_test) > 0.85      # chance: 0.5
    feats, probs = model.predict(data.x_test[:7])
    assert feats.shape == (7, 32) and probs.shape == (7, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert record["rng_kept"]          # the global RNG is left as it was


def test_classifier_cache_key_and_reload(monkeypatch, tmp_path):
    data = shapes_data(200)
    monkeypatch.setattr(M, "task_data", lambda dataset="mnist", root=None: data)
    recipe = M.Recipe(**{**TINY.__dict__, "max_steps": 3})
    model = M.classifier("mnist", recipe=recipe, log=None)
    files = sorted((tmp_path / "cache" / "classifiers").iterdir())
    assert [f.name for f in files] == [f"mnist-{M.cache_key(data, recipe)[:20]}.npz"]
    assert {"test_accuracy", "train_seconds", "key", "recipe"} <= set(model.info)

    # a fresh process loads the file instead of training
    real_train = M.train_classifier
    monkeypatch.setattr(M, "_MODELS", {})
    monkeypatch.setattr(M, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    again = M.classifier("mnist", recipe=recipe)
    np.testing.assert_array_equal(again.predict(data.x_test[:5])[1],
                                  model.predict(data.x_test[:5])[1])
    assert again.info["test_accuracy"] == model.info["test_accuracy"]
    assert M.load_classifier(files[0]).classes == ["filled", "outline"]
    with pytest.raises(FileNotFoundError, match="no cached"):
        M.classifier("mnist", recipe=M.Recipe(**{**recipe.__dict__, "seed": 1}), train=False)

    # a damaged file is replaced by a new training run
    monkeypatch.setattr(M, "_MODELS", {})
    monkeypatch.setattr(M, "train_classifier", real_train)
    files[0].write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="unreadable"):
        M.classifier("mnist", recipe=recipe, train=False)
    fixed = M.classifier("mnist", recipe=recipe, log=None)
    np.testing.assert_array_equal(fixed.predict(data.x_test[:5])[1],
                                  model.predict(data.x_test[:5])[1])
    assert M.load_classifier(files[0]).info["key"] == model.info["key"]

    # the key follows the data (one pixel, one label, the class names) and the recipe
    key = M.cache_key(data, recipe)
    pixel = M.LabelledData(**{**data.__dict__, "x_train": data.x_train.copy()})
    pixel.x_train[0, 5, 5] ^= 1
    label = M.LabelledData(**{**data.__dict__, "y_test": 1 - data.y_test})
    names = M.LabelledData(**{**data.__dict__, "classes": ["a", "b"]})
    keys = {key, M.cache_key(pixel, recipe), M.cache_key(label, recipe),
            M.cache_key(names, recipe), M.cache_key(data, M.Recipe(**{**recipe.__dict__,
                                                                      "lr": 1e-4}))}
    assert len(keys) == 5 and M.cache_key(shapes_data(200), recipe) == key


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    assert M.cache_root() == tmp_path / "cache"
    monkeypatch.delenv("MINIGAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert M.cache_root() == tmp_path / "xdg" / "minigan"


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "sub" / "w.npz"
    M.atomic_save_npz(path, {"a": np.arange(3)})

    class Exploding:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        M.atomic_save_npz(path, {"a": np.arange(5), "b": Exploding()})
    assert [p.name for p in path.parent.iterdir()] == ["w.npz"]   # no temp file left behind
    with np.load(path) as f:
        np.testing.assert_array_equal(f["a"], np.arange(3))



def collapsed_generator(image: np.ndarray) -> nn.Module:
    """A minigan generator (Linear -> Tanh) whose output ignores the noise: one image."""
    g = nn.Sequential(nn.Linear(16, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))
    g[0].weight.data[...] = 0
    target = np.clip(image.reshape(-1) / 127.5 - 1, -0.999, 0.999)
    g[0].bias.data[...] = np.arctanh(target).astype(np.float32)
    return g


def check_healthy_and_collapsed(model, real, test_images, test_labels):
    n = min(500, len(test_images))
    rng = np.random.default_rng(0)
    healthy = test_images[:n]
    noisy = np.clip(healthy + rng.normal(0, 20, healthy.shape), 0, 255).astype(np.uint8)
    for images in (healthy, noisy):
        result = M.evaluate(images, model=model, real=real)
        assert M.collapse_warning(result) is None, result
    assert result["n"] == n and len(result["histogram"]) == len(model.classes)

    with minigan.no_grad():
        generated = collapsed_generator(test_images[0])(minigan.randn(n, 16))
    copies = M.evaluate(generated, model=model, real=real)
    assert copies["diversity"] < 0.01 and copies["nn_diversity"] < 0.01
    assert copies["modes"] == 1 and copies["kl"] > 0.5
    assert M.collapse_warning(copies)

    few = np.repeat(test_images[:10], n // 10, axis=0)          # ten images over and over
    assert M.collapse_warning(M.evaluate(few, model=model, real=real))

    one_class = test_images[test_labels == test_labels[0]][:n]
    jitter = np.clip(one_class + rng.normal(0, 10, one_class.shape), 0, 255).astype(np.uint8)
    result = M.evaluate(jitter, model=model, real=real)     # one class, slightly varied
    assert result["class_entropy_ratio"] < 0.5
    assert "class entropy" in M.collapse_warning(result)


def test_collapse_warning_on_synthetic_shapes(shapes):
    data, model, _ = shapes
    check_healthy_and_collapsed(model, data.x_train, data.x_test, data.y_test)


def test_evaluate_real_mnist(monkeypatch):
    root = real_root()
    monkeypatch.setenv("MINIGAN_DATA", str(root))
    x_train, y_train = minigan.data.mnist("train")
    x_test, y_test = minigan.data.mnist("test")
    model, _ = M.train_classifier(x_train[:4000], y_train[:4000], [str(i) for i in range(10)],
                                  TINY, log=None)
    assert model.accuracy(x_test[:1000], y_test[:1000]) > 0.5     # chance: 0.1
    ref = M.Reference.from_images(model, x_train[:3000])
    check_healthy_and_collapsed(model, ref, x_test, y_test)
    floor = M.evaluate(x_test[:1000], model=model, real=ref)
    assert floor["modes"] == 10 and floor["kl"] < 0.05
    assert floor["fd"] < 0.1 * M.evaluate(x_test[y_test == 1][:500], model=model,
                                            real=ref)["fd"]


def _boxes(marks_inside: list[int], open_sides: list[bool]) -> np.ndarray:
    """Square outlines (uint8 255 on 0), each with the given number of separate dots inside,
    and a gap in its right side where open."""
    out = np.zeros((len(marks_inside), 28, 28), np.uint8)
    for img, k, gap in zip(out, marks_inside, open_sides, strict=True):
        img[4, 4:24] = img[23, 4:24] = img[4:24, 4] = img[4:24, 23] = 255
        for j in range(k):
            img[8 + 4 * j, 8:10] = 255
        if gap:
            img[12:15, 23] = 0
    return out


def test_drawing_structure_counts_closed_outlines_and_marks_inside():
    images = _boxes([3, 2, 0, 1, 3], [False, False, False, False, True])
    got = M.drawing_structure(images)
    # closed: all but the open box; 2+ marks: the closed boxes with 3 and 2; 3+: the first
    assert got == {"closed": 4 / 5, "marks2": 2 / 5, "marks3": 1 / 5, "marks2_bold": 2 / 5,
                   "marks3_bold": 1 / 5}
    as_float = images[:, None].astype(np.float32) / 127.5 - 1       # generator output
    assert M.drawing_structure(as_float) == got
    faint = images // 2                  # strokes at 127: below the threshold, nothing drawn
    assert M.drawing_structure(faint) == {"closed": 0.0, "marks2": 0.0, "marks3": 0.0,
                                          "marks2_bold": 0.0, "marks3_bold": 0.0}
    assert M.drawing_structure(faint, threshold=100, bold=100) == got
    # marks at 150 count at 128 but not among the bold strokes: the two boxes with 2+ marks
    # keep one bold mark each; outlines at 200 stay closed at both thresholds
    grey = np.where(images == 255, 200, 0).astype(np.uint8)
    grey[0, 8, 8:10] = grey[0, 12, 8:10] = grey[1, 8, 8:10] = 150
    assert M.drawing_structure(grey) == {"closed": 4 / 5, "marks2": 2 / 5, "marks3": 1 / 5,
                                         "marks2_bold": 0.0, "marks3_bold": 0.0}
    assert M.drawing_structure(grey, bold=150) == got
    # one faint mark of three: the box still holds two bold ones, but not three
    grey3 = np.where(images == 255, 200, 0).astype(np.uint8)
    grey3[0, 16, 8:10] = 150
    assert M.drawing_structure(grey3) == {"closed": 4 / 5, "marks2": 2 / 5, "marks3": 1 / 5,
                                          "marks2_bold": 2 / 5, "marks3_bold": 0.0}


def test_evaluate_reports_drawing_structure_for_quickdraw_only(shapes):
    data, model, _ = shapes
    images = np.concatenate([_boxes([2] * 6, [False] * 6), data.x_test[:6]])
    quickdraw = M.evaluate(images, "quickdraw:smiley face", model=model, real=data.x_train)
    # the ellipse outlines and filled ellipses hold no marks: only the boxes count
    assert quickdraw["marks2"] == 0.5 and quickdraw["closed"] >= 0.5
    assert "marks2" not in M.evaluate(images, "mnist", model=model, real=data.x_train)
