"""Strict reading of existing archives, for repack and diff.

We parse the records ourselves instead of using `zipfile` because repack must
refuse what `zipfile` tolerates: prepended or trailing bytes, local headers
that disagree with the central directory, overlapping entries (the core of
non-recursive zip bombs), entries inflating past their declared size.
Reading an entry's content is in entry_data.py.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from lambda_rules.zipper import format as zf
from lambda_rules.zipper import pieces
from lambda_rules.zipper.errors import CorruptArchiveError, UnsafeArchiveError

_MSDOS_DIRECTORY_ATTRIBUTE = 0x10
_METHOD_AES = 99


@dataclass(frozen=True)
class LocalHeader:
    """A local file header as written, Zip64 sizes resolved."""

    version_needed: int
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    extra: bytes


@dataclass(frozen=True)
class ArchiveEntry:
    """One entry: its central directory record, its local header, and where its data is."""

    raw_name: bytes
    name: str
    version_made_by: int
    version_needed: int
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    internal_attr: int
    external_attr: int
    local_header_offset: int
    extra: bytes
    comment: bytes
    local: LocalHeader
    data_offset: int
    data_descriptor: bytes

    @property
    def creator(self) -> int:
        return self.version_made_by >> 8

    @property
    def unix_mode(self) -> int | None:
        """The Unix mode from the external attributes, when the creator is Unix and set one."""
        mode = self.external_attr >> 16
        return mode if self.creator == zf.CREATOR_UNIX and mode else None

    @property
    def is_directory(self) -> bool:
        mode = self.unix_mode
        return (
            self.name.endswith("/")
            or (mode is not None and stat.S_ISDIR(mode))
            or bool(self.external_attr & _MSDOS_DIRECTORY_ATTRIBUTE)
        )

    @property
    def is_symlink(self) -> bool:
        mode = self.unix_mode
        return mode is not None and stat.S_ISLNK(mode)

    @property
    def is_encrypted(self) -> bool:
        return bool(self.flags & (zf.FLAG_ENCRYPTED | zf.FLAG_STRONG_ENCRYPTION)) or (
            self.method == _METHOD_AES
        )

    @property
    def end_offset(self) -> int:
        return self.data_offset + self.compressed_size + len(self.data_descriptor)


@dataclass(frozen=True)
class Archive:
    """A parsed archive: entries in central directory order, plus archive-level fields."""

    path: str
    size: int
    entries: tuple[ArchiveEntry, ...]
    comment: bytes
    zip64: bool
    central_directory_offset: int


def read_archive(path: str | os.PathLike[str]) -> Archive:
    """Parse and cross-check every record of the archive at `path`, a file or a directory of its
    pieces (data is not inflated)."""
    shown = os.fspath(path)
    with pieces.open_input(path) as f:
        return _ArchiveParser(f, shown, pieces.input_size(f)).parse()


class _ArchiveParser:
    def __init__(self, f: BinaryIO, shown: str, size: int) -> None:
        self.f = f
        self.shown = shown
        self.size = size

    def corrupt(self, what: str) -> CorruptArchiveError:
        return CorruptArchiveError(f"{self.shown}: {what}")

    def read_at(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise self.corrupt(
                f"{what} at offset {offset} lies past the end of the file (truncated?)"
            )
        self.f.seek(offset)
        data = self.f.read(length)
        if len(data) != length:
            raise self.corrupt(f"{what} at offset {offset} is truncated")
        return data

    def parse(self) -> Archive:
        end_offset, end_record, comment = self.find_end_record()
        (_, disk, cd_disk, count_on_disk, count, cd_size, cd_offset, _) = end_record
        zip64 = False
        central_end = end_offset
        locator_offset = end_offset - zf.ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR.size
        if locator_offset >= 0:
            locator = zf.ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR.unpack(
                self.read_at(
                    locator_offset, zf.ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR.size, "Zip64 locator"
                )
            )
            if locator[0] == zf.ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR_SIGNATURE:
                zip64 = True
                record_offset = locator[2]
                record = zf.ZIP64_END_OF_CENTRAL_DIRECTORY.unpack(
                    self.read_at(
                        record_offset, zf.ZIP64_END_OF_CENTRAL_DIRECTORY.size, "Zip64 end record"
                    )
                )
                if record[0] != zf.ZIP64_END_OF_CENTRAL_DIRECTORY_SIGNATURE:
                    raise self.corrupt(f"no Zip64 end record at offset {record_offset}")
                if record_offset + 12 + record[1] != locator_offset:
                    raise self.corrupt("Zip64 end record and locator are not adjacent")
                (_, _, _, _, disk, cd_disk, count_on_disk, count, cd_size, cd_offset) = record
                central_end = record_offset
        if disk != 0 or cd_disk != 0 or count_on_disk != count:
            raise self.corrupt(
                "is a split (multi-disk) archive; join the parts into one file first"
            )
        if cd_offset + cd_size != central_end:
            raise self.corrupt(
                f"central directory ({cd_size} bytes at offset {cd_offset}) does not end where the "
                f"end record starts ({central_end}): truncated, or bytes were prepended or inserted"
            )
        entries = self.parse_central_directory(cd_offset, cd_size, count)
        self.check_no_overlap(entries, cd_offset)
        return Archive(
            path=self.shown,
            size=self.size,
            entries=tuple(entries),
            comment=comment,
            zip64=zip64,
            central_directory_offset=cd_offset,
        )

    def find_end_record(self) -> tuple[int, tuple[int, ...], bytes]:
        """Locate the end record: the last signature whose comment reaches exactly to EOF."""
        tail_length = min(self.size, zf.END_OF_CENTRAL_DIRECTORY.size + zf.UINT16_MAX)
        tail = self.read_at(self.size - tail_length, tail_length, "end of archive")
        signature = struct.pack("<I", zf.END_OF_CENTRAL_DIRECTORY_SIGNATURE)
        position = tail.rfind(signature)
        while position >= 0:
            if position + zf.END_OF_CENTRAL_DIRECTORY.size <= tail_length:
                record = zf.END_OF_CENTRAL_DIRECTORY.unpack_from(tail, position)
                comment_start = position + zf.END_OF_CENTRAL_DIRECTORY.size
                if comment_start + record[7] == tail_length:
                    offset = self.size - tail_length + position
                    return offset, record, tail[comment_start:]
            position = tail.rfind(signature, 0, position)
        raise self.corrupt(
            "no end-of-central-directory record: not a ZIP archive, truncated, or has trailing "
            "bytes"
        )

    def parse_central_directory(
        self, cd_offset: int, cd_size: int, count: int
    ) -> list[ArchiveEntry]:
        directory = self.read_at(cd_offset, cd_size, "central directory")
        entries = []
        position = 0
        header = zf.CENTRAL_DIRECTORY_HEADER
        for index in range(count):
            if position + header.size > cd_size:
                raise self.corrupt(f"central directory ends after {index} of {count} entries")
            fields = header.unpack_from(directory, position)
            if fields[0] != zf.CENTRAL_DIRECTORY_HEADER_SIGNATURE:
                raise self.corrupt(f"bad central directory signature for entry {index}")
            (
                _,
                made_by,
                needed,
                flags,
                method,
                dos_time,
                dos_date,
                crc,
                csize,
                usize,
                name_length,
                extra_length,
                comment_length,
                disk_start,
                internal_attr,
                external_attr,
                local_offset,
            ) = fields
            name_start = position + header.size
            extra_start = name_start + name_length
            comment_start = extra_start + extra_length
            position = comment_start + comment_length
            if position > cd_size:
                raise self.corrupt(f"central directory entry {index} runs past the directory")
            raw_name = directory[name_start:extra_start]
            extra = directory[extra_start:comment_start]
            name = self.decode_name(raw_name, flags)
            zip64_values = _zip64_extra_values(extra, self.corrupt, name)
            usize, csize, local_offset, disk_start = _resolve_zip64(
                (usize, csize, local_offset, disk_start), zip64_values, self.corrupt, name
            )
            if disk_start != 0:
                raise self.corrupt(
                    f"entry {name!r} starts on disk {disk_start}: split archives are unsupported"
                )
            entries.append(
                self.with_local_header(
                    raw_name=raw_name,
                    name=name,
                    version_made_by=made_by,
                    version_needed=needed,
                    flags=flags,
                    method=method,
                    dos_time=dos_time,
                    dos_date=dos_date,
                    crc32=crc,
                    compressed_size=csize,
                    uncompressed_size=usize,
                    internal_attr=internal_attr,
                    external_attr=external_attr,
                    local_header_offset=local_offset,
                    extra=extra,
                    comment=directory[comment_start:position],
                )
            )
        if position != cd_size:
            raise self.corrupt(
                f"central directory has {cd_size - position} bytes after its {count} entries"
            )
        return entries

    def decode_name(self, raw_name: bytes, flags: int) -> str:
        """UTF-8 when flagged; otherwise UTF-8 if it decodes, else CP437 (the historical
        default)."""
        try:
            return raw_name.decode("utf-8")
        except UnicodeDecodeError:
            if flags & zf.FLAG_UTF8:
                raise self.corrupt(f"entry name {raw_name!r} is flagged UTF-8 but is not") from None
            return raw_name.decode("cp437")

    def with_local_header(self, **central: Any) -> ArchiveEntry:
        """Read the entry's local header, check it against the central fields, and combine both."""
        name = central["name"]
        offset = central["local_header_offset"]
        fixed = zf.LOCAL_FILE_HEADER.unpack(
            self.read_at(offset, zf.LOCAL_FILE_HEADER.size, f"local header of {name!r}")
        )
        (
            signature,
            needed,
            flags,
            method,
            dos_time,
            dos_date,
            crc,
            csize,
            usize,
            name_length,
            extra_length,
        ) = fixed
        if signature != zf.LOCAL_FILE_HEADER_SIGNATURE:
            raise self.corrupt(f"bad local header signature for entry {name!r} at offset {offset}")
        variable = self.read_at(
            offset + zf.LOCAL_FILE_HEADER.size,
            name_length + extra_length,
            f"local header of {name!r}",
        )
        if variable[:name_length] != central["raw_name"]:
            raise self.corrupt(
                f"local header name {variable[:name_length]!r} differs from central directory "
                f"name {name!r}"
            )
        extra = variable[name_length:]
        usize, csize, _, _ = _resolve_zip64(
            (usize, csize, 0, 0), _zip64_extra_values(extra, self.corrupt, name), self.corrupt, name
        )
        if (flags, method) != (central["flags"], central["method"]):
            raise self.corrupt(
                f"entry {name!r}: local header (flags {flags:#06x}, method {method}) disagrees "
                f"with central directory (flags {central['flags']:#06x}, "
                f"method {central['method']})"
            )
        local = LocalHeader(needed, flags, method, dos_time, dos_date, crc, csize, usize, extra)
        data_offset = offset + zf.LOCAL_FILE_HEADER.size + name_length + extra_length
        central_values = (
            central["crc32"],
            central["compressed_size"],
            central["uncompressed_size"],
        )
        descriptor = b""
        if flags & zf.FLAG_DATA_DESCRIPTOR:
            # The descriptor holds the real values; writers zero some local fields (Info-ZIP -fd
            # keeps the size).
            if any(
                value not in (0, expected)
                for value, expected in zip((crc, csize, usize), central_values)
            ):
                raise self.corrupt(
                    f"entry {name!r}: local header CRC/sizes disagree with central directory"
                )
            descriptor = self.read_data_descriptor(
                name, data_offset + central["compressed_size"], central_values
            )
        elif (crc, csize, usize) != central_values:
            raise self.corrupt(
                f"entry {name!r}: local header (crc {crc:#010x}, sizes {csize}/{usize}) disagrees "
                "with central directory (crc %#010x, sizes %d/%d)" % central_values
            )
        return ArchiveEntry(
            local=local, data_offset=data_offset, data_descriptor=descriptor, **central
        )

    def read_data_descriptor(self, name: str, offset: int, expected: tuple[int, int, int]) -> bytes:
        """The descriptor after the data: optional signature, CRC, then 4- or 8-byte sizes."""
        for length in (16, 24, 12, 20):
            if offset + length > self.size:
                continue
            raw = self.read_at(offset, length, f"data descriptor of {name!r}")
            body = raw
            if length in (16, 24):
                if struct.unpack_from("<I", raw)[0] != zf.DATA_DESCRIPTOR_SIGNATURE:
                    continue
                body = raw[4:]
            size_format = "<IQQ" if len(body) == 20 else "<III"
            if struct.unpack(size_format, body) == expected:
                return raw
        raise self.corrupt(
            f"entry {name!r}: data descriptor missing or disagrees with central directory"
        )

    def check_no_overlap(self, entries: list[ArchiveEntry], cd_offset: int) -> None:
        by_offset = sorted(entries, key=lambda e: (e.local_header_offset, e.end_offset))
        for entry in by_offset:
            if entry.end_offset > cd_offset:
                raise self.corrupt(f"data of entry {entry.name!r} runs into the central directory")
        for first, second in zip(by_offset, by_offset[1:]):
            if first.end_offset > second.local_header_offset:
                raise UnsafeArchiveError(
                    f"{self.shown}: entries {first.name!r} and {second.name!r} share bytes; "
                    "overlapping entries are a zip-bomb technique, so the archive is refused"
                )


