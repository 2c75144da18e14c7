"""The BLAS behind minigan's own GEMM calls: NumPy's OpenBLAS, and which kernels it runs.

NumPy's wheels bundle OpenBLAS built for many CPUs at once (DYNAMIC_ARCH): when the library
loads it picks one set of kernels for the CPU it finds, unless the environment variable
OPENBLAS_CORETYPE names one. minigan calls that same library (cblas_sgemm, through ctypes) and
follows its choice. `advice()` says when the choice is slower than the CPU allows: on a CPU with
AVX-512, OPENBLAS_CORETYPE=Haswell (AVX2 kernels) halves sgemm's speed (106 against 200 GFLOP/s
on one core of a Zen 5 EPYC: benchmarks/RESULTS.md) and minigan's convolutions with it, while
PyTorch (oneDNN) does not read that variable.

After each threaded call OpenBLAS's idle threads spin, waiting for the next one, for 2**28 CPU
cycles (about 0.1 s) before they sleep: through the numba kernels and the Python between two
GEMMs, which then share the cores with a thread doing nothing. `spin_less` shortens that wait
(OPENBLAS_THREAD_TIMEOUT, which the library otherwise reads only as it loads).
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

# what OpenBLAS's SkylakeX kernels need, as /proc/cpuinfo names the flags
AVX512 = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
# OpenBLAS cores whose sgemm already uses AVX-512 (lower case, as get_corename spells them)
AVX512_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def numpy_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries bundled with NumPy's wheels (none for other builds)."""
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    return sorted(glob.glob(os.path.join(libdir, "lib*openblas*.so*")))


def _libraries():
    """NumPy's OpenBLAS libraries, loaded (already loaded by NumPy: the same library and
    threads), skipping any that will not load."""
    for path in numpy_openblas():
        try:
            yield ctypes.CDLL(path)
        except OSError:
            continue


def _symbol(lib, *names):
    """The first of these functions the library exports, or None."""
    return next((fn for name in names if (fn := getattr(lib, name, None)) is not None), None)


def corename(lib) -> str | None:
    """The kernels a loaded OpenBLAS chose (e.g. 'Haswell'), or None if it does not say."""
    fn = _symbol(lib, "scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                    "openblas_get_corename64_", "openblas_get_corename")
    if fn is None:
        return None
    fn.restype, fn.argtypes = ctypes.c_char_p, []
    value = fn()
    return value.decode() if value else None


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The first processor's flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _sgemm(lib):
    for name, int_t in (("scipy_cblas_sgemm64_", ctypes.c_int64),
                        ("cblas_sgemm64_", ctypes.c_int64),
                        ("scipy_cblas_sgemm", ctypes.c_int32), ("cblas_sgemm", ctypes.c_int32)):
        fn = getattr(lib, name, None)
        if fn is not None:
            i, p, f = int_t, ctypes.c_void_p, ctypes.c_float
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, f, p, i, p, i, f,
                           p, i]
            fn.restype = None
            return fn
    return None


def _thread_functions(lib):
    """OpenBLAS's get/set_num_threads under the names its builds give them, or (None, None)."""
    for suffix in ("64_", "_64_", ""):
        for prefix in ("scipy_openblas", "openblas"):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None, None


# OpenBLAS's threads sleep after 2**SPIN cycles without work (its default: 2**28). `python
# benchmarks/step.py --blas-spin 28 12 4` times the training steps of four models at two batch
# sizes with each setting in turns, in one process: on a 2-core Xeon 2**12 took 0.73-0.81 of
# the default's time, 2**4 0.74-0.83 (benchmarks/RESULTS.md).
SPIN = 12
_TIMEOUT_VARIABLES = ("OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT")


def set_spin(spin: int) -> bool:
    """Have the idle threads of NumPy's OpenBLAS sleep after 2**spin cycles without work (4 to
    30): sets OPENBLAS_THREAD_TIMEOUT, has the library read its environment again (it reads it
    once, as it loads) and stops its threads, which the next threaded call starts afresh with
    the new wait. Call it while no BLAS call is running. False where the library lacks those
    functions."""
    for lib in _libraries():
        read_env = _symbol(lib, "openblas_read_env")
        stop = _symbol(lib, "blas_thread_shutdown_")
        if read_env is None or stop is None:
            continue
        read_env.restype, read_env.argtypes = None, []
        stop.restype, stop.argtypes = ctypes.c_int, []
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(int(spin))
        read_env()
        stop()
        return True
    return False


def spin_less(spin: int = SPIN, environ=os.environ) -> int | None:
    """`set_spin(spin)` unless OPENBLAS_THREAD_TIMEOUT or GOTO_THREAD_TIMEOUT is set (the
    user's choice stands, as the library read it). minigan calls it as its kernels are
    imported. Returns the exponent now in force, or None where nothing changed."""
    if any(environ.get(name) for name in _TIMEOUT_VARIABLES):
        return None
    return int(spin) if set_spin(spin) else None


class Blas:
    """cblas_sgemm and OpenBLAS's thread functions of the library minigan calls; `core`: the
    kernels it runs (e.g. 'SkylakeX')."""

    def __init__(self, sgemm=None, get_threads=None, set_threads=None, core=None):
        self.sgemm, self.get_threads, self.set_threads = sgemm, get_threads, set_threads
        self.core = core


def load() -> Blas:
    """cblas_sgemm and the thread functions of NumPy's OpenBLAS (all None where not found)."""
    if os.environ.get("MINIGAN_SHIFTED_GEMM") == "0":
        return Blas()
    for lib in _libraries():
        sgemm = _sgemm(lib)
        if sgemm is not None:
            return Blas(sgemm, *_thread_functions(lib), corename(lib))
    return Blas()


def advice(core: str | None, flags: frozenset | None = None, environ=os.environ) -> str | None:
    """A line for the user when OpenBLAS runs kernels without AVX-512 on a CPU that has it
    because OPENBLAS_CORETYPE says so; None otherwise."""
    forced = environ.get("OPENBLAS_CORETYPE")
    if not forced or core is None or core.lower() in AVX512_CORES:
        return None
    if not AVX512 <= (cpu_flags() if flags is None else flags):
        return None
    return (f"OPENBLAS_CORETYPE={forced} makes OpenBLAS run {core} kernels (no AVX-512) on "
            "this AVX-512 CPU: minigan's convolutions take about 1.4x longer. Unset it (or "
            "set OPENBLAS_CORETYPE=SkylakeX) unless you need it")
