"""merge_zips: canonical archives of disjoint files into one archive, recompressing nothing.

Each entry is compressed on its own, and its headers depend only on its own
record and offset (format.py). So the canonical archive of a tree is its
entries' payloads in name order under freshly encoded headers, and merging
canonical parts built from disjoint subsets of a tree (at one level and one
timestamp) gives exactly the bytes `build` gives for the whole tree. Payloads
are copied in bounded chunks; only central-directory metadata is kept in memory.

This only holds for canonical parts, so anything else is refused instead of
silently repacked (repack recompresses, which is what merge exists to avoid):
a part's headers and end records must be exactly what format.py encodes for
its parsed records. Payloads are not inflated, so a bad CRC inside a part is
left to readers of the output to find; and the level a part was deflated at is
not visible in its bytes, so building every part at one level is the caller's job.
"""

from __future__ import annotations

import itertools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn, Sequence

from lambda_rules.zipper import format as zf
from lambda_rules.zipper.archive import ArchiveWriter
from lambda_rules.zipper.errors import CorruptArchiveError, ZipError
from lambda_rules.zipper.output import replaced_atomically
from lambda_rules.zipper.summary import ZipSummary
from lambda_rules.zipper.timestamps import describe_dos_date_time

if TYPE_CHECKING:
    from lambda_rules.zipper.reader import ArchiveEntry

COPY_CHUNK = 1 << 20

_LOCAL_FIELDS = (
    "signature",
    "version needed",
    "flags",
    "method",
    "time",
    "date",
    "CRC-32",
    "compressed size",
    "uncompressed size",
    "name length",
    "extra field length",
)
_CENTRAL_FIELDS = (
    "signature",
    "version made by",
    "version needed",
    "flags",
    "method",
    "time",
    "date",
    "CRC-32",
    "compressed size",
    "uncompressed size",
    "name length",
    "extra field length",
    "comment length",
    "disk number",
    "internal attributes",
    "external attributes",
    "local header offset",
)


class NonCanonicalPartError(ZipError):
    """A part is a readable archive, but not byte-for-byte what `lambda-zip build` writes."""


class MergeConflictError(ZipError):
    """Parts that are each canonical cannot be merged: they share a path or differ in timestamp."""


@dataclass(frozen=True)
class PartEntry:
    """An entry of a canonical part: its record at its offset in the part, and its name."""

    name: str
    record: zf.EntryRecord


@dataclass(frozen=True)
class CanonicalPart:
    """A canonical part: its entries (in file order) and its one DOS timestamp."""

    path: str
    dos_date: int
    dos_time: int
    entries: tuple[PartEntry, ...]


def merge_zips(parts: Sequence[Path], out: Path, *, durable: bool = True) -> ZipSummary:
    """Merge canonical `parts` into `out`, atomically (`durable` as for `replaced_atomically`);
    the summary is what build reports."""
    if not parts:
        raise ZipError(f"{out}: no parts to merge; pass archives made by `lambda-zip build`")
    checked = [read_canonical_part(part) for part in parts]
    _refuse_mixed_timestamps(checked)
    ordered = _merged_order(checked)
    dos_date, dos_time = checked[0].dos_date, checked[0].dos_time
    with replaced_atomically(Path(out), durable=durable) as out_file:
        writer = ArchiveWriter(out_file, dos_date, dos_time)
        for part_index, run in itertools.groupby(ordered, key=lambda item: item[0]):
            part = checked[part_index]
            with open(part.path, "rb") as source:
                for block in _blocks([entry for _, entry in run]):
                    first = block[0].record.local_header_offset
                    last = block[-1].record.local_header_offset
                    # A local header's "version needed" says whether its offset needs Zip64: at
                    # or past 4 GiB, in the part or in the output, headers are written afresh.
                    below_zip64 = max(last, writer.offset + last - first) < zf.UINT32_MAX
                    if below_zip64 and (len(block) > 1 or _size(block[0]) <= COPY_CHUNK):
                        data = _read_block(source, part, block)
                        writer.copy_entries([entry.record for entry in block], data)
                        continue
                    for entry in block:
                        _check_local_header(source, part, entry)
                        writer.start_entry(entry.record)
                        _copy_payload(source, part.path, entry, writer)
        return writer.finish()


