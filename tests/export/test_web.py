"""`minigan export --format web`: the page in a real headless Chromium, opened from file://
with no server: its pixels for noise fixed through the URL against `minigan sample` on the same
noise, the new-batch button, the walk between two clicked samples against minigan's slerp."""

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest

from minigan.cli import load_generator, main
from minigan.export import export_generator
from minigan.gan import generate, slerp, to_uint8

from .conftest import Z_DIM, noise, preset

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "", shutil.which("chromium-browser")
                             or "") if p and Path(p).is_file()), None)
N, SEED = 16, 4
READ_TILES = """sel => [...document.querySelectorAll(sel)].map(c =>
    Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data))"""


@pytest.fixture(scope="module")
def site(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("web") / "site"
    assert main(["export", str(run), "--format", "web", "-o", str(out), "--seed",
                 str(SEED)]) == 0
    return out


def test_the_folder_is_static_and_offline(site):
    assert sorted(p.name for p in site.iterdir()) == ["generator.js", "index.html", "page.js",
                                                      "weights.js"]
    for p in site.iterdir():
        text = p.read_text()
        assert "http://" not in text and "https://" not in text, f"{p.name} reaches the network"
        assert "fetch(" not in text, f"{p.name} fetches: blocked under file://"


def _gray(tiles: list, h: int, w: int) -> np.ndarray:
    """(N, H, W) uint8 from canvases' RGBA data of gray images (R = G = B, opaque)."""
    a = np.array(tiles, np.uint8).reshape(len(tiles), h, w, 4)
    assert (a[..., 3] == 255).all() and (a[..., 0] == a[..., 1]).all()
    return a[..., 0]


def _url(site: Path, z: np.ndarray) -> str:
    """The page with noise `z` fixed through its URL (base64url of little-endian float32)."""
    return (site / "index.html").as_uri() + "#z=" + base64.urlsafe_b64encode(
        z.astype("<f4").tobytes()).decode()


@pytest.fixture
def page():
    """A headless Chromium page that records console errors into page.errors."""
    if CHROMIUM is None:
        pytest.skip("no Chromium executable (/usr/bin/chromium): apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page()
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        yield page
        browser.close()


# between them every layer kind, both channel counts and both sizes (dcgan 1x28x28 is the run)
WEB_PRESETS = [("atienza", (3, 28, 28)), ("radford", (1, 64, 64)), ("dense", (3, 64, 64)),
               ("dcgan", (3, 64, 64))]


def test_presets_run_in_the_page(page, tmp_path):
    """generator.js against minigan on presets with upsampling, 3 channels, 64x64, an MLP:
    its float output to 1e-4, its pixels to 1/255."""
    z = noise(3)
    for arch, shape in WEB_PRESETS:
        G = preset(arch, shape)
        want = generate(G, z, batch_size=16, seed=2)
        site = export_generator(G, "web", tmp_path / f"{arch}-{shape[0]}-{shape[1]}",
                                z_dim=Z_DIM, batch_size=16, seed=2)
        page.goto(_url(site, z))
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
        floats = np.array(page.evaluate("() => window.minigan.batch().images.map("
                                           "im => Array.from(im))")).reshape(want.shape)
        err = np.abs(floats - want).max()
        assert err <= 1e-4, f"{arch} {shape}: page's forward pass vs minigan max |diff| {err}"
        tiles = np.array(page.evaluate(READ_TILES, "#grid canvas"), np.uint8)
        tiles = tiles.reshape(3, shape[1], shape[2], 4)[..., :shape[0]]
        ref = to_uint8(want).reshape(tiles.shape)
        diff = np.abs(tiles.astype(int) - ref).max()
        assert diff <= 1, f"{arch} {shape}: page vs minigan max pixel difference {diff}/255"
    assert not page.errors, f"console errors: {page.errors}"


def test_the_page_draws_what_minigan_sample_draws(run, site, page, tmp_path):
    G, info = load_generator(run)
    z_dim = info["config"]["z_dim"]
    # `minigan sample -n N --seed SEED` draws this noise; the page gets it through its URL
    npy = tmp_path / "s.npy"
    assert main(["sample", str(run), "-n", str(N), "--seed", str(SEED), "-o", str(npy)]) == 0
    want = np.load(npy)                                               # (N, 28, 28) uint8
    z = np.random.default_rng(SEED).standard_normal((N, z_dim), dtype=np.float32)
    page.goto(_url(site, z))
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
    got = _gray(page.evaluate(READ_TILES, "#grid canvas"), 28, 28)
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want).max()
    assert diff <= 1, f"page vs minigan sample: max pixel difference {diff}/255"
    assert (got.astype(int) - want != 0).mean() < 0.01, "more than rounding differs"

    # the walk between two clicked samples is minigan's slerp through the same generator
    tiles = page.locator("#grid canvas")
    tiles.nth(2).click()
    tiles.nth(9).click()
    page.wait_for_function("document.body.dataset.state === 'ready' && "
                           "document.querySelectorAll('#walk canvas').length === 10")
    walk = _gray(page.evaluate(READ_TILES, "#walk canvas"), 28, 28)
    zs = np.stack([slerp(z[2], z[9], t) for t in np.linspace(0, 1, 10)])
    ref = to_uint8(generate(G, zs, batch_size=info["recipe"]["batch_size"], seed=SEED))
    diff = np.abs(walk.astype(int) - ref).max()
    assert diff <= 1, f"page's walk vs minigan slerp: max pixel difference {diff}/255"
    assert np.array_equal(walk[0], got[2]) and np.array_equal(walk[-1], got[9])
    assert page.locator("#player").is_visible(), "the walk plays in a larger view"

    # the button draws a different batch, of the same size
    page.click("#new")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
    again = _gray(page.evaluate(READ_TILES, "#grid canvas"), 28, 28)
    assert again.shape == got.shape
    assert np.abs(again.astype(int) - got).mean() > 1, "the button drew the same batch"
    assert page.locator("#walk canvas").count() == 0, "a new batch clears the walk"
    assert page.locator("#player").is_hidden(), "a new batch stops the walk's animation"

    # noise of the wrong length in the URL is refused with a message, not drawn
    page.goto(_url(site, z[:3, :5]).replace("#z=", "?again#z="))   # a load, not a hash change
    page.wait_for_function("document.body.dataset.state === 'error'")
    assert f"n * {z_dim} little-endian float32" in page.locator("#status").text_content()
    assert not page.errors, f"console errors: {page.errors}"