def _zip64_extra_values(
    extra: bytes, corrupt: Callable[[str], Exception], name: str
) -> bytes | None:
    """The payload of the Zip64 extra field, if any; malformed extra blocks are errors."""
    position = 0
    found = None
    while position < len(extra):
        if position + zf.EXTRA_FIELD_HEADER.size > len(extra):
            raise corrupt(f"entry {name!r} has a malformed extra field block")
        field_id, length = zf.EXTRA_FIELD_HEADER.unpack_from(extra, position)
        start = position + zf.EXTRA_FIELD_HEADER.size
        position = start + length
        if position > len(extra):
            raise corrupt(f"entry {name!r} has an extra field running past its block")
        if field_id == zf.ZIP64_EXTRA_FIELD_ID:
            found = extra[start:position]
    return found


def _resolve_zip64(
    values: tuple[int, ...],
    zip64_payload: bytes | None,
    corrupt: Callable[[str], Exception],
    name: str,
) -> tuple[int, ...]:
    """Replace sentinel fields, in APPNOTE order, with the values from the Zip64 extra field."""
    sentinels = (zf.UINT32_MAX, zf.UINT32_MAX, zf.UINT32_MAX, zf.UINT16_MAX)
    widths = (8, 8, 8, 4)
    resolved = []
    position = 0
    for value, sentinel, width in zip(values, sentinels, widths):
        if value == sentinel and zip64_payload is not None:
            if position + width > len(zip64_payload):
                raise corrupt(f"entry {name!r}: Zip64 extra field is too short")
            value = int.from_bytes(zip64_payload[position : position + width], "little")
            position += width
        resolved.append(value)
    return tuple(resolved)


def extra_field_ids(extra: bytes) -> tuple[int, ...]:
    """The header IDs in an extra block (already validated by read_archive)."""
    ids = []
    position = 0
    while position + zf.EXTRA_FIELD_HEADER.size <= len(extra):
        field_id, length = zf.EXTRA_FIELD_HEADER.unpack_from(extra, position)
        ids.append(field_id)
        position += zf.EXTRA_FIELD_HEADER.size + length
    return tuple(ids)
