"""Which BLAS minigan calls, and the advice it gives when OPENBLAS_CORETYPE forces kernels slower
than the CPU can run."""

import numpy as np
import pytest

from minigan.kernels import blas as B
from minigan.kernels import shifted as S

FLAGS_512 = frozenset({"fpu", "avx2", "fma", *B.AVX512})


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nflags\t: sse\n")
    assert B.cpu_flags(str(f)) == {"fpu", "avx2", "avx512f"}
    assert B.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("env,core,flags,says", [
    ({"OPENBLAS_CORETYPE": "Haswell"}, "Haswell", FLAGS_512, True),
    ({"OPENBLAS_CORETYPE": "haswell"}, "Haswell", FLAGS_512 - {"avx512bw"}, False),  # no AVX-512
    ({"OPENBLAS_CORETYPE": "SkylakeX"}, "SkylakeX", FLAGS_512, False),  # already the fast ones
    ({}, "Haswell", FLAGS_512, False),              # OpenBLAS's own choice: not ours to doubt
    ({"OPENBLAS_CORETYPE": "Haswell"}, None, FLAGS_512, False),         # nothing to go on
])
def test_advice_only_when_the_variable_forces_slower_kernels(env, core, flags, says):
    line = B.advice(core, flags, env)
    assert (line is not None) == says
    if says:
        assert "OPENBLAS_CORETYPE=" in line and "AVX-512" in line and "Unset it" in line


@pytest.mark.skipif(S.BLAS.sgemm is None, reason="no CBLAS sgemm found in NumPy's BLAS")
def test_the_library_found_multiplies_like_numpy():
    """The sgemm minigan calls is a working GEMM: C = A @ B + C through its raw pointers."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7), np.float32), rng.standard_normal((7, 3), np.float32)
    c = np.ones((5, 3), np.float32)
    S._gemm(False, False, 5, 3, 7, a.ctypes.data, 7, b.ctypes.data, 3, 1.0, c.ctypes.data, 3)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b + 1, rtol=1e-5, atol=1e-5)
    assert S.BLAS.core is None or isinstance(S.BLAS.core, str)