def _size(entry: PartEntry) -> int:
    """Bytes of the entry in its part: local header, name, payload."""
    record = entry.record
    return zf.LOCAL_FILE_HEADER.size + len(record.name) + record.compressed_size


def _blocks(run: list[PartEntry]) -> list[list[PartEntry]]:
    """Entries that follow each other in the part, up to COPY_CHUNK bytes together (or one larger
    entry): each block is read and written with one call instead of three per entry."""
    blocks: list[list[PartEntry]] = []
    block_bytes = end = 0
    for entry in run:
        size = _size(entry)
        if blocks and entry.record.local_header_offset == end and block_bytes + size <= COPY_CHUNK:
            blocks[-1].append(entry)
            block_bytes += size
        else:
            blocks.append([entry])
            block_bytes = size
        end = entry.record.local_header_offset + size
    return blocks


def _read_block(source: BinaryIO, part: CanonicalPart, block: list[PartEntry]) -> bytes:
    """The block's bytes, with every local header checked against its central record."""
    start = block[0].record.local_header_offset
    length = block[-1].record.local_header_offset + _size(block[-1]) - start
    if source.tell() != start:
        source.seek(start)
    data = source.read(length)
    if len(data) != length:
        raise CorruptArchiveError(
            f"{part.path}: ends inside the data of {block[-1].name!r}; "
            "it changed during the merge, so merge again"
        )
    view = memoryview(data)
    for entry in block:
        expected = zf.local_file_header(entry.record, part.dos_date, part.dos_time)
        at = entry.record.local_header_offset - start
        if view[at : at + len(expected)] != expected:
            _refuse_local_header(part)
    return data


def read_canonical_part(path: Path) -> CanonicalPart:
    """The part's entries, read from its central directory alone; local headers are checked
    while their payloads are copied (`_check_local_header`).

    Hand-written rather than `read_archive`, which checks every record of any archive and, for
    the numpy + pandas parts, took most of a merge's time. A part is canonical exactly when
    re-encoding its records gives its central directory and end records byte for byte (and its
    local headers, as they are copied), so only that is compared. Anything else, Zip64 parts
    included, goes to `check_canonical_part`, which names what differs or reads it in full.
    """
    shown = os.fspath(path)
    end_size = zf.END_OF_CENTRAL_DIRECTORY.size
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < end_size:
            return check_canonical_part(path)
        f.seek(size - end_size)
        end = f.read(end_size)
        _, _, _, _, count, directory_size, directory_offset, _ = zf.END_OF_CENTRAL_DIRECTORY.unpack(
            end
        )
        if count == 0 or directory_offset + directory_size + end_size != size:
            return check_canonical_part(path)
        f.seek(directory_offset)
        directory = f.read(directory_size)
    if len(directory) < zf.CENTRAL_DIRECTORY_HEADER.size or end != zf.end_of_archive(
        count, directory_offset, directory_size
    ):
        return check_canonical_part(path)
    # Every entry of a canonical part carries the first one's timestamp.
    first = zf.CENTRAL_DIRECTORY_HEADER.unpack_from(directory, 0)
    dos_time, dos_date = first[5], first[6]
    entries = _canonical_entries(directory, count, directory_offset, dos_date, dos_time)
    if entries is None:
        return check_canonical_part(path)
    return CanonicalPart(shown, dos_date, dos_time, tuple(entries))


def _canonical_entries(
    directory: bytes, count: int, directory_offset: int, dos_date: int, dos_time: int
) -> list[PartEntry] | None:
    """The entries, if re-encoding them gives `directory` exactly; else None."""
    layout = zf.CENTRAL_DIRECTORY_HEADER
    entries: list[PartEntry] = []
    position = offset = 0
    previous_name = b""
    for _ in range(count):
        if position + layout.size > len(directory):
            return None
        fields = layout.unpack_from(directory, position)
        raw_name = directory[position + layout.size : position + layout.size + fields[10]]
        record = zf.EntryRecord(
            name=raw_name,
            executable=fields[15] >> 16 == zf.EXECUTABLE_FILE_MODE,
            method=fields[4],
            crc32=fields[7],
            compressed_size=fields[8],
            uncompressed_size=fields[9],
            local_header_offset=offset,
        )
        encoded = zf.central_directory_header(record, dos_date, dos_time)
        if (
            directory[position : position + len(encoded)] != encoded
            or raw_name <= previous_name
            or _name_problem(raw_name) is not None
            or record.method not in (zf.METHOD_STORED, zf.METHOD_DEFLATED)
            or (
                record.method == zf.METHOD_STORED
                and record.compressed_size != record.uncompressed_size
            )
        ):
            return None
        entries.append(PartEntry(raw_name.decode("utf-8"), record))
        position += len(encoded)
        offset += zf.LOCAL_FILE_HEADER.size + len(raw_name) + record.compressed_size
        previous_name = raw_name
    if position != len(directory) or offset != directory_offset:
        return None
    return entries


