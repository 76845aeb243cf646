"""Deterministic bytecode: cold import of the handler from the read-only extraction, with and
without `compile_bytecode=True`, and what the `.pyc` files cost in size.

Both archives of a pair come from one `./pants package` in one clone; each import runs in a fresh
`python3.X -I -S -B` of the runtime's version (bench_coldstart.py), alternating between the two
extractions. Lambda's /var/task is read-only, so without shipped bytecode every cold start
compiles every imported module; with it, the unchecked-hash `.pyc` files are loaded as they are.
"""

from __future__ import annotations

import statistics
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import bench_coldstart
from common import RUNTIME, markdown_table, ratio, runtime_python


@dataclass(frozen=True)
class Pair:
    """One function packaged without and with `compile_bytecode=True`."""

    label: str
    plain: Path
    compiled: Path
    handler_module: str


def sizes(path: Path) -> Tuple[int, int, int]:
    """Zip bytes, unzipped bytes, files."""
    with zipfile.ZipFile(path) as archive:
        files = [entry for entry in archive.infolist() if not entry.is_dir()]
    return path.stat().st_size, sum(entry.file_size for entry in files), len(files)


def import_timings(pairs: Sequence[Pair], runs: int) -> Dict[Tuple[str, bool], List[float]]:
    python = runtime_python()
    timings: Dict[Tuple[str, bool], List[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bytecode-") as workdir:
        directories = {}
        for i, pair in enumerate(pairs):
            for compiled, archive_path in ((False, pair.plain), (True, pair.compiled)):
                directory = Path(workdir, f"{i}-{int(compiled)}")
                with zipfile.ZipFile(archive_path) as archive:
                    archive.extractall(directory)
                bench_coldstart.set_read_only(directory, True)
                directories[(pair.label, compiled)] = (directory, pair.handler_module)
                timings[(pair.label, compiled)] = []
        try:
            for _ in range(runs):  # interleaved, so that load changes hit every variant alike
                for key, (directory, module) in directories.items():
                    timings[key].append(bench_coldstart.import_seconds(python, directory, module))
        finally:
            for directory, _ in directories.values():
                bench_coldstart.set_read_only(directory, False)
    return timings


def section(pairs: Sequence[Pair], runs: int) -> str:
    timings = import_timings(pairs, runs)
    import_rows = []
    size_rows = []
    for pair in pairs:
        plain, compiled = (statistics.median(timings[(pair.label, c)]) for c in (False, True))
        import_rows.append(
            (
                pair.label,
                f"`import {pair.handler_module}`",
                f"{plain * 1000:.1f}",
                f"{compiled * 1000:.1f}",
                ratio(compiled, plain),
                f"{min(timings[(pair.label, True)]) * 1000:.1f}–"
                f"{max(timings[(pair.label, True)]) * 1000:.1f}",
            )
        )
        (plain_zip, plain_unzipped, plain_files), (pyc_zip, pyc_unzipped, pyc_files) = (
            sizes(pair.plain),
            sizes(pair.compiled),
        )
        size_rows.append(
            (
                pair.label,
                f"{plain_zip:,}",
                f"{pyc_zip:,}",
                ratio(pyc_zip, plain_zip),
                f"{plain_unzipped:,}",
                f"{pyc_unzipped:,}",
                ratio(pyc_unzipped, plain_unzipped),
                f"{plain_files:,} → {pyc_files:,}",
            )
        )
    python = runtime_python()
    return "\n".join(
        [
            "## Deterministic bytecode: cold import with and without `compile_bytecode=True`",
            "",
            f"Median of {runs} imports per archive, each in a fresh `{python.name} -I -S -B` "
            f"process (pyenv's {python.parent.parent.name}, runtime {RUNTIME}), from the extracted "
            "archive in a read-only directory, all four archives alternating. Both archives of a "
            "function come from one `./pants package` of two `lambda_function` targets that differ "
            "only in "
            "`compile_bytecode`.",
            "",
            markdown_table(
                (
                    "function",
                    "imports",
                    "without ms",
                    "with ms",
                    "with / without",
                    "with: min–max ms",
                ),
                import_rows,
            ),
            "",
            "Size cost:",
            "",
            markdown_table(
                (
                    "function",
                    "zip bytes without",
                    "zip bytes with",
                    "ratio",
                    "unzipped without",
                    "unzipped with",
                    "ratio",
                    "files",
                ),
                size_rows,
            ),
        ]
    )
