"""The zipper is a leaf: nothing in lambda_rules/zipper/ imports anything else of ours but
`lambda_rules.pieces` (how the rules hand it large inputs), a leaf itself, so the two can be
shipped, vendored or tested on their own."""

from __future__ import annotations

import ast
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


def test_zipper_imports_nothing_of_ours_outside_it_but_pieces():
    outside = [
        f"{path.name}: {name}"
        for path in sorted(ZIPPER.glob("*.py"))
        for name in _ours_imported(path)
        if not name.startswith(("lambda_rules.zipper", "lambda_rules.pieces"))
        and name != "lambda_rules"
    ]
    assert outside == []


def test_pieces_imports_nothing_of_ours():
    assert _ours_imported(PACKAGE / "pieces.py") == []
