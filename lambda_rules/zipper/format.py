"""ZIP record layouts (PKWARE APPNOTE 6.3.x) and encoders for the canonical form.

Every byte the writer emits is decided here. The canonical form is:
- creator "Unix" (3), version made by and needed 2.0 (20), or 4.5 (45) for an
  entry that needs Zip64 fields;
- general purpose flags: only bit 11 (names are UTF-8), always set, because every
  name we write is UTF-8 and a constant flag keeps all headers alike;
- one DOS timestamp for all entries;
- no extra fields except the Zip64 one when a size or offset needs it, no data
  descriptors, no comments, internal attributes 0;
- external attributes: the Unix mode in the high 16 bits, low 16 bits 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lambda_rules.zipper.errors import FormatLimitError

LOCAL_FILE_HEADER = struct.Struct("<IHHHHHIIIHH")
CENTRAL_DIRECTORY_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
END_OF_CENTRAL_DIRECTORY = struct.Struct("<IHHHHIIH")
ZIP64_END_OF_CENTRAL_DIRECTORY = struct.Struct("<IQHHIIQQQQ")
ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR = struct.Struct("<IIQI")
EXTRA_FIELD_HEADER = struct.Struct("<HH")

LOCAL_FILE_HEADER_SIGNATURE = 0x04034B50
CENTRAL_DIRECTORY_HEADER_SIGNATURE = 0x02014B50
END_OF_CENTRAL_DIRECTORY_SIGNATURE = 0x06054B50
ZIP64_END_OF_CENTRAL_DIRECTORY_SIGNATURE = 0x06064B50
ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR_SIGNATURE = 0x07064B50
DATA_DESCRIPTOR_SIGNATURE = 0x08074B50
ZIP64_EXTRA_FIELD_ID = 0x0001

METHOD_STORED = 0
METHOD_DEFLATED = 8

FLAG_ENCRYPTED = 0x0001
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800

CREATOR_UNIX = 3
VERSION_DEFAULT = 20
VERSION_ZIP64 = 45

UINT16_MAX = 0xFFFF
UINT32_MAX = 0xFFFFFFFF

REGULAR_FILE_MODE = 0o100644
EXECUTABLE_FILE_MODE = 0o100755


@dataclass(frozen=True)
class EntryRecord:
    """What the writer needs to know about one entry to emit both of its headers."""

    name: bytes
    executable: bool
    method: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    local_header_offset: int

    @property
    def needs_zip64(self) -> bool:
        return (
            self.compressed_size >= UINT32_MAX
            or self.uncompressed_size >= UINT32_MAX
            or self.local_header_offset >= UINT32_MAX
        )

    @property
    def version(self) -> int:
        return VERSION_ZIP64 if self.needs_zip64 else VERSION_DEFAULT

    @property
    def unix_mode(self) -> int:
        return EXECUTABLE_FILE_MODE if self.executable else REGULAR_FILE_MODE


def encode_name(name: str) -> bytes:
    """UTF-8 bytes of an entry name, refusing names the 16-bit length field cannot hold."""
    encoded = name.encode("utf-8")
    if len(encoded) > UINT16_MAX:
        raise FormatLimitError(
            f"{name[:80]}...: name is {len(encoded)} bytes; ZIP names are limited to 65535 bytes"
        )
    return encoded


def _extra_field(field_id: int, payload: bytes) -> bytes:
    return EXTRA_FIELD_HEADER.pack(field_id, len(payload)) + payload


def _size_field(value: int) -> int:
    """The 32-bit header value for a size or offset: itself, or the Zip64 sentinel."""
    return UINT32_MAX if value >= UINT32_MAX else value


def local_file_header(record: EntryRecord, dos_date: int, dos_time: int) -> bytes:
    """Local header; with Zip64 it carries both sizes, as APPNOTE 4.5.3 requires."""
    sizes_need_zip64 = (
        record.compressed_size >= UINT32_MAX or record.uncompressed_size >= UINT32_MAX
    )
    if sizes_need_zip64:
        extra = _extra_field(
            ZIP64_EXTRA_FIELD_ID,
            struct.pack("<QQ", record.uncompressed_size, record.compressed_size),
        )
        compressed_size = uncompressed_size = UINT32_MAX
    else:
        extra = b""
        compressed_size = record.compressed_size
        uncompressed_size = record.uncompressed_size
    header = LOCAL_FILE_HEADER.pack(
        LOCAL_FILE_HEADER_SIGNATURE,
        record.version,
        FLAG_UTF8,
        record.method,
        dos_time,
        dos_date,
        record.crc32,
        compressed_size,
        uncompressed_size,
        len(record.name),
        len(extra),
    )
    return header + record.name + extra


def central_directory_header(record: EntryRecord, dos_date: int, dos_time: int) -> bytes:
    """Central header; its Zip64 extra holds exactly the fields that overflowed, in APPNOTE
    order."""
    zip64_values = [
        value
        for value in (
            record.uncompressed_size,
            record.compressed_size,
            record.local_header_offset,
        )
        if value >= UINT32_MAX
    ]
    extra = (
        _extra_field(ZIP64_EXTRA_FIELD_ID, struct.pack("<%dQ" % len(zip64_values), *zip64_values))
        if zip64_values
        else b""
    )
    header = CENTRAL_DIRECTORY_HEADER.pack(
        CENTRAL_DIRECTORY_HEADER_SIGNATURE,
        (CREATOR_UNIX << 8) | record.version,
        record.version,
        FLAG_UTF8,
        record.method,
        dos_time,
        dos_date,
        record.crc32,
        _size_field(record.compressed_size),
        _size_field(record.uncompressed_size),
        len(record.name),
        len(extra),
        0,  # file comment length
        0,  # disk number start
        0,  # internal attributes
        record.unix_mode << 16,
        _size_field(record.local_header_offset),
    )
    return header + record.name + extra


def end_of_archive(
    entry_count: int, central_directory_offset: int, central_directory_size: int
) -> bytes:
    """End-of-central-directory record, preceded by the Zip64 record and locator when needed.

    Only the fields that overflow are set to their sentinel (APPNOTE 4.4.1.4).
    """
    count_overflows = entry_count >= UINT16_MAX
    size_overflows = central_directory_size >= UINT32_MAX
    offset_overflows = central_directory_offset >= UINT32_MAX
    zip64 = b""
    if count_overflows or size_overflows or offset_overflows:
        zip64_record_offset = central_directory_offset + central_directory_size
        zip64 = ZIP64_END_OF_CENTRAL_DIRECTORY.pack(
            ZIP64_END_OF_CENTRAL_DIRECTORY_SIGNATURE,
            ZIP64_END_OF_CENTRAL_DIRECTORY.size - 12,  # size of the rest of this record
            (CREATOR_UNIX << 8) | VERSION_ZIP64,
            VERSION_ZIP64,
            0,  # number of this disk
            0,  # disk where the central directory starts
            entry_count,
            entry_count,
            central_directory_size,
            central_directory_offset,
        ) + ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR.pack(
            ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR_SIGNATURE,
            0,  # disk holding the Zip64 record
            zip64_record_offset,
            1,  # total number of disks
        )
    count_field = UINT16_MAX if count_overflows else entry_count
    return zip64 + END_OF_CENTRAL_DIRECTORY.pack(
        END_OF_CENTRAL_DIRECTORY_SIGNATURE,
        0,  # number of this disk
        0,  # disk where the central directory starts
        count_field,
        count_field,
        _size_field(central_directory_size),
        _size_field(central_directory_offset),
        0,  # archive comment length
    )
