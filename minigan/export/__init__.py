"""Exits for a trained generator: ONNX, safetensors (PyTorch's state-dict keys) and a static web
page that draws new samples in the browser.

    python -m minigan export runs/doodles --format onnx -o G.onnx
    python -m minigan export runs/doodles --format safetensors -o G.safetensors
    python -m minigan export runs/doodles --format web -o site/

Every exit holds the generator in inference form, with its BatchNorm statistics calibrated as
`minigan sample` calibrates them (`--seed` is the seed of `minigan sample --seed`), so every
exit draws what the CLI draws. `onnx` is an optional extra (`pip install 'minigan[export]'`);
the other two need nothing beyond minigan.
"""

from .graph import ExportError, Step, calibrated_generator, steps
from .run import FORMATS, export_generator

__all__ = ["FORMATS", "ExportError", "Step", "calibrated_generator", "export_generator", "steps"]
