"""repack_zip: any existing archive to the canonical form, refusing unsafe input.

Repack keeps every file unless --exclude says otherwise: it normalizes an
archive, it does not second-guess its content, so the pycache defaults of
build do not apply. Directory entries are dropped (build has none either), so
an archive made by `zip -r` from a tree repacks to the same bytes as a build of
that tree, as long as the tree has no `__pycache__`/`.pyc` files.

Refused, before any output is written: absolute names, `..`, backslashes,
duplicate names after normalization, a name that is both a file and a
directory, encrypted entries, symlink and special-file entries (a link's
target is archive-relative text that would have to be resolved by rules of our
own; unpack, resolve, and use build instead), methods other than
stored/deflated, and likely zip bombs: an entry over RATIO_CHECK_MIN_BYTES
whose declared size exceeds max_ratio times its compressed size, or a total
declared size over max_unzipped_size. While inflating, an entry that grows past
its declared size, or fails its CRC, aborts the repack and removes the output.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from lambda_rules.zipper import pieces
from lambda_rules.zipper.archive import PlannedEntry, write_archive
from lambda_rules.zipper.compress import DEFAULT_LEVEL, effective_level
from lambda_rules.zipper.entry_data import read_entry_data
from lambda_rules.zipper.errors import UnsafeArchiveError
from lambda_rules.zipper.filters import PathFilter
from lambda_rules.zipper.format import METHOD_DEFLATED, METHOD_STORED
from lambda_rules.zipper.names import entry_prefix, normalize_archive_name
from lambda_rules.zipper.pipeline import resolve_workers
from lambda_rules.zipper.reader import ArchiveEntry, read_archive
from lambda_rules.zipper.summary import ZipSummary

DEFAULT_MAX_RATIO = 200
"""Real packages rarely exceed 20:1 per file; deflate's own ceiling is about 1032:1."""

DEFAULT_MAX_UNZIPPED_SIZE = 1 << 30
"""1 GiB: four times Lambda's 250 MB unzipped limit."""

RATIO_CHECK_MIN_BYTES = 1 << 20
"""Entries smaller than this cannot be meaningful bombs, whatever their ratio."""


@dataclass(frozen=True)
class RepackLimits:
    max_ratio: int = DEFAULT_MAX_RATIO
    max_unzipped_size: int = DEFAULT_MAX_UNZIPPED_SIZE


@dataclass(frozen=True)
class ArchiveMember:
    """A file inside the source archive, read and verified by whichever process compresses it."""

    archive: str
    entry: ArchiveEntry

    @property
    def size(self) -> int:
        return self.entry.uncompressed_size

    def read(self) -> bytes:
        with pieces.open_input(self.archive) as f:
            return read_entry_data(f, self.archive, self.entry)


def repack_zip(
    archive: Path,
    out: Path,
    *,
    level: int = DEFAULT_LEVEL,
    store: bool = False,
    excludes: Iterable[str] = (),
    includes: Iterable[str] = (),
    timestamp: int | None = None,
    workers: int | None = None,
    max_workers: int | None = None,
    limits: RepackLimits = RepackLimits(),
    prefix: str = "",
    durable: bool = True,
) -> ZipSummary:
    """Rewrite `archive` into canonical form at `out` (which may be the same path), every entry
    under `prefix` if given (`durable` as for `replaced_atomically`)."""
    compress_level = effective_level(level, store)
    path_filter = PathFilter(excludes, includes, default_excludes=())
    under = entry_prefix(prefix)
    shown = os.fspath(archive)
    parsed = read_archive(archive)
    planned = [
        PlannedEntry(under + p.name, p.executable, p.content)
        for p in _plan_entries(shown, parsed.entries, path_filter, limits)
    ]
    return write_archive(
        Path(out),
        planned,
        level=compress_level,
        timestamp=timestamp,
        workers=resolve_workers(workers, sum(p.content.size for p in planned), max_workers),
        durable=durable,
    )


