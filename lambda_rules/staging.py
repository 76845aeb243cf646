"""Decisions about what goes into a deployment package, made on relative paths alone.

Everything here is a pure function of paths and file contents, so the Pants rules stay thin and
the same checks can be unit-tested without Pants.
"""

from __future__ import annotations

import ast
import posixpath
from collections import defaultdict
from typing import Iterable

from lambda_rules.errors import LambdaRulesError


class StagingError(LambdaRulesError):
    """The staged tree cannot make a working deployment package."""


def path_collisions(source_paths: Iterable[str], distribution_paths: Iterable[str]) -> list[str]:
    """Paths that first-party code and a third-party distribution would both write."""
    return sorted(set(source_paths) & set(distribution_paths))


def case_collisions(paths: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of distinct paths that are equal when case is ignored (macOS, Windows)."""
    by_folded: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        by_folded[path.casefold()].add(path)
    return sorted(tuple(sorted(group)) for group in by_folded.values() if len(group) > 1)


def handler_module_candidates(module: str) -> tuple[str, str]:
    """The files that may define a dotted module, relative to the zip root."""
    base = module.replace(".", "/")
    return f"{base}.py", posixpath.join(base, "__init__.py")


def module_may_define(source: bytes, name: str, *, filename: str) -> bool:
    """Whether a module may bind `name` at top level; False only when it certainly does not.

    A static check that never imports user code, so it runs for any target runtime. Refusing a
    working function is worse than missing a typo, so it accepts what it cannot judge: source this
    interpreter cannot parse (the runtime's newer CPython may), and modules that can bind names
    in ways the syntax does not show (star imports, a PEP 562 `__getattr__`, `globals()`, `exec`,
    `sys.modules`, `builtins`).
    """
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # ValueError: null bytes; MemoryError: CPython 3.9's parser stack overflows on deep nesting.
        return True
    if _module_scope_bindings(tree) & {name, "*", "__getattr__"}:
        return True
    return any(_may_bind_elsewhere(node, name) for node in ast.walk(tree))


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

# Nodes that bind a plain string, not a Name: `except ... as x` and the capture patterns of
# `match` (by class name: CPython 3.9, which Pants runs on, has no match nodes).
_BINDING_STRING_FIELDS = {
    "ExceptHandler": "name",
    "MatchAs": "name",
    "MatchStar": "name",
    "MatchMapping": "rest",
}

# Names through which code can reach a namespace without a visible binding.
_DYNAMIC_NAMESPACE_NAMES = frozenset(
    {
        "globals",
        "locals",
        "vars",
        "exec",
        "eval",
        "setattr",
        "__import__",
        "__dict__",
        "__builtins__",
        "builtins",
        "modules",
    }
)


def _module_scope_bindings(tree: ast.Module) -> set[str]:
    """Every name the module's own scope may bind, on any path; `*` stands for a star import.

    Compound statements (if, try, with, for, while, match) do not open a scope, so their bodies
    are searched. Function, class and lambda bodies do, so only their parts evaluated in the
    module scope are searched (decorators, defaults, bases); comprehensions too, except their
    targets, since a walrus there binds in the module. Iterative: deep nesting cannot overflow.
    """
    bound: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            pending.extend(node.decorator_list)
            if isinstance(node, ast.ClassDef):
                pending.extend(node.bases)
                pending.extend(node.keywords)
            else:
                pending.extend([node.args] + ([node.returns] if node.returns else []))
        elif isinstance(node, ast.Lambda):
            pending.append(node.args)
        elif isinstance(node, _COMPREHENSIONS):
            # Targets are local to the comprehension; everything else may hold a walrus.
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.comprehension):
                    pending.extend([child.iter, *child.ifs])
                else:
                    pending.append(child)
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        else:
            field = _BINDING_STRING_FIELDS.get(type(node).__name__)
            if field and getattr(node, field):
                bound.add(getattr(node, field))
            pending.extend(ast.iter_child_nodes(node))
    return bound


def _may_bind_elsewhere(node: ast.AST, name: str) -> bool:
    """Whether `node`, in any scope, may bind module globals without a visible top-level binding."""
    if isinstance(node, ast.Global):
        return name in node.names
    if isinstance(node, ast.Name):
        return node.id in _DYNAMIC_NAMESPACE_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in _DYNAMIC_NAMESPACE_NAMES
    if isinstance(node, ast.alias):
        return node.name.split(".")[0] in _DYNAMIC_NAMESPACE_NAMES
    return False
