import numpy as np
import pytest
from PIL import Image

from minigan import viz
from minigan.viz import image_grid, plot_curves, save_gif, save_grid


def test_grid_geometry_and_placement():
    images = np.zeros((64, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(64)                       # mark each image's corner
    grid = image_grid(images, nrow=8, padding=2, pad_value=200)
    assert grid.shape == (242, 242) and grid.dtype == np.uint8   # 8 * (28 + 2) + 2
    for i in (0, 9, 63):
        r, c = divmod(i, 8)
        assert grid[2 + 30 * r, 2 + 30 * c] == i
    assert (grid[:2] == 200).all() and (grid[:, 30:32] == 200).all()

    odd = image_grid(np.zeros((10, 5, 7), np.uint8), nrow=4, padding=1)
    assert odd.shape == (3 * 6 + 1, 4 * 8 + 1)            # 3 rows of 4, last row part-empty
    assert image_grid(np.zeros((3, 5, 5), np.uint8), nrow=8, padding=0).shape == (5, 15)


def test_float_values_map_to_uint8():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0, -7.0, np.nan], np.float32)
    images = np.broadcast_to(x, (1, 1, 2, 8))              # (N, C, H, W)
    grid = image_grid(images, padding=0)
    assert grid.shape == (2, 8)
    assert grid[0].tolist() == [0, 64, 128, 191, 255, 255, 0, 0]


def test_rgb_grid():
    images = -np.ones((5, 3, 4, 4), np.float32)
    images[:, 1] = 1.0                                     # pure green
    grid = image_grid(images, nrow=5, padding=1, pad_value=0)
    assert grid.shape == (6, 26, 3)
    assert grid[1, 1].tolist() == [0, 255, 0]
    uint8 = image_grid(np.full((2, 4, 4, 3), 7, np.uint8), padding=0)
    assert uint8.shape == (4, 8, 3) and (uint8 == 7).all()


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 4, 4), np.float32),
                                 np.zeros((2, 4, 4, 2), np.uint8), np.zeros((2, 4), np.int64),
                                 np.zeros((0, 4, 4), np.uint8)])
def test_grid_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        image_grid(bad)


def test_save_grid_scales(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    path = save_grid(images, tmp_path / "out" / "grid.png", nrow=4)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (2 * 122, 2 * 122)   # default scale 2
        big = np.asarray(img)
    small = image_grid(images, nrow=4)
    np.testing.assert_array_equal(big[::2, ::2], small)
    np.testing.assert_array_equal(big[1::2, 1::2], small)
    with Image.open(save_grid(images, tmp_path / "one.png", nrow=4, scale=1)) as img:
        assert img.size == (122, 122)


def test_gif_frames_and_timing(tmp_path):
    frames = []
    for k in range(4):
        frame = np.zeros((20, 30), np.uint8)
        frame[:, 5 * k:5 * k + 5] = 255                   # a bar moving right
        frames.append(frame)
    paths = [Image.fromarray(f) for f in frames[:2]]
    for i, p in enumerate(paths):
        p.save(tmp_path / f"f{i}.png")
    mixed = [tmp_path / "f0.png", tmp_path / "f1.png"] + frames[2:]
    path = save_gif(mixed, tmp_path / "progress.gif", duration_ms=100)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == (30, 20)
        durations, lit = [], []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
            lit.append(int(np.argmax(np.asarray(gif.convert("L"))[0] > 128)))
        assert gif.info.get("loop") == 0
    assert durations[:3] == [100, 100, 100] and durations[3] > 100   # last frame held
    assert lit == [0, 5, 10, 15]


def test_gif_rejects_mixed_sizes(tmp_path):
    with pytest.raises(ValueError, match="one size"):
        save_gif([np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)], tmp_path / "x.gif")


