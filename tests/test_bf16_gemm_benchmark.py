"""benchmarks/bf16_gemm.py: its bfloat16 rounding, and its swapped convolution where MKL is."""

import glob
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bf16_gemm  # noqa: E402

from minigan.kernels import shifted as S  # noqa: E402


def _nearest_even_bf16(x):
    """bfloat16 keeps 8 significant bits: round x (float64 arithmetic) to a multiple of its
    ulp 2^(e - 7), halves to the even multiple."""
    e = np.floor(np.log2(np.abs(x)))
    ulp = 2.0 ** (e - 7)
    return np.round(x / ulp) * ulp                      # np.round: halves to even


def test_bf16_rounds_to_the_nearest_eight_bit_significand_ties_to_even():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(10000) * 10.0 ** rng.integers(-6, 6, 10000)).astype(np.float32)
    ties = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8)], np.float32)  # exact halves
    x = np.concatenate([x, ties])
    got = (bf16_gemm.bf16(x).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    np.testing.assert_array_equal(got, _nearest_even_bf16(x.astype(np.float64)))
    assert got[-3] == 1.0 and got[-2] == 1 + 4 * 2 ** -8 and got[-1] == -1.0


@pytest.mark.skipif(not glob.glob(f"{sys.prefix}/lib/libmkl_rt.so*"), reason="pip install mkl")
def test_the_swapped_convolution_is_the_product_of_the_rounded_operands():
    _, gemm = bf16_gemm.load_mkl()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 7, 7, 4)).astype(np.float32)        # (C, H, W, N)
    w = rng.standard_normal((16, 16, 5, 5)).astype(np.float32)
    with bf16_gemm.Swap(gemm):
        got = S.conv2d(x, w, 1, 1, 2, 2, 7, 7)

    def rounded(a):
        return (bf16_gemm.bf16(a).astype(np.uint32) << 16).view(np.float32).reshape(a.shape)

    want = S.conv2d(rounded(x), rounded(w), 1, 1, 2, 2, 7, 7)       # float32 sums of them
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert not np.allclose(got, S.conv2d(x, w, 1, 1, 2, 2, 7, 7), rtol=1e-6, atol=1e-6)
