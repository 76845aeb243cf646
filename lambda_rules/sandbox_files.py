"""Which of our files run outside the process that imports them, declared once.

The Pants rules ship these files, as contents, into the sandboxes of their processes: `ZIPPER`
compresses and merges; `TOOL` is the `lambda-zip` command (the zipper and the SBOM writer) that
writes SBOMs; `INVOKER` is the stdlib-only local invoker `pants run` runs with Pants' interpreter;
`BYTECODE_COMPILER` is the stdlib-only `.pyc` compiler run by the runtime's CPython;
`WHEEL_UNPACKER` fetches locked wheels and writes one unit per wheel. Each set is
exactly what its program needs, because the files are inputs of its processes' cache keys: editing
the invoker must not rerun every bytecode compile, nor the other way round. A module of ours that
one of them imports but that is not listed here would fail only inside a sandbox, so
tests/test_sandbox_files.py follows every import of every listed file.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# The directory that holds the `lambda_rules` package: shipped paths are relative to it.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FileSet:
    """Files of ours, as glob patterns relative to `SOURCE_ROOT`."""

    patterns: tuple[str, ...]

    def paths(self) -> list[str]:
        """The files, sorted, as '/'-separated paths relative to `SOURCE_ROOT`. (`glob.glob`
        rather than `Path.glob`: a tenth of the time, and every `lambda-zip package` hashes
        these sets for its cache keys.)"""
        root = os.fspath(SOURCE_ROOT)
        found = {
            os.path.relpath(path, root).replace(os.sep, "/")
            for pattern in self.patterns
            for path in glob.glob(os.path.join(glob.escape(root), pattern))
        }
        return sorted(found)

    def read(self) -> dict[str, bytes]:
        """Each file's path and contents: what a sandbox gets (never a path of this machine)."""
        return {path: (SOURCE_ROOT / path).read_bytes() for path in self.paths()}


def installed_sources(package: str) -> dict[str, bytes]:
    """The `.py` files of an installed pure-Python package, as a sandbox gets them (paths relative
    to the directory that holds the package)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{package} is not installed beside Pants (see ./pants)")
    root = Path(spec.origin).parent
    return {
        path.relative_to(root.parent).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*.py"))
    }


def layout_sources() -> dict[str, bytes]:
    """What lays wheels out into units: `WHEEL_UNPACKER` and installer's sources, as the wheel
    step's sandbox gets them."""
    return {**WHEEL_UNPACKER.read(), **installed_sources(WHEEL_UNPACKER_REQUIREMENTS[0])}


def fingerprint(files: Mapping[str, bytes]) -> str:
    """A digest of each file's path and content: a name for what a set of sources makes."""
    digest = hashlib.sha256()
    for path, content in sorted(files.items()):
        digest.update(f"{path} {hashlib.sha256(content).hexdigest()}\n".encode())
    return digest.hexdigest()


def entry_program(module: str, sys_path: tuple[str, ...]) -> str:
    """A `python -c` program that runs `module`'s `main` with `sys_path` (the directories a
    sandbox holds a file set in) in front of the interpreter's own."""
    return (
        f"import sys; sys.path[:0] = {list(sys_path)!r}; "
        f"from {module} import main; sys.exit(main())"
    )


# The zipper alone (build, build-parts, merge): what every compress and merge process runs. Its
# processes' cache keys are these files and `ZIPPER_REQUIREMENTS`, so neither an edit of the SBOM
# writer nor an upgrade of cyclonedx-python-lib recompresses any part.
ZIPPER = FileSet(patterns=("lambda_rules/__init__.py", "lambda_rules/zipper/*.py"))
ZIPPER_MODULE = "lambda_rules.zipper.cli"
# The projects the zipper imports beyond the standard library (tests/test_sandbox_files.py).
ZIPPER_REQUIREMENTS = ("deflate",)

TOOL = FileSet(
    patterns=(
        "lambda_rules/__init__.py",
        "lambda_rules/errors.py",
        "lambda_rules/lambda_zip/__init__.py",
        "lambda_rules/lambda_zip/verbs.py",
        "lambda_rules/facts.py",
        "lambda_rules/image.py",
        "lambda_rules/image_outputs.py",
        "lambda_rules/units.py",
        "lambda_rules/locks.py",
        "lambda_rules/lock_formats.py",
        "lambda_rules/fetch.py",
        "lambda_rules/wheel_origins.py",
        "lambda_rules/platforms.py",
        "lambda_rules/sbom.py",
        "lambda_rules/sbom_identity.py",
        "lambda_rules/zipper/*.py",
    )
)
TOOL_MODULE = "lambda_rules.lambda_zip.verbs"
# What the tool's processes import beyond the standard library, installed from the tool's lock
# (`lambda_rules/plugin/subsystems/lambda_zip.lock`) with their dependencies.
TOOL_REQUIREMENTS = ("cyclonedx-python-lib", "deflate", "installer", "packaging")

INVOKER = FileSet(
    patterns=(
        "lambda_rules/__init__.py",
        "lambda_rules/errors.py",
        "lambda_rules/facts.py",
        "lambda_rules/scripts/__init__.py",
        # Not imported: invoke.py copies it into the runtime directory (no import test sees it).
        "lambda_rules/scripts/bootstrap.py",
        "lambda_rules/scripts/interpreters.py",
        "lambda_rules/scripts/invoke.py",
        "lambda_rules/scripts/lambda_environment.py",
        "lambda_rules/scripts/task_root.py",
    )
)
INVOKER_MODULE = "lambda_rules.scripts.invoke"

BYTECODE_COMPILER = FileSet(
    patterns=(
        "lambda_rules/__init__.py",
        "lambda_rules/scripts/__init__.py",
        "lambda_rules/scripts/bytecode.py",
        "lambda_rules/scripts/canonical_marshal.py",
        # The compiler reads unit archives as pieces; the zipper's package imports lazily, so
        # nothing else of it (nor deflate) is loaded by the runtime's CPython.
        "lambda_rules/zipper/__init__.py",
        "lambda_rules/zipper/pieces.py",
    )
)
BYTECODE_COMPILER_MODULE = "lambda_rules.scripts.bytecode"

# Fetches a target's locked wheels and writes one unit per wheel, run by the tool's interpreter
# (it needs `installer`, one of the tool's requirements).
WHEEL_UNPACKER = FileSet(
    patterns=(
        "lambda_rules/__init__.py",
        "lambda_rules/errors.py",
        "lambda_rules/fetch.py",
        "lambda_rules/units.py",
        "lambda_rules/wheel_units.py",
        "lambda_rules/scripts/__init__.py",
        "lambda_rules/scripts/unpack_wheels.py",
        "lambda_rules/unit_cache.py",
        "lambda_rules/zipper/*.py",
    )
)
WHEEL_UNPACKER_MODULE = "lambda_rules.scripts.unpack_wheels"
# Beside our files, the wheel step gets PyPA's installer's sources (pure Python): it runs on Pants'
# own interpreter, so it need not wait for the tool's environment to be built.
WHEEL_UNPACKER_REQUIREMENTS = ("installer",)

# `lambda-zip verify` run by the Pants rules: the whole Pants-free core (it packages again).
VERIFIER = FileSet(
    patterns=(
        "lambda_rules/*.py",
        "lambda_rules/lambda_zip/*.py",
        "lambda_rules/scripts/*.py",
        "lambda_rules/zipper/*.py",
    )
)
VERIFIER_MODULE = "lambda_rules.lambda_zip.main"
