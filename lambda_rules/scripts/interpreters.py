"""Finds the CPython of a Lambda runtime's version on this machine: the one interpreter discovery.

Standard library and `lambda_rules.facts` only (it runs in the `pants run` sandbox). pyenv's
releases come first, highest patch first, then a few fixed directories; never $PATH, so what runs
does not depend on the shell that started Pants. Every candidate is run and must say it is
CPython X.Y: a name says nothing about what a file is (a symlink to another version, a PyPy, a
broken build), and a handler run, or a `.pyc` written, by another version proves nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lambda_rules import facts
from lambda_rules.errors import LambdaRulesError

# Searched after pyenv, in this order.
DEFAULT_SEARCH_PATH: tuple[str, ...] = ("/usr/local/bin", "/usr/bin", "/bin")

_PROBE = "import sys; print(sys.implementation.name, *sys.version_info[:2])"
_PROBE_TIMEOUT_SECONDS = 30


class InterpreterNotFoundError(LambdaRulesError, LookupError):
    """No CPython of the runtime's version here: the message says where we looked, what we
    passed over and what to do."""


def find_interpreter(
    runtime: facts.Runtime,
    *,
    pyenv_root: str | os.PathLike[str] | None = None,
    search_path: Sequence[str | os.PathLike[str]] = DEFAULT_SEARCH_PATH,
) -> Path:
    """`python3.X` of the runtime: pyenv's highest 3.X.N release ($PYENV_ROOT or ~/.pyenv,
    `versions/3.X.N/bin/python3.X`), then `search_path`; the first that really is CPython 3.X."""
    root = Path(pyenv_root or os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions = root / "versions"
    candidates = [
        *_pyenv_candidates(versions, runtime),
        *(Path(directory) / runtime.python_name for directory in search_path),
    ]
    passed_over = []
    for candidate in candidates:
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        found = _probe(candidate)
        if found == ("cpython", runtime.python_version):
            return candidate
        passed_over.append(f"{candidate} ({_describe(found)})")
    major, minor = runtime.python_version
    directories = ", ".join(os.fspath(d) for d in search_path) or "no directories"
    rejected = f"; passed over {', '.join(passed_over)}" if passed_over else ""
    raise InterpreterNotFoundError(
        f"no CPython {major}.{minor} for the {runtime.name} runtime: looked for "
        f"{runtime.python_name} under pyenv ({versions}/{major}.{minor}.*/bin) and in "
        f"{directories} (never $PATH){rejected}. Install it with `pyenv install {major}.{minor}` "
        f"(or your system's {runtime.python_name} package)."
    )


def _pyenv_candidates(versions: Path, runtime: facts.Runtime) -> list[Path]:
    """pyenv's `3.X.N` releases, highest N first (not 3.X-dev, 3.X.Nt or other builds)."""
    major, minor = runtime.python_version
    release = re.compile(rf"{major}\.{minor}\.(\d+)")
    if not versions.is_dir():
        return []
    patches = []
    for version_dir in versions.iterdir():
        match = release.fullmatch(version_dir.name)
        if match:
            patches.append((int(match.group(1)), version_dir / "bin" / runtime.python_name))
    return [binary for _, binary in sorted(patches, reverse=True)]


def _probe(interpreter: Path) -> tuple[str, tuple[int, int]] | None:
    """(implementation, (major, minor)) that the interpreter reports, or None if it does not
    run. Isolated, without site and without PYTHON* variables: nothing here changes the answer."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    try:
        result = subprocess.run(
            [os.fspath(interpreter), "-I", "-S", "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_SECONDS,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 3 or not all(f.isdigit() for f in fields[1:]):
        return None
    return fields[0], (int(fields[1]), int(fields[2]))


def _describe(found: tuple[str, tuple[int, int]] | None) -> str:
    if found is None:
        return "does not run"
    implementation, (major, minor) = found
    name = "CPython" if implementation == "cpython" else implementation
    return f"{name} {major}.{minor}"
