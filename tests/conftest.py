"""The suite's default device is the CPU; GPU checks name their device.

`MINIGAN_DEVICE=cuda python -m pytest` asks for the GPU checks: it is turned into
MINIGAN_TEST_CUDA=1, which makes every OpTest run on the GPU as well as the CPU and a missing GPU
an error rather than a skip (minigan.testing.devices). The default device of everything else
stays the CPU, so that the many tests written against NumPy arrays (a layer's weights set from
NumPy, outputs compared with NumPy) test what they were written to test. On a machine with a
working GPU the OpTests and tests/cuda use it either way.
"""

import os


def pytest_configure(config):
    if os.environ.get("MINIGAN_DEVICE", "").lower().startswith("cuda"):
        os.environ["MINIGAN_TEST_CUDA"] = "1"
    os.environ["MINIGAN_DEVICE"] = "cpu"
