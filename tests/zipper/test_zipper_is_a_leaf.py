"""The zipper is a leaf: nothing in lambda_rules/zipper/ imports anything else of ours, so it can
be shipped, vendored or tested on its own."""

from __future__ import annotations

import ast
from pathlib import Path

ZIPPER = Path(__file__).resolve().parents[2] / "lambda_rules" / "zipper"


def test_zipper_imports_nothing_of_ours_outside_it():
    outside = []
    for path in sorted(ZIPPER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_bytes())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            outside += [
                f"{path.name}: {name}"
                for name in names
                if name.split(".")[0] == "lambda_rules"
                and not name.startswith("lambda_rules.zipper")
            ]
    assert outside == []
