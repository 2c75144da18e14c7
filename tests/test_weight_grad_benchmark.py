"""benchmarks/weight_grad.py: both ways of running the weight gradient on OpenBLAS's threads."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import weight_grad as bench  # noqa: E402

from minigan.kernels import shifted as S  # noqa: E402


@pytest.mark.skipif(S.BLAS.sgemm is None or S._GET_THREADS is None,
                    reason="needs NumPy's OpenBLAS with its CBLAS and thread functions")
def test_both_ways_give_the_same_bits_and_leave_the_kernels_as_they_were():
    pool, width, threads, controller = S.POOL, S._blas_width, S._GET_THREADS(), S.THREADS
    row = bench.measure(16, 24, 8, 3, 2, 2)
    assert row["same_bits"] is True
    assert row["dealt_ms"] > 0 and row["one call_ms"] > 0
    assert row["ratio"] == row["dealt_ms"] / row["one call_ms"]
    gflop = 2.0 * 16 * 24 * 16 * 4 * 4 * 3 / 1e9
    assert row["dealt_gflops"] == pytest.approx(gflop / row["dealt_ms"] * 1e3, rel=1e-2)
    assert S.POOL is pool and S._blas_width is width and S._GET_THREADS() == threads
    assert S.THREADS is controller
    assert np.isfinite(row["one call_gflops"])


def test_an_odd_input_size_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("MINIGAN_THREADS", "detect")   # as it was afterwards, whatever main sets
    with pytest.raises(SystemExit):
        bench.main(["--layer", "16", "16", "7"])
    assert "must be even" in capsys.readouterr().err
