"""One entry's content, read from an archive the reader accepted: bounded and checked.

Inflating uses zlib with a bounded output size; decompression is fully specified by the deflate
format, so zlib's version cannot change the result.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

from lambda_rules.zipper import format as zf
from lambda_rules.zipper.errors import CorruptArchiveError, UnsafeArchiveError
from lambda_rules.zipper.reader import ArchiveEntry

_READ_CHUNK = 1 << 20


def read_entry_data(f: BinaryIO, archive: str, entry: ArchiveEntry) -> bytes:
    """The entry's content, checked against its declared size and CRC.

    Inflation stops one byte past the declared size, so a lying header cannot
    make us allocate more than the caller's size limits already allowed.
    """
    if entry.method == zf.METHOD_STORED:
        if entry.compressed_size != entry.uncompressed_size:
            raise CorruptArchiveError(
                f"{archive}: stored entry {entry.name!r} declares {entry.uncompressed_size} bytes "
                f"but holds {entry.compressed_size}"
            )
        f.seek(entry.data_offset)
        data = f.read(entry.compressed_size)
    elif entry.method == zf.METHOD_DEFLATED:
        data = _inflate(f, archive, entry)
    else:
        raise UnsafeArchiveError(
            f"{archive}: entry {entry.name!r} uses compression method {entry.method}; "
            "only stored (0) and deflated (8) are supported. Recreate the archive with plain "
            "deflate."
        )
    if len(data) != entry.uncompressed_size:
        raise CorruptArchiveError(
            f"{archive}: entry {entry.name!r} holds {len(data)} bytes but declares "
            f"{entry.uncompressed_size}"
        )
    if zlib.crc32(data) != entry.crc32:
        raise CorruptArchiveError(
            f"{archive}: entry {entry.name!r} fails its CRC-32 check (corrupt data)"
        )
    return bytes(data)


def _inflate(f: BinaryIO, archive: str, entry: ArchiveEntry) -> bytearray:
    inflater = zlib.decompressobj(-15)
    output = bytearray()
    limit = entry.uncompressed_size
    f.seek(entry.data_offset)
    unread = entry.compressed_size
    pending = b""
    try:
        while True:
            if not pending and unread:
                pending = f.read(min(_READ_CHUNK, unread))
                unread -= len(pending)
            piece = inflater.decompress(pending, limit + 1 - len(output))
            pending = inflater.unconsumed_tail
            output += piece
            if len(output) > limit:
                raise UnsafeArchiveError(
                    f"{archive}: entry {entry.name!r} inflates past its declared size of {limit} "
                    "bytes; a lying header is a zip-bomb technique, so the archive is refused"
                )
            if inflater.eof or (not piece and not pending and not unread):
                break
    except zlib.error as error:
        raise CorruptArchiveError(
            f"{archive}: entry {entry.name!r} has corrupt deflate data ({error})"
        ) from None
    if not inflater.eof:
        raise CorruptArchiveError(f"{archive}: entry {entry.name!r} has a truncated deflate stream")
    if pending or unread or inflater.unused_data:
        raise CorruptArchiveError(
            f"{archive}: entry {entry.name!r} has bytes after the end of its deflate stream"
        )
    return output
