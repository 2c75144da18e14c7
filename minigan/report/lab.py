"""The sections of a 2-D lab run's index.html: the frames (slider and GIF), the mode protocol
over training, the losses, the config."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..gan.callbacks import read_jsonl
from .page import _img, _picture, _slider, _table

FRAME_TEXT = (
    "<p>Left: D's output over the plane (red: D says real, blue: fake), the real points in "
    "black and G's fixed-noise samples in white, each with an arrow along the negative "
    "gradient of G's loss: where G's next update pushes it. Right: G's image of a regular grid "
    "of noise points; folds and stretches show how G maps the noise onto the modes.</p>")


def _frames_section(run: Path) -> str:
    paths = sorted((run / "frames").glob("step_*.png")) if (run / "frames").is_dir() else []
    if not paths:
        return '<p class="note">no frame yet (frames are drawn every --frame-every steps)</p>'
    frames = [{"src": f"frames/{p.name}", "label": f"step {int(p.stem.split('_')[1])}"}
              for p in paths]
    gif = _img("lab.gif", "every frame in turn", width=420) if (run / "lab.gif").is_file() \
        else '<p class="note">lab.gif is written when training stops</p>'
    return FRAME_TEXT + _slider(frames, "D's heat map and G's mapping", 640, False,
                                f"<p>lab.gif</p>{gif}")


def _protocol_section(run: Path, cfg: dict) -> str:
    records = [r for r in read_jsonl(run / "metrics.jsonl") if "modes" in r]
    if not records:
        return ('<p class="note">no protocol evaluation yet (a mixture with modes, every '
                '--eval-every steps)</p>')
    p = cfg.get("protocol", {})
    text = (f"<p>{p.get('samples', 2500)} samples from fixed noise; a sample is high quality "
            f"within {p.get('threshold_sigma', 3)} sigma of its nearest mode; a mode is covered "
            "by at least one high-quality sample; reverse KL of the modes' histogram against "
            "the uniform one (0: every mode equally often).</p>")
    rows = [[r["step"], f"{r['modes']} / {cfg.get('mixture', {}).get('modes')}",
             r.get("high_quality"), r.get("reverse_kl")] for r in records]
    return (text + _picture(run, "protocol.png", "the protocol over training",
                            "protocol.png is drawn when training stops")
            + _table(["step", "modes covered", "high quality (%)", "reverse KL"], rows))


def lab_sections(run: Path, cfg: dict) -> tuple[str, str, list[tuple[str, str, str]]]:
    """(title, meta line, sections) of a lab run's page."""
    c = cfg.get("config", {})
    records = read_jsonl(run / "metrics.jsonl")
    last = records[-1] if records else {}
    pack = f", pack {c.get('pack')}" if c.get("pack", 1) > 1 else ""
    title = f"lab: {cfg.get('mixture', {}).get('name', '?')} ({c.get('loss', '?')}{pack})"
    meta = (f"seed {cfg.get('seed', '?')} &middot; step {last.get('step', 0)} of "
            f"{cfg.get('total_steps', '?')} &middot; {cfg.get('points_per_batch', '?')} points a "
            f"batch &middot; {last.get('seconds', 0) / 60:.1f} min of training")
    sections = [
        ("frames", "What D and G are doing", _frames_section(run)),
        ("protocol", "Mode protocol", _protocol_section(run, cfg)),
        ("curves", "Losses and D's outputs",
         _picture(run, "curves.png", "training curves", "no curves yet")),
        ("config", "Config",
         f"<details><summary>config.json</summary><pre>"
         f"{html.escape(json.dumps(cfg, indent=2))}</pre></details>"),
    ]
    return title, meta, sections
