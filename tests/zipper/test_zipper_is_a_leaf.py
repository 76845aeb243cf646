"""The zipper is a leaf: nothing in lambda_rules/zipper/ imports anything else of ours, so it can
be shipped, vendored or tested on its own; its `pieces` (how the rules hand it large inputs)
imports nothing of ours at all, and importing it loads nothing else of the zipper."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lambda_rules"
ZIPPER = PACKAGE / "zipper"


def _ours_imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return [name for name in names if name.split(".")[0] == "lambda_rules"]


def test_zipper_imports_nothing_of_ours_outside_it():
    outside = [
        f"{path.name}: {name}"
        for path in sorted(ZIPPER.glob("*.py"))
        for name in _ours_imported(path)
        if not name.startswith("lambda_rules.zipper") and name != "lambda_rules"
    ]
    assert outside == []


def test_pieces_imports_nothing_of_ours():
    assert _ours_imported(ZIPPER / "pieces.py") == []


def test_importing_pieces_loads_nothing_else_of_the_zipper():
    """The runtime's CPython imports it to read unit archives; it has no deflate."""
    program = (
        f"import sys; sys.path[:0] = [{str(PACKAGE.parent)!r}]; "
        "import lambda_rules.zipper.pieces; "
        "print(sorted(m for m in sys.modules if m.startswith('lambda_rules')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "['lambda_rules', 'lambda_rules.zipper', 'lambda_rules.zipper.pieces']"
