"""numba kernels for minigan's hot ops, one op family a file, CPU and CUDA twins side by side.

Installed as `minigan.kernels`. Each public function takes raw arrays and picks the twin for
the device the arrays live on (`on_device`), so functional code never branches on the backend.
"""

import os

# numba's OpenMP threads and OpenBLAS's threads take turns on the same few cores; threads that
# spin while waiting for their next parallel region steal cores from the other pool (measured on
# 2 cores: a batch-64 DCGAN step 0.73 s spinning, 0.53 s passive). Sleep instead, unless the
# user chose otherwise. Must be set before numba's OpenMP runtime starts (the first kernel).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._dispatch import on_device  # noqa: E402
from ._memory import keep_freed_memory  # noqa: E402
from .blas import spin_less  # noqa: E402

keep_freed_memory()
# OpenBLAS's idle threads likewise: they would spin for about 0.1 s after every threaded GEMM,
# through the kernels between (kernels/blas.py)
spin_less()

__all__ = ["on_device"]
