"""The generator as an ONNX model (opset 17): input `z` (N, z_dim), output `images` (N, C, H, W)
in [-1, 1], the batch axis N free. Written with the `onnx` package, imported only here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .graph import ExportError, Step

OPSET = 17                 # BatchNormalization-15, Resize-13, Reshape-14, LeakyRelu-16
IR_VERSION = 8             # the IR version of opset 17: readable by runtimes of that age
MIN_ONNX = (1, 12)         # the first onnx release that knows opset 17
INSTALL = "pip install 'minigan[export]'  (or: pip install -U 'onnx>=1.12')"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def import_onnx():
    """The onnx module, or an ExportError that says how to get a recent enough one."""
    try:
        import onnx
    except ImportError as e:
        raise ExportError(f"--format onnx needs the onnx package, which is not installed ({e}): "
                          f"{INSTALL}") from e
    if _version(onnx.__version__) < MIN_ONNX:
        raise ExportError(f"onnx {onnx.__version__} is too old: minigan writes opset {OPSET}, "
                          f"which needs onnx >= {'.'.join(map(str, MIN_ONNX))}; upgrade it: "
                          f"{INSTALL}")
    return onnx


class _Graph:
    """Nodes and initializers appended in order; `x` names the current activation."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.inits, self.x = onnx, [], [], "z"

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, name: str, inputs: list[str], **attrs) -> None:
        out = f"{name}.out"
        self.nodes.append(self.onnx.helper.make_node(op, [self.x, *inputs], [out],
                                                     name=f"{name}.{op}", **attrs))
        self.x = out


def _add(g: _Graph, s: Step) -> None:
    """Append step `s` to the graph as one ONNX node."""
    m, n = s.module, s.name
    weights = [g.const(f"{n}.{k}", s.array(k)) for k in ("weight", "bias")
               if s.array(k) is not None and s.kind != "batch_norm"]
    if s.kind == "linear":
        g.node("Gemm", n, weights, transB=1)                       # x @ W.T + b
    elif s.kind in ("conv2d", "conv_transpose2d"):
        (ph, pw), attrs = m.padding, {}
        if s.kind == "conv_transpose2d":
            attrs["output_padding"] = list(m.output_padding)
        g.node("Conv" if s.kind == "conv2d" else "ConvTranspose", n, weights,
               kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=[ph, pw, ph, pw],
               **attrs)
    elif s.kind == "batch_norm":
        c = m.num_features
        affine = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}
        inputs = [g.const(f"{n}.{k}", s.array(k) if s.array(k) is not None else affine.get(k))
                  for k in ("weight", "bias", "running_mean", "running_var")]
        g.node("BatchNormalization", n, inputs, epsilon=float(m.eps))   # inference form
    elif s.kind == "leaky_relu":
        g.node("LeakyRelu", n, [], alpha=float(m.negative_slope))
    elif s.kind in ("relu", "tanh", "sigmoid"):
        g.node({"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[s.kind], n, [])
    elif s.kind == "reshape":                                   # 0 keeps the batch axis
        g.node("Reshape", n, [g.const(f"{n}.shape", np.array([0, *s.out_shape], np.int64))])
    elif s.kind == "upsample":
        f = float(m.scale_factor)
        g.node("Resize", n, ["", g.const(f"{n}.scales", np.array([1, 1, f, f], np.float32))],
               mode="nearest", coordinate_transformation_mode="asymmetric",
               nearest_mode="floor")                            # PyTorch's 'nearest'
    else:
        raise ExportError(f"layer {n!r} ({type(m).__name__}): no ONNX rule for {s.kind!r}")


def to_onnx(steps: list[Step], z_dim: int, path: str | Path,
            metadata: dict[str, str] | None = None) -> Path:
    """Write the steps as an ONNX model to `path`, checked by onnx.checker."""
    onnx = import_onnx()
    helper = onnx.helper
    g = _Graph(onnx)
    for s in steps:
        _add(g, s)
    g.nodes[-1].output[0] = "images"
    shape = steps[-1].out_shape
    graph = helper.make_graph(
        g.nodes, "minigan_generator",
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["N", z_dim])],
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["N", *shape])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="minigan", doc_string="images in [-1, 1]")
    model.ir_version = IR_VERSION
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
