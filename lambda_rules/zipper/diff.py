"""Explaining, entry by entry, why two archives are not byte-identical."""

from __future__ import annotations

import os
from typing import Callable, Iterator

from lambda_rules.zipper.reader import Archive, ArchiveEntry, extra_field_ids, read_archive
from lambda_rules.zipper.summary import file_sha256
from lambda_rules.zipper.timestamps import describe_dos_date_time

_EXTRA_FIELD_NAMES = {
    0x0001: "Zip64",
    0x000A: "NTFS times",
    0x000D: "PKWARE Unix",
    0x5455: "UT extended timestamp",
    0x7855: "Ux Unix uid/gid (old)",
    0x7875: "ux Unix uid/gid",
    0x7075: "up Unicode path",
    0xCAFE: "JAR marker",
    0xD935: "Android alignment",
}
_CREATORS = {0: "MS-DOS", 3: "Unix", 10: "NTFS", 19: "OS X"}
_METHODS = {
    0: "stored",
    8: "deflated",
    9: "deflate64",
    12: "bzip2",
    14: "lzma",
    93: "zstd",
    99: "AES",
}


def diff_archives(a_path: str | os.PathLike[str], b_path: str | os.PathLike[str]) -> list[str]:
    """Human-readable difference lines; empty when the files are byte-identical."""
    if file_sha256(a_path) == file_sha256(b_path):
        return []
    a, b = read_archive(a_path), read_archive(b_path)
    lines = list(_archive_differences(a, b))
    if not lines:
        lines.append(
            "no entry or archive field differs, yet the bytes do: the entries' data or the "
            "layout (offsets, gaps between records) differs"
        )
    return lines


def _archive_differences(a: Archive, b: Archive) -> Iterator[str]:
    if a.size != b.size:
        yield f"archive size: {a.size} vs {b.size} bytes"
    if a.comment != b.comment:
        yield f"archive comment: {a.comment!r} vs {b.comment!r}"
    if a.zip64 != b.zip64:
        yield f"Zip64 end records: {_presence(a.zip64)} vs {_presence(b.zip64)}"
    a_entries, b_entries = _EntriesByName(a), _EntriesByName(b)
    yield from a_entries.duplicates
    yield from b_entries.duplicates
    for name in a_entries.first:
        if name not in b_entries.first:
            yield f"only in {a.path}: {_describe_entry(a_entries.first[name])}"
    for name in b_entries.first:
        if name not in a_entries.first:
            yield f"only in {b.path}: {_describe_entry(b_entries.first[name])}"
    a_order = [name for name in a_entries.first if name in b_entries.first]
    b_order = [name for name in b_entries.first if name in a_entries.first]
    if a_order != b_order:
        position = next(i for i, (x, y) in enumerate(zip(a_order, b_order)) if x != y)
        yield (
            f"entry order differs: shared entry #{position + 1} is {a_order[position]!r} in "
            f"{a.path} but {b_order[position]!r} in {b.path}"
        )
    for name in a_order:
        for difference in _entry_differences(a_entries.first[name], b_entries.first[name], a, b):
            yield f"{name}: {difference}"


class _EntriesByName:
    def __init__(self, archive: Archive) -> None:
        self.first: dict[str, ArchiveEntry] = {}
        counts: dict[str, int] = {}
        for entry in archive.entries:
            self.first.setdefault(entry.name, entry)
            counts[entry.name] = counts.get(entry.name, 0) + 1
        self.duplicates = [
            f"{archive.path} has {count} entries named {name!r} (compared: the first)"
            for name, count in counts.items()
            if count > 1
        ]


def _presence(present: bool) -> str:
    return "present" if present else "absent"


def _describe_entry(entry: ArchiveEntry) -> str:
    kind = "directory entry" if entry.is_directory else f"{entry.uncompressed_size} bytes"
    return f"{entry.name} ({kind})"


def _describe_mode(entry: ArchiveEntry) -> str:
    mode = entry.unix_mode
    if mode is not None:
        return "%o" % mode
    return f"no Unix mode (external attributes {entry.external_attr:#010x})"


def _describe_made_by(entry: ArchiveEntry) -> str:
    creator = _CREATORS.get(entry.creator, f"system {entry.creator}")
    version = entry.version_made_by & 0xFF
    return f"{creator} {version // 10}.{version % 10}"


def _describe_extra(extra: bytes) -> str:
    ids = extra_field_ids(extra)
    if not ids:
        return "none"
    return ", ".join(f"{i:#06x} {_EXTRA_FIELD_NAMES.get(i, 'unknown')}" for i in ids)


def _describe_method(method: int) -> str:
    return _METHODS.get(method, f"method {method}")


def _entry_differences(x: ArchiveEntry, y: ArchiveEntry, a: Archive, b: Archive) -> Iterator[str]:
    def field(label: str, describe: Callable[[ArchiveEntry], object]) -> Iterator[str]:
        if describe(x) != describe(y):
            yield f"{label}: {describe(x)} vs {describe(y)}"

    if x.is_directory != y.is_directory:
        yield f"directory entry in {a.path if x.is_directory else b.path} only"
    if (x.crc32, x.uncompressed_size) != (y.crc32, y.uncompressed_size):
        yield (
            f"content differs: crc32 {x.crc32:08x}, {x.uncompressed_size} bytes vs "
            f"crc32 {y.crc32:08x}, {y.uncompressed_size} bytes"
        )
    yield from field("mode", _describe_mode)
    yield from field("timestamp", lambda e: describe_dos_date_time(e.dos_date, e.dos_time))
    yield from field(
        "local header timestamp",
        lambda e: describe_dos_date_time(e.local.dos_date, e.local.dos_time),
    )
    yield from field("compression method", lambda e: _describe_method(e.method))
    if x.method == y.method and (x.crc32, x.uncompressed_size) == (y.crc32, y.uncompressed_size):
        if x.compressed_size != y.compressed_size:
            yield (
                f"compressed size: {x.compressed_size} vs {y.compressed_size} bytes "
                "(same content, another compressor or level)"
            )
        elif not _same_stored_bytes(a.path, x, b.path, y):
            yield "compressed bytes differ (same content and size: another compressor)"
    yield from field("version made by", _describe_made_by)
    yield from field("version needed", lambda e: e.version_needed)
    yield from field("general purpose flags", lambda e: f"{e.flags:#06x}")
    yield from field("central extra fields", lambda e: _describe_extra(e.extra))
    yield from field("local extra fields", lambda e: _describe_extra(e.local.extra))
    yield from field("data descriptor", lambda e: _presence(bool(e.data_descriptor)))
    yield from field("internal attributes", lambda e: f"{e.internal_attr:#06x}")
    yield from field("entry comment", lambda e: e.comment)
    yield from field("MS-DOS attribute bits", lambda e: f"{e.external_attr & 0xFFFF:#06x}")


def _same_stored_bytes(a_path: str, x: ArchiveEntry, b_path: str, y: ArchiveEntry) -> bool:
    chunk = 1 << 20
    with open(a_path, "rb") as fa, open(b_path, "rb") as fb:
        fa.seek(x.data_offset)
        fb.seek(y.data_offset)
        remaining = x.compressed_size
        while remaining:
            size = min(chunk, remaining)
            if fa.read(size) != fb.read(size):
                return False
            remaining -= size
    return True
