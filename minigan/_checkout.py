"""How a source checkout finds its kernels (see register_kernels)."""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def register_kernels() -> None:
    """Installed, the kernels are the subpackage minigan.kernels; in a source checkout they sit
    beside this folder, in kernels/ (a PyPI package called `kernels` exists, so they are never
    installed under that name). When this minigan/ is the checkout's (run from the repository
    folder, or with no install at all), register ../kernels as minigan.kernels."""
    if os.path.isdir(os.path.join(_HERE, "kernels")) or "minigan.kernels" in sys.modules:
        return
    folder = os.path.join(os.path.dirname(_HERE), "kernels")
    init = os.path.join(folder, "__init__.py")
    if not os.path.isfile(init):
        return  # an installed minigan missing its kernels: importing them says so
    spec = importlib.util.spec_from_file_location("minigan.kernels", init,
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["minigan.kernels"] = module
    spec.loader.exec_module(module)
    sys.modules["minigan"].kernels = module  # as the import system would


register_kernels()
