"""numba kernels for minigan's hot ops, one op family a file, CPU and CUDA twins side by side.

Installed as `minigan.kernels`. Each public function takes raw arrays and picks the twin for
the device the arrays live on (`on_device`), so functional code never branches on the backend.
"""

from ._dispatch import on_device

__all__ = ["on_device"]
