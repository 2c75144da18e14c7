"""RUN/index.html: one static page per run (relative paths, inline style and script, nothing
fetched), rebuilt from whatever the run folder holds at the moment."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from ..atomic import atomic_open
from ..gan.callbacks import read_jsonl
from ..metrics import DRAWING_STRUCTURE

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 0 18px 40px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 17px; margin: 26px 0 6px;
     border-bottom: 1px solid #ddd; padding-bottom: 3px; }
nav a { margin-right: 12px; } .meta { color: #555; }
img { max-width: 100%; background: white; border: 1px solid #e4e4e4; }
.pixel { image-rendering: pixelated; } .row { display: flex; gap: 22px; flex-wrap: wrap;
     align-items: flex-start; } .note { color: #777; font-style: italic; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } pre { background: #f3f3f3; padding: 8px; overflow: auto; }
input[type=range] { width: 320px; vertical-align: middle; }
"""

SLIDER = """
const frames = FRAMES;
const slider = document.getElementById("epoch");
const grid = document.getElementById("grid");
const label = document.getElementById("epoch-label");
function show() {
  const f = frames[Number(slider.value)];
  grid.src = f.src;
  label.textContent = f.label;
}
slider.addEventListener("input", show);
"""

QUALITY_KEYS = (("fd", "pixel FD"), ("fd_cls", "classifier FD"), ("modes", "modes"),
                ("kl", "KL to real mix"), ("confidence", "confidence"),
                ("diversity", "diversity"), ("nn_diversity", "NN diversity"),
                *((k, name) for k, name in DRAWING_STRUCTURE
                  if k in ("marks2", "marks2_bold", "marks3_bold")),
                ("collapse", "warning"))


def _img(src: str, alt: str, pixel: bool = False, width: int | None = None,
         id_: str | None = None) -> str:
    attrs = f' id="{id_}"' if id_ else ""
    attrs += ' class="pixel"' if pixel else ""
    attrs += f' width="{width}"' if width else ""
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}"{attrs}>'


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _samples_section(run: Path) -> str:
    grids = sorted((run / "samples").glob("epoch_*.png")) if (run / "samples").is_dir() else []
    if not grids:
        return '<p class="note">no epoch has finished yet</p>'
    frames = [{"src": f"samples/{p.name}", "label": f"epoch {int(p.stem.split('_')[1])}"}
              for p in grids]
    gif = _img("progress.gif", "every epoch's grid in turn", pixel=True, width=300) if (
        run / "progress.gif").is_file() else ""
    return _slider(frames, "fixed-noise samples", 420, True, f"<p>progress.gif</p>{gif}")


def _slider(frames: list[dict], alt: str, width: int, pixel: bool, beside: str) -> str:
    """A picture with a range slider over `frames` ({'src', 'label'}), and `beside` it."""
    last = len(frames) - 1
    script = SLIDER.replace("FRAMES", json.dumps(frames).replace("</", "<\\/"))
    return (f'<div class="row"><div><p><input type="range" id="epoch" min="0" max="{last}" '
            f'value="{last}" step="1"> <span id="epoch-label">{frames[-1]["label"]}</span></p>'
            f'{_img(frames[-1]["src"], alt, pixel=pixel, width=width, id_="grid")}'
            f'</div><div>{beside}</div></div><script>{script}</script>')


def _picture(run: Path, name: str, alt: str, missing: str, width: int | None = None) -> str:
    if (run / name).is_file():
        return _img(name, alt, width=width)
    return f'<p class="note">{missing}</p>'


def _quality_section(run: Path) -> str:
    records = [r for r in read_jsonl(run / "metrics.jsonl")
               if any(k in r for k, _ in QUALITY_KEYS)]
    parts = []
    if records:
        keys = [(k, name) for k, name in QUALITY_KEYS if any(k in r for r in records)]
        rows = [[round(r.get("epoch", 0))] + [r.get(k) for k, _ in keys] for r in records]
        parts.append("<p>Per epoch, from metrics.jsonl:</p>"
                     + _table(["epoch"] + [name for _, name in keys], rows))
    ev = run / "eval.json"
    if ev.is_file():
        data = json.loads(ev.read_text())
        flat = [[k, v] for k, v in data.items() if not isinstance(v, (list, dict))]
        parts.append("<p>eval.json:</p>" + _table(["", "value"], flat))
    return "".join(parts) or '<p class="note">no quality metrics recorded for this run</p>'


