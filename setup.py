"""minigan: a small deep-learning framework for training and studying GANs."""
from setuptools import find_packages, setup

setup(
    name="minigan",
    version="0.1.0",
    description="A from-scratch autograd engine, DCGAN layers and GAN trainer on NumPy/CuPy",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The numba kernels live in the top-level kernels/ folder but install as minigan.kernels:
    # a PyPI package called `kernels` exists, and ours must not clash with it.
    # Every folder of minigan/ with an __init__.py, found rather than listed, so that a new
    # subpackage cannot be left out of the wheel.
    packages=[*find_packages(include=["minigan", "minigan.*"]), "minigan.kernels"],
    package_dir={"minigan.kernels": "kernels"},
    # the page that `minigan export --format web` copies: not Python, so named here
    package_data={"minigan.export": ["web/*.html", "web/*.js"]},
    install_requires=["numpy>=1.24", "numba>=0.59", "pillow>=9", "matplotlib>=3.6", "tqdm>=4.60"],
    extras_require={
        # numpy<2.5: numba-cuda (0.30.4 and before) names np.row_stack, which NumPy 2.5
        # removed, and then compiles no kernel at all (seen on an H200 with NumPy 2.5.2)
        "cuda12": ["cupy-cuda12x>=13", "numba-cuda[cu12]>=0.20", "numpy<2.5"],
        "cuda13": ["cupy-cuda13x>=13.6", "numba-cuda[cu13]>=0.20", "numpy<2.5"],
        "test": ["pytest>=7", "hypothesis>=6", "numba-cuda[cu13]>=0.20", "numpy<2.5",
                 "playwright>=1.40",
                 "onnx>=1.12", "onnxruntime>=1.13", "safetensors>=0.4",
                 "dask[distributed,diagnostics]>=2024.1"],
        "export": ["onnx>=1.12"],
        "bench": ["torch"],
        # sweeps: many runs on Dask (a local cluster, or any scheduler), with its dashboard
        "sweep": ["dask[distributed,diagnostics]>=2024.1"],
    },
    entry_points={"console_scripts": ["minigan=minigan.cli:main"]},
)
