"""RUN/index.html in a real headless Chromium: no errors, every image there and drawn, the
epoch slider switching the grid; and the page's pieces from the run folder's files."""

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from minigan.gan import TrainConfig, Trainer
from minigan.report import RunReport, refresh
from minigan.testing import chromium_page

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "", shutil.which("chromium-browser")
                             or "") if p and Path(p).is_file()), None)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Two epochs of a tiny GAN on 8x8 ellipses with every recorder on, the page refreshed by
    the RunReport callback as training goes."""
    out = tmp_path_factory.mktemp("page") / "run"
    config = TrainConfig(dataset="ellipses", limit=48, image_size=8, width=4, z_dim=8,
                         batch_size=8, epochs=2, out=str(out), progress=False, log_every=2,
                         log_internals=True)
    Trainer(config, callbacks=[RunReport()]).fit()
    return out


def test_the_page_names_what_the_run_folder_holds(run):
    page = (run / "index.html").read_text()
    for name in ("samples/epoch_001.png", "samples/epoch_002.png", "curves.png",
                 "progress.gif", "internals.png", "d_logits.png", "spectra.png"):
        assert (run / name).is_file(), f"{name} was not written"
        assert name in page, f"index.html does not show {name}"
    assert "http://" not in page and "https://" not in page, "the page must work offline"
    assert "minigan inspect" in page, "without inspect, the page says how to get nearest.png"


def _look(run, seen):
    class Look(RunReport):
        def on_pictures(self, trainer):
            super().on_pictures(trainer)
            seen.append((trainer.step, (run / "index.html").read_text().count('id="grid"'),
                         f"samples/epoch_{trainer.epoch:03d}.png" in
                         (run / "index.html").read_text()))
    return Look()


def _tiny(run, **kw):
    return TrainConfig(dataset="ellipses", limit=16, image_size=8, width=4, z_dim=8,
                       batch_size=8, out=str(run), progress=False, log_every=1, fd_every=0,
                       **kw)


def test_the_page_is_rewritten_at_every_epoch_with_budget_1(tmp_path):
    seen = []
    run = tmp_path / "run"
    Trainer(_tiny(run, epochs=2, picture_budget=1.0), callbacks=[_look(run, seen)]).fit()
    assert seen == [(2, 1, True), (4, 1, True)], f"page after each epoch: {seen}"


def test_a_small_picture_budget_skips_redraws_but_the_end_has_everything(tmp_path):
    from PIL import Image

    seen = []
    run = tmp_path / "run"
    # budget 0: the first epoch draws (nothing spent yet), then nothing until training ends
    Trainer(_tiny(run, epochs=4, picture_budget=0.0), callbacks=[_look(run, seen)]).fit()
    assert seen == [(2, 1, True), (8, 1, True)], f"redraws: {seen}"
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == 4, "the final GIF holds every epoch's grid"
    assert "samples/epoch_004.png" in (run / "index.html").read_text()
    assert (run / "curves.png").stat().st_mtime >= (run / "metrics.jsonl").stat().st_mtime


def test_pictures_are_brought_up_to_date_when_training_is_interrupted(tmp_path):
    from PIL import Image

    from minigan.gan.trainer import TrainingInterrupted

    def stop_at_7(trainer, stats):
        if trainer.step == 7:                       # in epoch 4 of 2 steps each
            trainer._stop_requested = True
    seen = []
    run = tmp_path / "run"
    trainer = Trainer(_tiny(run, epochs=6, picture_budget=0.0),
                      callbacks=[_look(run, seen), stop_at_7])
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    assert [s for s, _, _ in seen] == [2, 7], f"redraws: {seen}"
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == 3, "the GIF holds the three finished epochs' grids"
    assert "samples/epoch_003.png" in (run / "index.html").read_text()


def test_the_page_shows_an_eval_table_and_the_nearest_sheet(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "eval.json").write_text(json.dumps({"fd": 12.5, "modes": 9}))
    (copy / "nearest.png").write_bytes((run / "curves.png").read_bytes())
    (copy / "inspect.json").write_text(json.dumps(
        {"step": 12, "nearest": {"space": "pixel", "k": 5, "n_samples": 8, "ratio": 1.25,
                                 "sample_to_train": 5.0, "real_to_train": 4.0,
                                 "held_out": "x"}}))
    page = refresh(copy).read_text()
    assert "eval.json" in page and "12.5" in page
    assert 'src="nearest.png"' in page and "ratio 1.25" in page


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable (/usr/bin/chromium): "
                                             "apt-get install -y chromium")
def test_the_page_in_a_headless_browser(run):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with chromium_page((run / "index.html").as_uri(), CHROMIUM) as (page, errors):
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.complete, "
                   "e.naturalWidth])")
        assert len(images) >= 6, f"only {len(images)} images on the page"
        for src, complete, width in images:
            path = run / unquote(urlparse(src).path)
            assert path.is_file(), f"the page shows {src}, which is not in the run folder"
            assert complete and width > 0, f"{src} did not render (naturalWidth {width})"
        grid = page.locator("#grid")
        last = grid.get_attribute("src")
        assert last == "samples/epoch_002.png", last
        page.locator("#epoch").fill("0")            # moves the range input, fires 'input'
        assert grid.get_attribute("src") == "samples/epoch_001.png"
        assert page.locator("#epoch-label").inner_text() == "epoch 1"
        page.wait_for_function("document.getElementById('grid').naturalWidth > 0")
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory) -> Path:
    """Four steps of tiny MLPs on the ring, a frame and a protocol line every two."""
    from minigan.lab import LabConfig, LabTrainer

    out = tmp_path_factory.mktemp("lab") / "run"
    config = LabConfig(out=str(out), steps=4, frame_every=2, eval_every=2, g_hidden=16,
                       g_layers=2, d_hidden=16, d_layers=2, batch_size=8, log_every=2,
                       progress=False)
    LabTrainer(config, callbacks=[RunReport()]).fit()
    return out


def test_the_lab_page_names_what_the_run_folder_holds(lab_run):
    page = (lab_run / "index.html").read_text()
    for name in ("frames/step_0000000.png", "frames/step_0000004.png", "lab.gif",
                 "protocol.png", "curves.png"):
        assert (lab_run / name).is_file(), f"{name} was not written"
        assert name in page, f"index.html does not show {name}"
    assert "lab: ring (bce)" in page and "modes covered" in page
    assert page.count("<tr>") == 3, "a header and one row per protocol evaluation (steps 2, 4)"
    assert "http://" not in page and "https://" not in page, "the page must work offline"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable (/usr/bin/chromium): "
                                             "apt-get install -y chromium")
def test_the_lab_page_in_a_headless_browser(lab_run):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with chromium_page((lab_run / "index.html").as_uri(), CHROMIUM) as (page, errors):
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])")
        assert {src for src, _, _ in images} == {
            "frames/step_0000004.png", "lab.gif", "protocol.png", "curves.png"}
        for src, complete, width in images:
            assert complete and width > 0, f"{src} did not render (naturalWidth {width})"
        grid = page.locator("#grid")
        page.locator("#epoch").fill("1")            # moves the range input, fires 'input'
        assert grid.get_attribute("src") == "frames/step_0000002.png"
        assert page.locator("#epoch-label").inner_text() == "step 2"
        page.wait_for_function("document.getElementById('grid').naturalWidth > 0")
        page.screenshot(path=str(lab_run / "page.png"), full_page=True)
    assert not errors, f"the lab page logged errors: {errors}"