def test_plot_curves_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    records = [{"step": s, "loss_d": 1.3 - s / 400 + rng.random() * 0.1, "loss_g": 0.7 + s / 300,
                "acc_real": 0.6, "acc_fake": 0.55, "d_x": 0.6, "d_g_z": 0.4} for s in range(200)]
    records += [{"step": s, "fd": 50.0 / (1 + s), "modes": 3 + s // 50} for s in (0, 100, 199)]
    path = plot_curves(records, tmp_path / "plots" / "curves.png", marks=[120, 150])
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 700  # four panels
        four = img.size[1]
    partial = [{"step": 0, "loss_d": 1.0}, {"step": 1, "loss_g": None}, {"loss_d": float("nan")}]
    with Image.open(plot_curves(partial, tmp_path / "partial.png")) as img:
        assert img.size[1] < four                          # three panels, no quality panel


def test_plot_curves_draws_scheduled_learning_rates_on_the_loss_panel(tmp_path):
    base = [{"step": s, "loss_d": 1.0, "loss_g": 0.5} for s in range(100)]
    decayed = [dict(r, lr_g=2e-4 * min(1, (100 - s) / 50), lr_d=2e-4 * min(1, (100 - s) / 50))
               for s, r in enumerate(base)]

    def gray(records, name):     # the learning-rate line is drawn in matplotlib's "gray"
        with Image.open(plot_curves(records, tmp_path / name)) as img:
            a = np.asarray(img.convert("RGB")).astype(int)
        return int((np.abs(a - 128).max(axis=2) <= 8).sum()), a.shape

    (without, shape), (with_lr, shape_lr) = gray(base, "a.png"), gray(decayed, "b.png")
    assert shape == shape_lr
    assert with_lr > without + 150, f"{with_lr} gray pixels with the schedule, {without} without"


def test_plot_curves_draws_an_r1_penalty_on_the_loss_panel(tmp_path):
    base = [{"step": s, "loss_d": 1.0, "loss_g": 0.5} for s in range(100)]
    with_r1 = [dict(r, r1=0.2 + 0.001 * s) for s, r in enumerate(base)]

    def red(records, name):      # matplotlib's "tab:red" is (214, 39, 40)
        with Image.open(plot_curves(records, tmp_path / name)) as img:
            a = np.asarray(img.convert("RGB")).astype(int)
        return int((np.abs(a - (214, 39, 40)).max(axis=2) <= 30).sum())

    assert red(base, "a.png") == 0 and red(with_r1, "b.png") > 40     # a dotted line: 86 here


def test_plot_curves_draws_top_k_on_the_accuracy_panel(tmp_path):
    base = [{"step": s, "loss_d": 1.0, "loss_g": 0.5, "acc_real": 0.6, "acc_fake": 0.5}
            for s in range(100)]
    with_k = [dict(r, g_top_k=max(16, 32 - s // 5)) for s, r in enumerate(base)]

    def brown(records, name):    # matplotlib's "tab:brown" is (140, 86, 75)
        with Image.open(plot_curves(records, tmp_path / name)) as img:
            a = np.asarray(img.convert("RGB")).astype(int)
        rows = np.nonzero((np.abs(a - (140, 86, 75)).max(axis=2) <= 30).any(axis=1))[0]
        return rows, a.shape[0]

    (none, _), (rows, height) = brown(base, "a.png"), brown(with_k, "b.png")
    assert none.size == 0 and rows.size > 5
    # on the second of three panels: between a third and two thirds of the figure's height
    assert height / 3 - 20 < rows.min() and rows.max() < 2 * height / 3 + 20, (rows, height)


def test_internals_matrix_puts_each_statistic_in_its_layer_row():
    lines = [{"step": 10, "layers": {"G.0": {"type": "Linear", "mean": 1.0},
                                     "D.1": {"type": "LeakyReLU", "mean": 2.0, "neg": 0.5}}},
             {"step": 20, "layers": {"G.0": {"type": "Linear", "mean": 3.0, "grad": None}}}]
    labels, steps, m = viz.internals_matrix(lines, "mean")
    assert labels == ["G.0 Linear", "D.1 LeakyReLU"] and steps == [10, 20]
    np.testing.assert_array_equal(m, [[1.0, 3.0], [2.0, np.nan]])
    _, _, neg = viz.internals_matrix(lines, "neg")
    np.testing.assert_array_equal(neg, [[np.nan, np.nan], [0.5, np.nan]])


def test_recorded_views_draw_to_pngs(tmp_path):

    rng = np.random.default_rng(0)
    lines = [{"step": s, "layers": {"G.0": {"type": "Linear", "mean": 0.1 * s, "std": 0.0,
                                             "grad": 1.0 + s}}} for s in (2, 4, 6)]
    views = [{"epoch": e, "logits_real": rng.normal(e, 1, 50).tolist(),
              "logits_fake": rng.normal(-e, 1, 50).tolist()} for e in (1, 2, 3)]
    spec = rng.normal(size=(8, 8))
    paths = [viz.plot_internals(lines, tmp_path / "i.png", title="t"),     # std 0: red row
             viz.plot_logit_histograms(views, tmp_path / "h.png"),
             viz.plot_spectra(spec, [("a", spec + 1), ("b", spec - 1)], tmp_path / "s.png")]
    for p in paths:
        with Image.open(p) as im:
            assert im.size[0] > 300 and im.size[1] > 150, f"{p.name} is {im.size}"


def test_nearest_sheet_rows_are_sample_gap_neighbours(tmp_path):

    s = np.full((2, 1, 4, 4), 1.0, np.float32)                   # white samples
    nb = np.full((2, 3, 1, 4, 4), -1.0, np.float32)              # black neighbours
    path = viz.save_nearest_sheet(s, nb, tmp_path / "n.png", scale=1)
    a = np.asarray(Image.open(path))
    assert a.shape == (2 * 6 + 2, 5 * 6 + 2)
    assert (a[2:6, 2:6] == 255).all() and (a[2:6, 8:12] == 128).all()   # sample, gap
    assert (a[2:6, 14:18] == 0).all() and (a[8:12, 26:30] == 0).all()   # neighbours


def test_spread_keeps_the_ends_and_spaces_the_rest_evenly():
    assert viz.spread(range(5), 8) == [0, 1, 2, 3, 4]
    assert viz.spread(range(64), 16)[0] == 0 and viz.spread(range(64), 16)[-1] == 63
    picked = viz.spread(range(64), 16)
    assert len(picked) == 16 and picked == sorted(set(picked))
    gaps = np.diff(picked)
    assert gaps.min() >= 4 and gaps.max() <= 5          # 63 / 15 = 4.2 between neighbours
    assert viz.spread(range(10), 2) == [0, 9]
    assert viz.spread(range(10), 1) == [9] and viz.spread(range(10), 0) == []


def test_logit_rows_say_how_often_d_is_right(tmp_path, monkeypatch):
    """The label of each epoch's row is D's accuracy at 0 (a tie half right), counted here
    independently; with more epochs than rows, the first and the last are shown."""
    from matplotlib.axes import Axes

    seen = {}
    original = Axes.set_yticks

    def spy(self, ticks, labels=None, **kw):
        seen["labels"] = list(labels) if labels is not None else None
        return original(self, ticks, labels, **kw)

    monkeypatch.setattr(Axes, "set_yticks", spy)
    views = [{"epoch": e, "logits_real": [1.0, 2.0, -1.0, 0.0],         # 2.5 of 4 right
              "logits_fake": [-1.0, -2.0, -3.0, 4.0]} for e in range(1, 41)]  # 3 of 4
    viz.plot_logit_histograms(views, tmp_path / "h.png", max_rows=5)
    labels = seen["labels"]
    assert len(labels) == 5
    assert labels[0].startswith("epoch 1:") and labels[-1].startswith("epoch 40:")
    assert all(s.endswith("D right on 69%") for s in labels)    # (2.5 + 3) / 8 = 68.75 %
