"""What the two runners share about a step's command, written once (no Pants imports): the Pants
rules turn these into `Process`es, `lambda-zip package` runs them locally.

Bazel keeps an action (inputs, argv, outputs) apart from its executor; here too, each front end
only decides how to run an argv, never what it is.
"""

from __future__ import annotations

from typing import Sequence

from lambda_rules import facts, sandbox_files
from lambda_rules.facts import Kind


def package_prefix(kind: Kind) -> str:
    """Where a package's paths start inside its zip: a layer's under `python/` (Lambda mounts
    layers at /opt, and /opt/python is on the runtime's path), a function's at the root."""
    return f"{facts.LAYER_PYTHON_DIR}/" if kind is Kind.LAYER else ""


def load_root(kind: Kind) -> str:
    """Where Lambda unzips the package: what a `.pyc`'s code path starts with."""
    return facts.LAYER_ROOT if kind is Kind.LAYER else facts.TASK_ROOT


def bytecode_includes(cache_tag: str) -> tuple[str, ...]:
    """The zipper's `--include` that keeps the runtime's `.pyc` (the zipper leaves `.pyc` out)."""
    return (f"*.{cache_tag}.pyc",)


def compile_argv(
    python: str,
    compiler_dir: str,
    *,
    roots: Sequence[str],
    load_root: str,
    workers: str,
    third_party: bool,
    unpack: Sequence[tuple[str, str]] = (),
) -> tuple[str, ...]:
    """The bytecode compiler's command (`scripts/bytecode.py`, its files in `compiler_dir`):
    each root compiled as a tree of its own after unpacking each (archive, directory). A
    third-party source that does not compile is skipped, as pip skips it; a first-party one fails
    the build."""
    program = sandbox_files.entry_program(sandbox_files.BYTECODE_COMPILER_MODULE, (compiler_dir,))
    return (
        python,
        "-I",
        "-B",
        "-c",
        program,
        "compile",
        *(arg for root in roots for arg in ("--root", root)),
        "--prefix",
        load_root,
        "--workers",
        workers,
        *(("--on-invalid", "skip") if third_party else ()),
        *(arg for pair in unpack for arg in ("--unpack", *pair)),
    )