def _check_local_header(source: BinaryIO, part: CanonicalPart, entry: PartEntry) -> None:
    expected = zf.local_file_header(entry.record, part.dos_date, part.dos_time)
    offset = entry.record.local_header_offset
    if source.tell() != offset:
        source.seek(offset)
    if source.read(len(expected)) != expected:
        _refuse_local_header(part)


def _refuse_local_header(part: CanonicalPart) -> NoReturn:
    """A local header differs from what the part's central directory says."""
    check_canonical_part(Path(part.path))  # raises, naming what differs
    raise NonCanonicalPartError(f"{part.path} changed during the merge; merge again")


def check_canonical_part(path: Path) -> CanonicalPart:
    """Parse `path` and check that re-encoding its records reproduces every header byte."""
    # Imported here: the general reader checks any archive, which only a part that fails
    # `read_canonical_part`'s check needs.
    from lambda_rules.zipper.reader import read_archive

    shown = os.fspath(path)
    archive = read_archive(path)

    def refuse(problem: str) -> NonCanonicalPartError:
        return NonCanonicalPartError(
            f"{shown} is not in the canonical form `lambda-zip build` writes ({problem}), so merge "
            f"refuses it. Run `lambda-zip repack {shown} -o FIXED.zip` and merge FIXED.zip instead."
        )

    if not archive.entries:
        raise refuse("it has no entries")
    first = archive.entries[0]
    dos_date, dos_time = first.dos_date, first.dos_time
    offset = 0
    previous = None
    with open(path, "rb") as f:
        for entry in archive.entries:
            problem = _entry_problem(entry, previous, first)
            if problem is None and entry.local_header_offset != offset:
                problem = (
                    f"entry {entry.name!r} starts at offset {entry.local_header_offset}, "
                    f"not right after the previous one ({offset})"
                )
            if problem is None:
                expected = zf.local_file_header(_record(entry, offset), dos_date, dos_time)
                actual = _read_exact(f, shown, offset, entry.data_offset - offset)
                problem = _header_difference(
                    f"local header of {entry.name!r}",
                    zf.LOCAL_FILE_HEADER,
                    _LOCAL_FIELDS,
                    actual,
                    expected,
                )
            if problem is not None:
                raise refuse(problem)
            offset = entry.data_offset + entry.compressed_size
            previous = entry
        if offset != archive.central_directory_offset:
            raise refuse("it has bytes between its last entry and its central directory")
        tail = _read_exact(f, shown, offset, archive.size - offset)
    position = 0
    for entry in archive.entries:
        expected = zf.central_directory_header(
            _record(entry, entry.local_header_offset), dos_date, dos_time
        )
        problem = _header_difference(
            f"central header of {entry.name!r}",
            zf.CENTRAL_DIRECTORY_HEADER,
            _CENTRAL_FIELDS,
            tail[position : position + len(expected)],
            expected,
        )
        if problem is not None:
            raise refuse(problem)
        position += len(expected)
    if tail[position:] != zf.end_of_archive(len(archive.entries), offset, position):
        raise refuse(
            "its end records are not the canonical ones: an archive comment, or Zip64 records "
            "where none are needed"
        )
    entries = tuple(PartEntry(e.name, _record(e, e.local_header_offset)) for e in archive.entries)
    return CanonicalPart(shown, dos_date, dos_time, entries)


