"""The dropout kernel: mask statistics, scaling, determinism per key, the NumPy hash reference."""

import numpy as np
import pytest

import minigan as mg
from minigan import backend, nn
from minigan import functional as F
from minigan.kernels import dropout as K
from minigan.testing import assert_close, devices, splitmix_uniform


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_statistics_and_scaling(device, p, dtype):
    n = 200_000  # above the parallel threshold
    x = np.random.default_rng(0).uniform(1, 2, n).astype(dtype)
    y, mask = (backend.to_numpy(a) for a in K.dropout(backend.to_device(x, device), p, 12345))
    assert y.dtype == mask.dtype == dtype
    kept = mask != 0
    # the kept fraction is Binomial(n, 1-p) / n: 5 standard deviations is a 1-in-3.5e6 miss
    bound = 5 * np.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < bound, f"keep fraction {kept.mean()} for p={p}"
    assert_close(mask[kept], np.full(kept.sum(), 1 / (1 - p)), 1e-7, 0, "mask scale 1/(1-p)")
    assert_close(y, x * mask, 0, 0, "y = x * mask")
    assert (y[~kept] == 0).all() and (y[kept] != 0).all()
    # neighbours are independent: P(both kept) = (1-p)^2 within the same kind of bound
    both = (kept[1:] & kept[:-1]).mean()
    assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)


def test_mask_is_the_documented_hash():
    # the kernels compare the hash's top 24 bits with ceil(p * 2^24) in integers; that must
    # keep exactly the elements whose float uniform is >= p, for any p
    for key in (0, 1, 2**62 + 12345, 2**63 - 1):
        for p in (0.3, 0.5, 1e-7, 3 * 2.0**-24, 1 - 2.0**-24, 0.7 + 1e-12):
            _, mask = K.dropout(np.ones(1000), p, key)
            want = (splitmix_uniform(key, 1000) >= p) / (1 - p)
            assert_close(mask, want, 0, 0, f"mask for key {key}, p {p}")


def test_same_key_same_mask_other_key_other_mask():
    x = np.random.default_rng(1).standard_normal((40, 50))
    a, b, c = (K.dropout(x, 0.5, k)[1] for k in (7, 7, 8))
    assert (a == b).all()
    assert (a != c).mean() > 0.4  # independent masks differ in about half the places
    assert K.dropout(x, 0.5, 7)[1].shape == x.shape


def test_non_contiguous_input():
    x = np.random.default_rng(2).standard_normal((20, 30)).T
    y, mask = K.dropout(x, 0.25, 3)
    assert_close(y, x * mask, 0, 0, "strided input")
    assert_close(mask.reshape(-1) != 0, splitmix_uniform(3, x.size) >= 0.25, 0, 0,
                 "mask follows C order of the input's shape")


def test_eval_mode_is_the_identity():
    x = mg.tensor(np.random.default_rng(3).standard_normal((4, 5)))
    assert F.dropout(x, 0.7, training=False) is x
    layer = nn.Dropout(0.7).eval()
    assert layer(x) is x
