"""One entry for every exit: calibrate a generator, turn it into steps, write the format."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__, nn
from ..gan.sampling import default_calibration_batches
from .graph import ExportError, inference_steps

FORMATS = ("onnx", "safetensors", "web")
SUFFIX = {"onnx": ".onnx", "safetensors": ".safetensors"}


def export_generator(G: nn.Module, fmt: str, out: str | Path, *, z_dim: int,
                     batch_size: int = 64, seed: int = 0, info: dict | None = None) -> Path:
    """Write G in format `fmt` to `out` (a file for onnx and safetensors, a folder for web).

    G's BatchNorm statistics are first calibrated, in place, as `minigan sample --seed SEED`
    does with calibration batches of `batch_size` (the run's training batch size). `info` is the
    run's config.json content (plus trained_steps), recorded in the file's metadata.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if fmt in SUFFIX and out.suffix.lower() != SUFFIX[fmt]:
        raise ExportError(f"-o for --format {fmt} must end in {SUFFIX[fmt]}, got {out.name}")
    if fmt == "onnx":
        from .onnx import import_onnx

        import_onnx()                      # a missing or old onnx fails before any work
    steps = inference_steps(G, z_dim, batch_size, seed)
    meta = metadata(info or {}, z_dim, steps[-1].out_shape, batch_size, seed)
    if fmt == "onnx":
        from .onnx import to_onnx

        return to_onnx(steps, z_dim, out, meta)
    if fmt == "safetensors":
        from .safetensors import save_file

        return save_file(G.state_dict(), out, meta)
    from .page import write_site

    return write_site(steps, z_dim, out, meta)


def metadata(info: dict, z_dim: int, image_shape, batch_size: int, seed: int) -> dict[str, str]:
    """What a reader of an exported file needs to use it (string values, as the formats ask)."""
    config = info.get("config", {})
    meta = {"producer": f"minigan {__version__}", "z_dim": str(z_dim),
            "image_shape": json.dumps(list(image_shape)), "output_range": "[-1, 1] (tanh)",
            "noise": "standard normal, float32",
            "batchnorm": f"statistics calibrated as `minigan sample --seed {seed}`: the mean "
                         f"of {default_calibration_batches(batch_size)} batches of {batch_size} "
                         "noise vectors' statistics"}
    for key in ("arch", "dataset", "width", "g_width", "g_kernel", "loss"):
        if config.get(key) is not None:
            meta[key] = str(config[key])
    if "trained_steps" in info:
        meta["trained_steps"] = str(info["trained_steps"])
    return meta
