"""minigan.kernels keeps freed memory in the heap (so a step's large buffers are not faulted in
again every step) unless MINIGAN_KEEP_FREED_MEMORY=0; observed through the resident set size
after a 200 MB array is freed, in a fresh process each."""

import os
import subprocess
import sys

import pytest

PROBE = r"""
import os, numpy as np
import minigan.kernels, minigan.kernels._memory as m
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * page / 2**20
before = rss()
a = np.ones(50_000_000, np.float32)   # 200 MB, touched
del a
print(m._done, rss() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_freed_memory_is_kept_unless_turned_off(setting):
    env = dict(os.environ, MINIGAN_KEEP_FREED_MEMORY=setting)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    done, kept_mib = out[0] == "True", float(out[1])
    if setting == "1":
        assert done and kept_mib > 150, f"freed memory was given back ({kept_mib:.0f} MiB kept)"
    else:
        assert not done and kept_mib < 50, f"{kept_mib:.0f} MiB kept with the setting off"
