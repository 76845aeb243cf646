"""The canonical archive writer shared by build and repack."""

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
    byte also feeds the SHA-256, so the digest needs no second read.
    """

    def __init__(self, out: BinaryIO, timestamp: int) -> None:
        self._out = out
        self._dos_date, self._dos_time = dos_date_time(timestamp)
        self._offset = 0
        self._central_headers: list[bytes] = []
        self._sha256 = hashlib.sha256()

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._sha256.update(data)
        self._offset += len(data)

    def add(self, name: str, executable: bool, entry: CompressedEntry) -> zf.EntryRecord:
        record = zf.EntryRecord(
            name=zf.encode_name(name),
            executable=executable,
            method=entry.method,
            crc32=entry.crc32,
            compressed_size=len(entry.payload),
            uncompressed_size=entry.uncompressed_size,
            local_header_offset=self._offset,
        )
        self._write(zf.local_file_header(record, self._dos_date, self._dos_time))
        self._write(entry.payload)
        self._central_headers.append(zf.central_directory_header(record, self._dos_date, self._dos_time))
        return record

    def finish(self) -> tuple[bytes, int]:
        """Write the central directory and end records; return (sha256 digest, archive size)."""
        central_directory_offset = self._offset
        for header in self._central_headers:
            self._write(header)
        self._write(
            zf.end_of_archive(
                len(self._central_headers),
                central_directory_offset,
                self._offset - central_directory_offset,
            )
        )
        return self._sha256.digest(), self._offset


def write_archive(
    out: Path,
    entries: Sequence[PlannedEntry],
    *,
    level: int | None,
    timestamp: int | None,
    workers: int,
) -> ZipSummary:
    """Write `entries` (already sorted and unique) in canonical form to `out`, atomically.

    `level` None means store every entry; `timestamp` None means 1980-01-01.
    """
    if not entries:
        raise ZipError(f"{out}: nothing to zip (no files left after filtering); Lambda rejects empty archives")
    epoch = DOS_EPOCH if timestamp is None else timestamp
    summaries = []
    with replaced_atomically(out) as out_file:
        writer = ArchiveWriter(out_file, epoch)
        compressed = compress_all([e.content for e in entries], level, workers)
        with contextlib.closing(compressed):
            for planned, entry in zip(entries, compressed):
                record = writer.add(planned.name, planned.executable, entry)
                summaries.append(
                    EntrySummary(
                        name=planned.name,
                        size=entry.uncompressed_size,
                        mode=stat.S_IMODE(record.unix_mode),
                        crc32=entry.crc32,
                    )
                )
        digest, size = writer.finish()
    sha256_hex, sha256_base64 = sha256_forms(digest)
    return ZipSummary(
        sha256_hex=sha256_hex,
        sha256_base64=sha256_base64,
        zipped_size=size,
        unzipped_size=sum(s.size for s in summaries),
        entry_count=len(summaries),
        entries=tuple(summaries),
    )
