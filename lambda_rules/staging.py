"""Decisions about what goes into a deployment package, made on relative paths alone.

Everything here is a pure function of paths and file contents, so the Pants rules stay thin and
the same checks can be unit-tested without Pants.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from lambda_rules.platforms import LambdaPlatform

# Build and install tooling that a deployed function never imports: pip, setuptools (with its
# pkg_resources and distutils shim) and wheel, plus console scripts and bytecode caches.
_UNWANTED_TOP_LEVEL = re.compile(
    r"^(pip|setuptools|pkg_resources|_distutils_hack|wheel|bin)(/|$)"
    r"|^(pip|setuptools|wheel)-[^/]+\.dist-info(/|$)"
    r"|^distutils-precedence\.pth$"
)
_DIST_INFO_DIR = re.compile(r"^(?P<name>[^/]+)-(?P<version>[^/-]+)\.dist-info/")


class StagingError(Exception):
    """The staged tree cannot make a working deployment package."""


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str


def is_bundled_distribution_path(path: str) -> bool:
    """Whether a path of the flat site-packages belongs in the deployment package."""
    if _UNWANTED_TOP_LEVEL.search(path):
        return False
    parts = path.split("/")
    return "__pycache__" not in parts and not path.endswith((".pyc", ".pyo"))


def distributions(paths: Iterable[str]) -> tuple[Distribution, ...]:
    """The distributions installed in a flat site-packages, from their `.dist-info` directories."""
    found = set()
    for path in paths:
        match = _DIST_INFO_DIR.match(path)
        if match:
            found.add(Distribution(match["name"], match["version"]))
    return tuple(sorted(found, key=lambda d: (d.name.lower(), d.version)))


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


def module_defines(source: bytes, name: str, *, filename: str) -> bool:
    """Whether a module binds `name` at top level: a def, a class, an assignment or an import.

    This is a static check: it never imports user code, so it runs for any target runtime.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
        raise StagingError(f"{filename} is not valid Python: {e.msg} (line {e.lineno}).") from e
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound == name:
                    return True
    return False


class ResolveError(Exception):
    """The requirements cannot be satisfied with wheels for the Lambda platform."""


_INCOMPATIBLE = re.compile(
    r"^\d+\.\) (?P<project>\S+) (?P<version>\S+) \(via: (?P<via>[^)]*)\) "
    r"does not have any compatible artifacts:\n(?P<urls>(?:[ \t]+\S+\n?)*)",
    re.M,
)


def explain_resolve_failure(address: str, platform: LambdaPlatform, pex_stderr: str) -> str:
    """Turn pex's resolve failure into what the user needs: which requirement, where, what to do."""
    problems = []
    for match in _INCOMPATIBLE.finditer(pex_stderr):
        files = [url.rsplit("/", 1)[-1] for url in match["urls"].split()]
        wheels = sum(f.endswith(".whl") for f in files)
        sdists = [f for f in files if not f.endswith(".whl")]
        offered = f"{wheels} wheel(s) for other platforms" + (
            f" and the source distribution {sdists[0]}" if sdists else ""
        )
        problems.append(
            f"- {match['project']} {match['version']} (required via {match['via']}) has no wheel "
            f"for {platform.runtime.name} on {platform.architecture}; the lockfile offers "
            f"{offered}."
        )
    details = "\n".join(problems) or pex_stderr.strip()
    return (
        f"{address}: cannot resolve its requirements for {platform.description} with wheels "
        f"only:\n{details}\n\n"
        f"Pin a version that publishes a wheel for {platform.runtime.name} on "
        f"{platform.architecture} ({platform.tag_summary()}), or build that wheel yourself "
        "and serve it from a find-links repository ([python-repos].find_links). Source "
        "distributions are never built: that would run their build code on this machine and "
        "can produce a wheel for this machine instead of for Lambda."
    )
