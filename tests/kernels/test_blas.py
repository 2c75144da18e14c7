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


@pytest.mark.skipif(S.BLAS.sgemm is None, reason="no CBLAS sgemm found in NumPy's BLAS")
def test_a_chunks_gemms_run_in_one_call_as_one_by_one():
    """`_Calls` (a chunk's GEMMs run by the numba kernel, without the GIL) gives bit for bit
    what the same calls through `_gemm` give, in order: transposes, beta 0 (overwrite) and 1
    (accumulate, so the order shows in the rounding), strided operands (leading dimensions
    wider than the rows read), and an independent float64 product says both are right."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 9), np.float32)            # read as 6 x 7 (lda 9) or its T
    b = rng.standard_normal((7, 8), np.float32)
    bt = rng.standard_normal((5, 7), np.float32)           # read transposed: 7 x 5
    calls = [  # (trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, ldc): c is (6, 8), ldc 8
        (False, False, 6, 5, 7, a, 9, b, 8, 0.0),          # c[:, :5]  = A[:, :7] B[:, :5]
        (False, True, 6, 5, 7, a, 9, bt, 7, 1.0),          # c[:, :5] += A[:, :7] Bt^T
        (True, False, 6, 8, 6, a, 9, a[:, :8].copy(), 8, 1.0),  # c += A[:, :6]^T A[:, :8]
    ]
    results = []
    for gather in (True, False):
        c = np.full((6, 8), 7.0, np.float32)               # beta 0 must overwrite the 7s
        batch = S._Calls()
        for ta, tb, m, n, k, x, lda, y, ldb, beta in calls:
            args = (ta, tb, m, n, k, x.ctypes.data, lda, y.ctypes.data, ldb, beta,
                    c.ctypes.data, 8)
            batch.add(*args) if gather else S._gemm(*args)
        if gather:
            assert len(batch.rows) == 3
            batch.run()
        results.append(c)
    np.testing.assert_array_equal(results[0], results[1])
    a64, b64, bt64 = (v.astype(np.float64) for v in (a, b, bt))
    want = np.full((6, 8), 7.0)
    want[:, :5] = a64[:, :7] @ b64[:, :5] + a64[:, :7] @ bt64.T
    want += a64[:, :6].T @ a64[:, :8]
    np.testing.assert_allclose(results[0], want, rtol=1e-5, atol=1e-4)


_IDLE = """
import json, os, sys, time
import numpy as np
import minigan.kernels  # noqa: F401  (what minigan does to OpenBLAS's threads, as it imports)
from minigan.kernels import shifted as S
S.BLAS.set_threads(2)
a = np.ones((600, 600), np.float32)

def idle():  # CPU time of this process while its own thread sleeps, after a threaded GEMM
    a @ a
    t = time.process_time()
    time.sleep(0.25)
    return time.process_time() - t

print(json.dumps({"idle_cpu_s": min(idle() for _ in range(3)),
                  "timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}))
"""


def _idle_cpu(env_timeout):
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT")}
    if env_timeout is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = env_timeout
    env.pop("MINIGAN_THREADS", None)
    out = subprocess.run([sys.executable, "-c", _IDLE], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _can_spin():
    import os

    return (S.BLAS.set_threads is not None and len(os.sched_getaffinity(0)) >= 2
            and B.numpy_openblas())


@pytest.mark.skipif(not _can_spin(), reason="needs NumPy's OpenBLAS and two cores")
def test_openblas_threads_sleep_when_idle_unless_the_user_chose_to_spin():
    """OpenBLAS's worker thread spins for 2**28 cycles (tens of milliseconds at any clock) after
    a threaded GEMM; with minigan imported it sleeps after 2**SPIN (microseconds), so a process
    idle for 0.25 s spends next to no CPU time. A user's OPENBLAS_THREAD_TIMEOUT stands: at 28,
    the idle process burns the spin's worth (over 30 ms)."""
    ours = _idle_cpu(None)
    assert ours["timeout"] == str(B.SPIN)
    assert ours["idle_cpu_s"] < 0.015, ours
    theirs = _idle_cpu("28")
    assert theirs["timeout"] == "28"
    assert theirs["idle_cpu_s"] > 0.03, theirs


def test_spin_less_leaves_a_users_setting_alone():
    for name in ("OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT"):
        env = {name: "20"}
        assert B.spin_less(8, env) is None
        assert env == {name: "20"}
