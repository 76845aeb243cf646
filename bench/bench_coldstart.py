"""Cold-start cost of a deployment package: importing its handler module in a fresh interpreter.

Each archive is extracted into a read-only directory, and the handler's module is imported from it
`runs` times, each time in a new `python3.X -I -S -B` process of the runtime's version: no
site-packages, no environment variables, no bytecode written. On Lambda /var/task is read-only
too, so every cold start compiles whatever the archive does not carry as .pyc. The time is that
of the import alone (perf_counter inside the process), not the interpreter's start-up.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List

from common import Artifact, markdown_table, ratio, runtime_python

IMPORT_SCRIPT = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); "
    "start = time.perf_counter(); __import__(sys.argv[2]); print(time.perf_counter() - start)"
)


def set_read_only(directory: Path, read_only: bool) -> None:
    for path in [directory, *directory.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555 if read_only else 0o755)
        else:
            path.chmod(0o444 if read_only else 0o644)


def import_seconds(python: Path, directory: Path, module: str) -> float:
    argv = [str(python), "-I", "-S", "-B", "-c", IMPORT_SCRIPT, str(directory), module]
    return float(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def section(ours: Artifact, builtin: Artifact, runs: int) -> str:
    python = runtime_python()
    artifacts = (ours, builtin)
    timings: Dict[Artifact, List[float]] = {artifact: [] for artifact in artifacts}
    with tempfile.TemporaryDirectory(prefix="coldstart-") as workdir:
        directories = {artifact: Path(workdir, str(i)) for i, artifact in enumerate(artifacts)}
        for artifact, directory in directories.items():
            with zipfile.ZipFile(artifact.path) as archive:
                archive.extractall(directory)
            set_read_only(directory, True)
        try:
            for _ in range(runs):  # interleaved, so that load changes hit both alike
                for artifact, directory in directories.items():
                    timings[artifact].append(
                        import_seconds(python, directory, artifact.handler_module)
                    )
        finally:
            for directory in directories.values():
                set_read_only(directory, False)

    medians = {artifact: statistics.median(timings[artifact]) for artifact in artifacts}
    rows = [
        (
            artifact.label,
            f"`import {artifact.handler_module}`",
            f"{medians[artifact] * 1000:.1f}",
            f"{min(timings[artifact]) * 1000:.1f}",
            f"{max(timings[artifact]) * 1000:.1f}",
        )
        for artifact in artifacts
    ]
    rows.append(("ours / built-in", "", ratio(medians[ours], medians[builtin]), "", ""))
    return "\n".join(
        [
            "## Cold start: importing the handler's module",
            "",
            f"{runs} runs per artifact, each in a fresh `{python.name} -I -S -B` process, from the "
            "extracted archive in a read-only directory (no `__pycache__` written, as on Lambda).",
            "",
            markdown_table(("artifact", "imports", "median ms", "min ms", "max ms"), rows),
        ]
    )