def safe_entries(archive: Path, limits: RepackLimits = RepackLimits()) -> list[PlannedEntry]:
    """Every file entry of `archive`, name-sorted, after exactly the checks `repack` makes: a
    hostile archive (overlapping entries, bombs, traversal or duplicate names, links, special
    files) is refused with the same message. Contents are read on demand, bounded."""
    shown = os.fspath(archive)
    return _plan_entries(
        shown, read_archive(archive).entries, PathFilter(default_excludes=()), limits
    )


def _plan_entries(
    shown: str, entries: Iterable[ArchiveEntry], path_filter: PathFilter, limits: RepackLimits
) -> list[PlannedEntry]:
    by_name: dict[str, ArchiveEntry] = {}
    planned = []
    total_size = 0
    for entry in entries:
        if entry.is_encrypted:
            raise UnsafeArchiveError(
                f"{shown}: entry {entry.name!r} is encrypted; decrypt the archive first"
            )
        name = normalize_archive_name(entry.name, shown)
        if entry.is_directory:
            continue
        _refuse_unsupported(shown, entry)
        if not name:
            raise UnsafeArchiveError(
                f"{shown}: an entry has an empty name ({entry.name!r}); repack refuses it"
            )
        if name in by_name:
            raise UnsafeArchiveError(
                f"{shown}: entries {by_name[name].name!r} and {entry.name!r} both unpack to "
                f"{name!r}; repack refuses duplicates because readers disagree on which one wins"
            )
        by_name[name] = entry
        if not path_filter.keeps(name):
            continue
        _refuse_bomb(shown, entry, limits)
        total_size += entry.uncompressed_size
        if total_size > limits.max_unzipped_size:
            raise UnsafeArchiveError(
                f"{shown}: declared unzipped size exceeds {limits.max_unzipped_size} bytes at "
                f"entry {entry.name!r}; raise --max-unzipped-size if the archive is trusted"
            )
        mode = entry.unix_mode
        planned.append(PlannedEntry(name, bool(mode and mode & 0o111), ArchiveMember(shown, entry)))
    _refuse_file_directory_clash(shown, by_name)
    return sorted(planned, key=lambda p: p.name.encode("utf-8"))


def _refuse_unsupported(shown: str, entry: ArchiveEntry) -> None:
    if entry.is_symlink:
        raise UnsafeArchiveError(
            f"{shown}: entry {entry.name!r} is a symlink; repack refuses symlinks. Unpack the "
            "archive, replace links by the files they point to, and use `lambda-zip build`."
        )
    mode = entry.unix_mode
    if mode is not None and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise UnsafeArchiveError(
            f"{shown}: entry {entry.name!r} is a special file (mode {mode:o}); repack refuses it"
        )
    if entry.method not in (METHOD_STORED, METHOD_DEFLATED):
        raise UnsafeArchiveError(
            f"{shown}: entry {entry.name!r} uses compression method {entry.method}; "
            "only stored (0) and deflated (8) are supported. Recreate the archive with plain "
            "deflate."
        )


def _refuse_bomb(shown: str, entry: ArchiveEntry, limits: RepackLimits) -> None:
    size = entry.uncompressed_size
    if size > RATIO_CHECK_MIN_BYTES and size > limits.max_ratio * max(entry.compressed_size, 1):
        raise UnsafeArchiveError(
            f"{shown}: entry {entry.name!r} expands {size // max(entry.compressed_size, 1)}:1 "
            f"(limit {limits.max_ratio}:1), a likely zip bomb; raise --max-ratio if the archive "
            "is trusted"
        )


def _refuse_file_directory_clash(shown: str, by_name: dict[str, ArchiveEntry]) -> None:
    for name in by_name:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in by_name:
                raise UnsafeArchiveError(
                    f"{shown}: {parent!r} is both a file and the directory of {name!r}; "
                    "repack refuses it"
                )
