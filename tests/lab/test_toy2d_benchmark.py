"""benchmarks/toy2d.py protocol: its filters and top-k settings reach the lab's runs."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import toy2d as bench  # noqa: E402


def test_protocol_runs_the_chosen_runs_with_top_k(tmp_path, capsys):
    keep = tmp_path / "runs"
    assert bench.main(["protocol", "--seeds", "0", "1", "--steps", "4", "--batch", "8",
                       "--only", "ring", "--loss", "bce", "--pack", "1", "--g-top-k", "0.5",
                       "--g-top-k-decay", "0.5", "--g-top-k-every", "2", "--frame-every", "0",
                       "--keep", str(keep)]) == 0
    runs = sorted(p.name for p in keep.iterdir())
    assert runs == ["ring-bce-1-0", "ring-bce-1-1"]          # pack 2 and wgan-gp left out
    config = json.loads((keep / runs[0] / "config.json").read_text())["config"]
    assert (config["g_top_k"], config["g_top_k_decay"], config["g_top_k_every"]) == \
        (0.5, 0.5, 2)
    lines = [json.loads(s) for s in (keep / runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert [r["g_top_k"] for r in lines if "loss_d" in r][-1] == 4     # half of 8 packs
    out = capsys.readouterr().out
    assert "top-k 0.5 (decay 0.5 every 2 steps)" in out and out.count("| ring | bce | 1 |") == 1
