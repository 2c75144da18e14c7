"""The export room keeps the house's rules: `onnx` is imported only under minigan/export (and
only when an ONNX file is written), and the floors below never import export."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_onnx_only_under_export_and_export_never_below():
    below = ("gan", "nn", "functional")
    for path in [*(ROOT / "minigan").rglob("*.py"), *(ROOT / "kernels").rglob("*.py")]:
        rel = path.relative_to(ROOT)
        names = _imports(path)
        if rel.parts[:2] != ("minigan", "export"):
            assert not any(n == "onnx" or n.startswith("onnx.") for n in names), \
                f"{rel} imports onnx: only minigan/export may"
        if rel.parts[0] == "kernels" or rel.parts[1] in below:
            assert not any("export" in n for n in names), f"{rel} imports export"


def test_importing_minigan_and_its_export_room_loads_no_onnx():
    code = ("import sys, minigan, minigan.cli, minigan.export, minigan.gan; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'torch')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"loaded on import: {res.stdout}"
