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

from .formats import FORMATS, export_generator
from .graph import ExportError, Step, inference_steps, steps

__all__ = ["FORMATS", "ExportError", "Step", "export_generator", "inference_steps", "steps"]
