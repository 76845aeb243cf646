"""build_zip: a staged directory to a canonical Lambda ZIP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Iterable

from lambda_rules.zipper.archive import PlannedEntry, write_archive
from lambda_rules.zipper.compress import DEFAULT_LEVEL, effective_level
from lambda_rules.zipper.errors import ZipError
from lambda_rules.zipper.filters import PathFilter
from lambda_rules.zipper.names import entry_prefix
from lambda_rules.zipper.pipeline import resolve_workers
from lambda_rules.zipper.summary import ZipSummary
from lambda_rules.zipper.tree import collect_files


def build_zip(
    root: Path,
    out: Path,
    *,
    level: int = DEFAULT_LEVEL,
    store: bool = False,
    excludes: Iterable[str] = (),
    includes: Iterable[str] = (),
    timestamp: int | None = None,
    workers: int | None = None,
    max_workers: int | None = None,
    prefix: str = "",
    executables: Collection[str] | None = None,
    durable: bool = True,
) -> ZipSummary:
    """Zip every file under `root` into `out` (under `prefix`, if given); the bytes depend only
    on names, contents and exec bits.

    `__pycache__`, `*.pyc` and `*.pyo` are left out unless re-admitted by
    `includes` (see filters.py). `timestamp` is a Unix epoch for every entry
    (None: 1980-01-01); this function never reads SOURCE_DATE_EPOCH itself.

    `executables`, when given, names the files that get an exec bit (`ROOT/name`, with `root`
    spelled as given) instead of each file's own mode: a build tool's sandbox may not keep modes
    (Pants links a file of 512 KB or more from its store, where it is 0555, into the sandbox).
    """
    root, out = Path(root), Path(out)
    compress_level = effective_level(level, store)
    path_filter = PathFilter(excludes, includes)
    under = entry_prefix(prefix)
    _refuse_output_inside(root, out)
    files = collect_files(root, path_filter)
    shown = os.fspath(root).rstrip("/")
    return write_archive(
        out,
        [
            PlannedEntry(
                under + f.name,
                f.executable if executables is None else f"{shown}/{f.name}" in executables,
                f,
            )
            for f in files
        ],
        level=compress_level,
        timestamp=timestamp,
        workers=resolve_workers(workers, sum(f.size for f in files), max_workers),
        durable=durable,
    )


def _refuse_output_inside(root: Path, out: Path) -> None:
    """An output inside the input would zip its own previous version."""
    real_root = os.path.realpath(root)
    real_out = os.path.join(os.path.realpath(out.parent), out.name)
    if real_out.startswith(real_root + os.sep):
        raise ZipError(f"{out}: output is inside the input directory {root}; write it elsewhere")
