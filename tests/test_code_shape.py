"""Shape rules the code keeps: small modules, no programs hidden in string literals."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "lambda_rules"
MAX_MODULE_LINES = 500
MAX_STRING_LINES = 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (of the module, a class or a function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_module_is_longer_than_500_lines():
    long = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in _modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_string_literal_but_a_docstring_spans_more_than_60_lines():
    """A program kept in a string is never linted, highlighted or navigable: make it a file."""
    long = []
    for path in _modules():
        tree = ast.parse(path.read_bytes())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Constant, ast.JoinedStr)) and id(node) not in docstrings:
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_STRING_LINES and isinstance(getattr(node, "value", ""), str):
                    long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} ({lines} lines)")
    assert long == []


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines():
    """A function that does not fit on a screen hides its steps: name them instead."""
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({lines})"
                    )
    assert long == []
