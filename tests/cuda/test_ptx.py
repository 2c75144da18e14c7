"""Every CUDA kernel compiles to PTX (sm_90) for each signature it is launched with.

The simulator runs kernels as Python, so it cannot catch what only the real compiler rejects;
`numba.cuda.compile_ptx` needs numba-cuda's toolchain wheels but no GPU.
"""

from __future__ import annotations

import ast
import ctypes
import re
import types
from pathlib import Path

import numpy as np
import pytest

from minigan.kernels import _cuda

if _cuda.cuda is None:
    pytest.skip(f"no PTX without numba-cuda: {_cuda.missing_reason()}", allow_module_level=True)
if _cuda.SIMULATOR:
    pytest.skip("NUMBA_ENABLE_CUDASIM=1: the simulator cannot compile to PTX",
                allow_module_level=True)

KERNELS = _cuda.all_kernels()
KERNEL_DIR = Path(_cuda.__file__).parent
F64_MATH = re.compile(r"^\s*(add|sub|mul|fma|div|sqrt|rcp|max|min|neg|abs)(\.\w+)*\.f64\b",
                      re.MULTILINE)


@pytest.fixture(scope="module")
def compile_ptx():
    """compile_ptx, with device functions compiled for sm_90 too.

    numba-cuda compiles a device function a kernel calls for the *current* device's compute
    capability, which needs a GPU; here it is told the target instead.
    """
    from numba.cuda import dispatcher

    mp = pytest.MonkeyPatch()
    mp.setattr(dispatcher, "get_current_device",
               lambda: types.SimpleNamespace(compute_capability=(9, 0)), raising=False)
    yield lambda fn, sig: _cuda.cuda.compile_ptx(fn, sig, cc=(9, 0))[0]
    mp.undo()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("info", KERNELS, ids=lambda k: k.name)
def test_kernel_compiles_to_ptx(compile_ptx, info, dtype):
    sig = _cuda.signatures(info)[0 if dtype == "float32" else 1]
    ptx = compile_ptx(info.py_func, sig)
    assert ".entry" in ptx and ".target sm_90" in ptx, f"{info.name}: no kernel entry in PTX"
    if dtype == "float32":
        f64 = F64_MATH.findall(ptx)
        assert not f64, f"{info.name} float32 does float64 arithmetic ({len(f64)} instructions)"


def _decorated(path: Path) -> tuple[set[str], set[str]]:
    """Names in a kernels file decorated as CUDA kernels, and parallel CPU njit kernels."""
    cuda_kernels, cpu_kernels = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            text = ast.unparse(dec)
            if ("cuda.jit" in text and "device" not in text) or "_cuda.kernel" in text:
                cuda_kernels.add(node.name)
            if text.startswith("njit") and "parallel=True" in text:
                cpu_kernels.add(node.name)
    return cuda_kernels, cpu_kernels


# CPU-only paths, which the GPU does not take: the shifted-GEMM convolution calls OpenBLAS's
# CBLAS through raw pointers; on the GPU convolutions run as im2col + cuBLAS (kernels/conv.py).
CPU_ONLY = {"shifted"}


def test_registry_lists_every_kernel_and_every_cpu_kernel_has_a_cuda_twin():
    registered = {(k.module.rsplit(".", 1)[1], k.name) for k in KERNELS}
    defined, cpu = set(), set()
    for path in sorted(KERNEL_DIR.glob("*.py")):
        c, p = _decorated(path)
        defined |= {(path.stem, n) for n in c}
        if path.stem not in CPU_ONLY:
            cpu |= {(path.stem, n) for n in p}
    assert len(registered) == len(KERNELS), "a kernel is registered twice"
    assert defined == registered, f"defined but not registered: {defined - registered}; " \
                                  f"registered but not found: {registered - defined}"
    twins = {(m, n.removesuffix("_cpu") + "_cuda") for m, n in cpu}
    assert twins <= registered, f"CPU kernels without a CUDA twin: {twins - registered}"
    assert len(KERNELS) == len(cpu) == 14


PARAM = re.compile(r"\.param\s+\.(\w+)\s+\S+?_param_(\d+)")
# the PTX parameter each packed scalar fills
KIND = {ctypes.c_float: "f32", ctypes.c_double: "f64", ctypes.c_int64: "u64",
        ctypes.c_uint64: "u64", bool: "u8"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("info", KERNELS, ids=lambda k: k.name)
def test_direct_launch_packs_the_parameters_the_ptx_declares(compile_ptx, info, dtype):
    """`_cuda.launch`'s direct path hands cuda.core the parameter list numba's own launch
    builds: five 64-bit words and the shape and strides for an array, one value per scalar.
    The compiled kernel's PTX entry says what it takes; the two must agree in number and kind,
    or a direct launch would read its arguments off the wrong slots."""
    sig = _cuda.signatures(info)[0 if dtype == "float32" else 1]
    declared = [kind for kind, _ in sorted(PARAM.findall(compile_ptx(info.py_func, sig)),
                                           key=lambda m: int(m[1]))]
    packed = []
    for ty in sig:
        pack = _cuda._packer(ty)
        assert pack is not None, f"{info.name}: no direct packing for {ty}"
        out = []
        if isinstance(ty, _cuda.nbtypes.Array):  # a stand-in for a CuPy array of that rank
            shape = tuple(range(2, 2 + ty.ndim))
            pack(types.SimpleNamespace(size=int(np.prod(shape)), itemsize=4, shape=shape,
                                       strides=shape, data=types.SimpleNamespace(ptr=1 << 40)),
                 out)
            assert all(type(v) is int for v in out)
            packed += ["u64"] * len(out)
            continue
        pack(True if ty == _cuda.nbtypes.boolean else 1, out)
        (v,) = out
        packed.append(KIND[type(v)])
    assert declared == packed, f"{info.name}: PTX takes {declared}, direct launch packs {packed}"