def _nearest_section(run: Path) -> str:
    info = run / "inspect.json"
    if not (run / "nearest.png").is_file() or not info.is_file():
        return (f'<p class="note">run <code>python -m minigan inspect {html.escape(str(run))}'
                '</code> to compare samples with their nearest training images</p>')
    d = json.loads(info.read_text())
    nn = d.get("nearest", {})
    text = (f"<p>Each row: a sample, then its {nn.get('k')} nearest training images in "
            f"{html.escape(str(nn.get('space')))} space (step {d.get('step')}). Mean distance "
            f"sample &rarr; nearest training image over {nn.get('n_samples')} samples: "
            f"{_fmt(nn.get('sample_to_train'))}; held-out real &rarr; nearest training image "
            f"({html.escape(str(nn.get('held_out')))}): {_fmt(nn.get('real_to_train'))}; "
            f"<b>ratio {_fmt(nn.get('ratio'))}</b> (well below 1: G may be copying; about 1: "
            "as close as new real images are; above 1: farther than real images).</p>")
    return text + _img("nearest.png", "samples beside their nearest training images",
                       pixel=True, width=560)


def write_page(run: str | os.PathLike) -> Path:
    """Write RUN/index.html from the files now in the run folder (atomically)."""
    run = Path(run)
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() \
        else {}
    if cfg.get("kind") == "lab":
        from .lab import lab_sections

        title, meta, sections = lab_sections(run, cfg)
        return _write(run, title, meta, sections)
    c = cfg.get("config", {})
    records = read_jsonl(run / "metrics.jsonl")
    last = records[-1] if records else {}
    loss = cfg.get("loss", {}).get("name", c.get("loss", ""))
    title = f"{c.get('arch', '?')} on {c.get('dataset', '?')} ({loss})"
    meta = (f"seed {cfg.get('seed', '?')} &middot; step {last.get('step', 0)} of "
            f"{cfg.get('total_steps', '?')} &middot; {cfg.get('num_images', '?')} images "
            f"{cfg.get('image_shape', '')} &middot; batch "
            f"{cfg.get('recipe', {}).get('batch_size', '?')} &middot; "
            f"{last.get('seconds', 0) / 60:.1f} min of training")
    spectra = _picture(run, "spectra.png", "mean power spectra per epoch",
                       "no epoch has finished yet")
    if (run / "spectrum.png").is_file():
        spectra += ("<p>From <code>inspect</code>, the final generator on more samples:</p>"
                    + _img("spectrum.png", "mean power spectrum of samples and real images"))
    sections = [
        ("samples", "Fixed-noise samples", _samples_section(run)),
        ("curves", "Losses and D's outputs",
         _picture(run, "curves.png", "training curves", "no curves yet")),
        ("quality", "Quality", _quality_section(run)),
        ("internals", "Every layer over training",
         "<p>One row per layer (G above the line, D below), training step along x. Statistics "
         "of G's pass that its update trains on and of D's pass on the real batch.</p>"
         + _picture(run, "internals.png", "layer statistics heat maps",
                    "train with --log-internals to record every layer's statistics")),
        ("d-logits", "What D sees",
         "<p>D's logits on the same real images and the same noise's G(z) after every epoch "
         "(eval mode). Two separate humps: D tells them apart; one hump on top of the other: "
         "it cannot.</p>"
         + _picture(run, "d_logits.png", "histograms of D's logits", "no epoch yet")),
        ("spectra", "Power spectra",
         "<p>Mean log power spectrum, lowest frequency in the centre, highest at the edges "
         "and corners (where the checkerboard of strided transposed convolutions shows); "
         "below, samples minus real.</p>" + spectra),
        ("nearest", "Is G copying?", _nearest_section(run)),
        ("config", "Config",
         f"<details><summary>config.json</summary><pre>"
         f"{html.escape(json.dumps(cfg, indent=2))}</pre></details>"),
    ]
    return _write(run, title, meta, sections)


def _write(run: Path, title: str, meta: str, sections: list[tuple[str, str, str]]) -> Path:
    """RUN/index.html from a title, a line of facts and (anchor, heading, html) sections."""
    nav = " ".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t, _ in sections)
    body = "\n".join(f'<h2 id="{k}">{html.escape(t)}</h2>\n{s}' for k, t, s in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1><p class=\"meta\">{meta}</p><nav>{nav}</nav>\n"
            f"{body}\n</body></html>\n")
    path = run / "index.html"
    with atomic_open(path, "w") as f:
        f.write(page)
    return path
