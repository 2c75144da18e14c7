"""Checkpoints: one .npz file holding nested dicts of arrays and JSON-able values.

Arrays are stored under their path in the tree ('G/0.weight', 'opt_d/state/3/exp_avg'); every
other value (numbers, strings, random-generator states with 128-bit integers) goes into one
JSON document. A checkpoint is written to a temporary file beside its destination, flushed to
disk, then renamed over it, so a crash while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_open

_META = "__meta__"


def _split(tree, arrays: dict, prefix: str):
    """The tree with every array replaced by {'__array__': key}; arrays collected by key."""
    if isinstance(tree, np.ndarray):
        arrays[prefix] = tree
        return {"__array__": prefix}
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str) or "/" in k:
                raise ValueError(f"checkpoint keys must be strings without '/', got {k!r}")
        return {k: _split(v, arrays, f"{prefix}/{k}" if prefix else k) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, arrays, f"{prefix}/{i}") for i, v in enumerate(tree)]
    if isinstance(tree, np.generic):
        return tree.item()
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if hasattr(tree, "__array__") or hasattr(tree, "__cuda_array_interface__"):
        from .. import backend
        arrays[prefix] = np.asarray(backend.to_numpy(tree))
        return {"__array__": prefix}
    raise TypeError(f"cannot store {type(tree).__name__} at {prefix!r} in a checkpoint")


def _join(tree, arrays):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: _join(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


def _write(f, arrays: dict) -> None:
    np.savez(f, **arrays)


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` (nested dicts/lists of arrays and JSON values) to `path` atomically."""
    path = Path(path)
    arrays: dict = {}
    meta = _split(state, arrays, "")
    if _META in arrays:
        raise ValueError(f"{_META!r} is reserved in checkpoints")
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with atomic_open(path) as f:
        _write(f, arrays)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The state saved by `save_checkpoint`; a clear error names a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from e
    if _META not in arrays:
        raise ValueError(f"{path}: not a minigan checkpoint (no {_META!r} entry)")
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    return _join(meta, arrays)


def gan_state(G, D, opt_g, opt_d) -> dict:
    """What every GAN trainer's checkpoint holds: both nets, both optimizers, the noise RNG."""
    from .. import backend

    return {"G": dict(G.state_dict()), "D": dict(D.state_dict()),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "rng": backend.rng.get_state()}


def load_gan_state(state: dict, G, D, opt_g, opt_d) -> None:
    """Restore what `gan_state` saved, in place."""
    from .. import backend

    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    opt_g.load_state_dict(state["opt_g"])
    opt_d.load_state_dict(state["opt_d"])
    backend.rng.set_state(state["rng"])
