"""benchmarks/gpu_check.sh where there is no GPU: every part says why it cannot run, the script
goes on to its end, and GPU_CHECK_PARTS picks the parts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minigan import backend

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_without_a_gpu_reports_and_reaches_its_end(tmp_path):
    if backend.cuda_available():
        pytest.skip("a GPU works here: the script would run its checks for minutes")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_PARTS": "2 4",
           "MINIGAN_DATA": str(tmp_path / "no-data")}
    res = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(tmp_path / "out")], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "== device" in out and "cuda_available False" in out
    assert "== 2. elementwise kernels" in out and "kernels_cuda: needs a GPU" in out
    assert "== 4. doodles on the GPU" in out and "skipped: no $MINIGAN_DATA" in out
    assert "== 1. " not in out and "== 3. " not in out and "== 5. " not in out  # not picked
    assert out.rstrip().splitlines()[-1].startswith("== done")
    assert (tmp_path / "out" / "kernels_cuda.txt").read_text().startswith("kernels_cuda: needs")


def test_launch_benchmark_without_a_gpu_says_why():
    if backend.cuda_available():
        pytest.skip("a GPU works here")
    res = subprocess.run([sys.executable, "benchmarks/launch_cuda.py"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "needs a GPU" in res.stderr, res.stderr
