"""The canonical archive writer shared by build, repack and merge."""

from __future__ import annotations

import contextlib
import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from lambda_rules.zipper import format as zf
from lambda_rules.zipper.compress import CompressedEntry
from lambda_rules.zipper.errors import ZipError
from lambda_rules.zipper.output import replaced_atomically
from lambda_rules.zipper.pipeline import Content, compress_all
from lambda_rules.zipper.summary import EntrySummary, ZipSummary, sha256_forms
from lambda_rules.zipper.timestamps import DOS_EPOCH, dos_date_time


@dataclass(frozen=True)
class PlannedEntry:
    """An entry to write: its final name, exec bit, and where its content comes from."""

    name: str
    executable: bool
    content: Content


class ArchiveWriter:
    """Streams entries (local header, then payload) and ends with the central directory.

    Offsets are counted here rather than asked of the file, and every written
    byte also feeds the SHA-256, so the digest needs no second read. Build and
    repack hand over whole payloads (`add`); merge streams copied ones
    (`start_entry`, then `write_payload` in chunks).
    """

    def __init__(self, out: BinaryIO, dos_date: int, dos_time: int) -> None:
        self._out = out
        self._dos_date, self._dos_time = dos_date, dos_time
        self._offset = 0
        self._central_headers: list[bytes] = []
        self._entries: list[EntrySummary] = []
        self._sha256 = hashlib.sha256()

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._sha256.update(data)
        self._offset += len(data)

    @property
    def offset(self) -> int:
        """Where the next entry starts."""
        return self._offset

    def start_entry(self, record: zf.EntryRecord) -> zf.EntryRecord:
        """Write `record`'s local header at the current offset; its payload must follow."""
        placed = self._place(record, self._offset)
        self._write(zf.local_file_header(placed, self._dos_date, self._dos_time))
        return placed

    def copy_entries(self, records: Sequence[zf.EntryRecord], data: bytes) -> None:
        """Write whole entries copied from a canonical part at this writer's timestamp: `data`
        holds their local headers and payloads back to back, exactly as `start_entry` and
        `write_payload` would write them, and starts at `records[0]`'s offset in the part."""
        shift = self._offset - records[0].local_header_offset
        for record in records:
            self._place(record, record.local_header_offset + shift)
        self._write(data)

    def _place(self, record: zf.EntryRecord, offset: int) -> zf.EntryRecord:
        """Record an entry written at `offset` for the central directory and the summary."""
        placed = zf.EntryRecord(
            record.name,
            record.executable,
            record.method,
            record.crc32,
            record.compressed_size,
            record.uncompressed_size,
            local_header_offset=offset,
        )
        self._central_headers.append(
            zf.central_directory_header(placed, self._dos_date, self._dos_time)
        )
        self._entries.append(
            EntrySummary(
                name=placed.name.decode("utf-8"),
                size=placed.uncompressed_size,
                mode=stat.S_IMODE(placed.unix_mode),
                crc32=placed.crc32,
            )
        )
        return placed

    def write_payload(self, data: bytes) -> None:
        self._write(data)

    def add(self, name: str, executable: bool, entry: CompressedEntry) -> zf.EntryRecord:
        record = self.start_entry(
            zf.EntryRecord(
                name=zf.encode_name(name),
                executable=executable,
                method=entry.method,
                crc32=entry.crc32,
                compressed_size=len(entry.payload),
                uncompressed_size=entry.uncompressed_size,
                local_header_offset=0,
            )
        )
        self._write(entry.payload)
        return record

    def finish(self) -> ZipSummary:
        """Write the central directory and end records; summarise what was written."""
        central_directory_offset = self._offset
        self._write(b"".join(self._central_headers))
        self._write(
            zf.end_of_archive(
                len(self._central_headers),
                central_directory_offset,
                self._offset - central_directory_offset,
            )
        )
        sha256_hex, sha256_base64 = sha256_forms(self._sha256.digest())
        return ZipSummary(
            sha256_hex=sha256_hex,
            sha256_base64=sha256_base64,
            zipped_size=self._offset,
            unzipped_size=sum(e.size for e in self._entries),
            entry_count=len(self._entries),
            entries=tuple(self._entries),
        )


def write_archive(
    out: Path,
    entries: Sequence[PlannedEntry],
    *,
    level: int | None,
    timestamp: int | None,
    workers: int,
    durable: bool = True,
) -> ZipSummary:
    """Write `entries` (already sorted and unique) in canonical form to `out`, atomically.

    `level` None means store every entry; `timestamp` None means 1980-01-01; `durable` as for
    `replaced_atomically`.
    """
    if not entries:
        raise ZipError(
            f"{out}: nothing to zip (no files left after filtering); Lambda rejects empty archives"
        )
    with replaced_atomically(out, durable=durable) as out_file:
        return write_archive_to(
            out_file, entries, level=level, timestamp=timestamp, workers=workers
        )


def write_archive_to(
    out_file: BinaryIO,
    entries: Sequence[PlannedEntry],
    *,
    level: int | None,
    timestamp: int | None,
    workers: int,
) -> ZipSummary:
    """`write_archive` into an open file (or pieces): the caller makes it appear whole, and
    gives at least one entry."""
    epoch = DOS_EPOCH if timestamp is None else timestamp
    writer = ArchiveWriter(out_file, *dos_date_time(epoch))
    compressed = compress_all([e.content for e in entries], level, workers)
    with contextlib.closing(compressed):
        for planned, entry in zip(entries, compressed):
            writer.add(planned.name, planned.executable, entry)
    return writer.finish()
