"""`--format web`: a static folder that draws new samples in the browser, from the file system,
with no server and no network. index.html, generator.js (the forward pass in plain JavaScript)
and page.js come from minigan/export/web/; weights.js holds the layers and their float32
weights in base64 (a script, not a data file: Chromium refuses fetch() under file://)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np

from ..atomic import atomic_open
from .graph import Step

WEB = Path(__file__).parent / "web"
STATIC = ("index.html", "generator.js", "page.js")
ATTRS = ("kernel_size", "stride", "padding", "output_padding", "eps", "negative_slope",
         "scale_factor")
ARRAYS = ("weight", "bias", "running_mean", "running_var")


def model_json(steps: list[Step], z_dim: int, metadata: dict[str, str]) -> dict:
    """The layers for generator.js: kind, shapes, attributes and [offset, length] of each array
    in `data`, one base64 string of little-endian float32."""
    chunks, offset, layers = [], 0, []
    for s in steps:
        layer = {"kind": s.kind, "name": s.name, "in_shape": list(s.in_shape),
                 "out_shape": list(s.out_shape), "arrays": {}}
        for attr in ATTRS:
            if hasattr(s.module, attr):
                v = getattr(s.module, attr)
                layer[attr] = list(v) if isinstance(v, tuple) else v
        for key in ARRAYS:
            a = s.array(key)
            if a is not None:
                chunks.append(a.astype("<f4").ravel())
                layer["arrays"][key] = [offset, a.size]
                offset += a.size
        layers.append(layer)
    data = np.concatenate(chunks) if chunks else np.zeros(0, "<f4")
    return {"z_dim": z_dim, "metadata": metadata, "layers": layers,
            "data": base64.b64encode(data.tobytes()).decode("ascii")}


def write_site(steps: list[Step], z_dim: int, out: str | Path,
               metadata: dict[str, str]) -> Path:
    """Write the page's four files into the folder `out` (made if missing); other files in it
    are left alone."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file: --format web writes a folder; give -o a folder "
                              "name (e.g. -o site/)")
    out.mkdir(parents=True, exist_ok=True)
    for name in STATIC:
        shutil.copyfile(WEB / name, out / name)
    model = json.dumps(model_json(steps, z_dim, metadata), separators=(",", ":"))
    with atomic_open(out / "weights.js", "w") as f:
        f.write("// A minigan generator: layers and float32 weights (base64), read by "
                "generator.js.\n")
        f.write(f"window.MINIGAN_GENERATOR = {model};\n")
    return out