def _entry_problem(
    entry: ArchiveEntry, previous: ArchiveEntry | None, first: ArchiveEntry
) -> str | None:
    """What about this entry, beyond its header bytes, build would never write."""
    if entry.is_directory:
        return f"it has a directory entry {entry.name!r}"
    problem = _name_problem(entry.raw_name)
    if problem is not None:
        return problem
    if previous is not None and entry.raw_name == previous.raw_name:
        return f"it holds {entry.name!r} twice"
    if previous is not None and entry.raw_name < previous.raw_name:
        return (
            f"its entries are not sorted by UTF-8 name bytes "
            f"({previous.name!r} comes before {entry.name!r})"
        )
    if (entry.dos_date, entry.dos_time) != (first.dos_date, first.dos_time):
        return (
            f"its entries carry more than one timestamp ({first.name!r}: "
            f"{describe_dos_date_time(first.dos_date, first.dos_time)}, {entry.name!r}: "
            f"{describe_dos_date_time(entry.dos_date, entry.dos_time)})"
        )
    if entry.method not in (zf.METHOD_STORED, zf.METHOD_DEFLATED):
        return f"entry {entry.name!r} uses compression method {entry.method}"
    if entry.method == zf.METHOD_STORED and entry.compressed_size != entry.uncompressed_size:
        return (
            f"stored entry {entry.name!r} holds {entry.compressed_size} bytes "
            f"but declares {entry.uncompressed_size}"
        )
    return None


def _name_problem(raw_name: bytes) -> str | None:
    """Why build would never write this name, if it would not."""
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        return f"entry name {raw_name!r} is not UTF-8"
    segments = name.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\\" in name or "\0" in name:
        return f"entry name {name!r} is not a plain relative path with '/' separators"
    return None


def _header_difference(
    what: str, layout: struct.Struct, fields: Sequence[str], actual: bytes, expected: bytes
) -> str | None:
    """None if the header bytes are canonical, else the first field that differs."""
    if actual == expected:
        return None
    pairs = zip(fields, layout.unpack_from(actual), layout.unpack_from(expected))
    for field, found, wanted in pairs:
        if found != wanted:
            return f"{what}: {field} is {found:#x}, the canonical value is {wanted:#x}"
    return f"{what}: its extra field bytes differ from the canonical ones"


def _record(entry: ArchiveEntry, offset: int) -> zf.EntryRecord:
    """The record build would have written for this entry at `offset`."""
    return zf.EntryRecord(
        name=entry.raw_name,
        executable=entry.external_attr >> 16 == zf.EXECUTABLE_FILE_MODE,
        method=entry.method,
        crc32=entry.crc32,
        compressed_size=entry.compressed_size,
        uncompressed_size=entry.uncompressed_size,
        local_header_offset=offset,
    )


def _refuse_mixed_timestamps(parts: Sequence[CanonicalPart]) -> None:
    first = parts[0]
    for part in parts[1:]:
        if (part.dos_date, part.dos_time) != (first.dos_date, first.dos_time):
            raise MergeConflictError(
                f"{first.path} has timestamp {_timestamp(first)} but {part.path} has "
                f"{_timestamp(part)}; build every part with the same --timestamp "
                "(or SOURCE_DATE_EPOCH)"
            )


def _timestamp(part: CanonicalPart) -> str:
    return describe_dos_date_time(part.dos_date, part.dos_time)


def _merged_order(parts: Sequence[CanonicalPart]) -> list[tuple[int, PartEntry]]:
    """(part index, entry) for every entry, sorted by name bytes; a name in two parts is refused."""
    ordered = sorted(
        ((index, entry) for index, part in enumerate(parts) for entry in part.entries),
        key=lambda item: item[1].record.name,
    )
    for (first_index, first), (second_index, second) in zip(ordered, ordered[1:]):
        if first.record.name == second.record.name:
            raise MergeConflictError(
                f"{first.name!r} is in both {parts[first_index].path} and "
                f"{parts[second_index].path}; every path must come from exactly one part, so "
                "split the tree into disjoint subsets"
            )
    return ordered


def _copy_payload(source: BinaryIO, shown: str, entry: PartEntry, writer: ArchiveWriter) -> None:
    """Copy the payload that follows the local header just read."""
    remaining = entry.record.compressed_size
    while remaining:
        chunk = source.read(min(COPY_CHUNK, remaining))
        if not chunk:
            raise CorruptArchiveError(
                f"{shown}: ends inside the data of {entry.name!r}; "
                "it changed during the merge, so merge again"
            )
        writer.write_payload(chunk)
        remaining -= len(chunk)


def _read_exact(f: BinaryIO, shown: str, offset: int, length: int) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise CorruptArchiveError(f"{shown}: truncated at offset {offset + len(data)}")
    return data
