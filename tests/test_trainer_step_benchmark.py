"""benchmarks/trainer_step.py runs its variants side by side and reports each against the first."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_trainer_step_benchmark_times_each_variant_against_the_first():
    base = {"dataset": "ellipses", "limit": 64, "image_size": 8, "arch": "dcgan", "width": 4,
            "z_dim": 8, "batch_size": 8}
    res = subprocess.run([sys.executable, "benchmarks/trainer_step.py", "{}",
                          '{"batch_size": 4}', "--base", json.dumps(base), "--steps", "2",
                          "--rounds", "3", "--warmup", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(s) for s in res.stdout.splitlines()]
    assert [r["batch_size"] for r in rows] == [8, 4]
    assert [len(r["rounds_s"]) for r in rows] == [3, 3]
    assert rows[0]["ratio_to_first"] == 1.0
    for r in rows:
        assert r["median_s"] > 0 and sorted(r["rounds_s"])[1] == r["median_s"]
    assert abs(rows[1]["ratio_to_first"] - rows[1]["median_s"] / rows[0]["median_s"]) < 0.01
