"""A large file handed from one Pants process to the next as a directory of pieces.

Pants 2.17 stores each output file of a process: one of 512 KiB or more (`LARGE_FILE_SIZE_LIMIT`
in src/rust/engine/fs/store/src/local.rs) it hashes, copies into its file store through tokio in
8 KiB steps (`hashing::async_verified_copy`) and hashes again; a smaller one it puts in LMDB. The
resolve hands on 103 MB of unit archives for numpy + pandas: about 0.9 s to store as files on 2
cores, 0.4 s as pieces (workunits of a process writing 100 MB either way). So the resolve writes
each unit's archive as pieces, and the processes that read it read the pieces where they are.

`ARCHIVE.pieces/` holds `000000`, `000001`, ...: concatenated in that order, they are ARCHIVE.
Every piece but the last is `PIECE_BYTES` long, so a reader finds any offset without listing the
directory. Standard library only: the bytecode compiler, which runs on the Lambda runtime's
CPython, reads pieces too.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

SUFFIX = ".pieces"
# One byte below Pants' `LARGE_FILE_SIZE_LIMIT` (512 KiB), from which it stores files apart.
PIECE_BYTES = 512 * 1024 - 1


class PiecesError(OSError):
    """A directory named as pieces that does not hold them as this module writes them."""


def is_pieces(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).rstrip("/").endswith(SUFFIX) and os.path.isdir(path)


def _piece(directory: str, index: int) -> str:
    return os.path.join(directory, f"{index:06d}")


class _PiecesWriter(io.RawIOBase):
    """Writes a stream into a new directory of pieces."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self._directory = os.fspath(directory)
        os.mkdir(self._directory)
        self._index = 0
        self._piece: BinaryIO | None = None
        self._room = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            if self._piece is None or self._room == 0:
                self._next_piece()
            assert self._piece is not None
            chunk = view[written : written + self._room]
            self._piece.write(chunk)
            self._room -= len(chunk)
            written += len(chunk)
        return written

    def _next_piece(self) -> None:
        if self._piece is not None:
            self._piece.close()
        self._piece = open(_piece(self._directory, self._index), "wb")  # noqa: SIM115
        self._index += 1
        self._room = PIECE_BYTES

    def close(self) -> None:
        if not self.closed:
            if self._piece is None:
                self._next_piece()  # an empty stream is one empty piece
            assert self._piece is not None
            self._piece.close()
        super().close()


class _PiecesReader(io.RawIOBase):
    """Reads a directory of pieces as one seekable file, opening only the pieces it reads."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self._directory = directory
        self._position = 0
        self._size: int | None = None
        self._fds: dict[int, int] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        if self._size is None:
            names = sorted(os.listdir(self._directory))
            if not names or names != [f"{index:06d}" for index in range(len(names))]:
                raise PiecesError(
                    f"{self._directory}: not a directory of pieces (000000, 000001, ...)"
                )
            sizes = [os.stat(_piece(self._directory, i)).st_size for i in range(len(names))]
            if any(size != PIECE_BYTES for size in sizes[:-1]) or sizes[-1] > PIECE_BYTES:
                raise PiecesError(
                    f"{self._directory}: every piece but the last must be {PIECE_BYTES} bytes"
                )
            self._size = sum(sizes)
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position}.get(whence)
        position = (self.size() if base is None else base) + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            index, offset = divmod(self._position, PIECE_BYTES)
            fd = self._open(index)
            if fd is None:
                break
            wanted = min(len(view) - filled, PIECE_BYTES - offset)
            data = os.pread(fd, wanted, offset)
            got = len(data)
            view[filled : filled + got] = data
            filled += got
            self._position += got
            if got < wanted:
                break  # the last piece ends here
        return filled

    def _open(self, index: int) -> int | None:
        if index not in self._fds:
            try:
                self._fds[index] = os.open(_piece(self._directory, index), os.O_RDONLY)
            except FileNotFoundError:
                return None
        return self._fds[index]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        super().close()


def create(directory: str | os.PathLike[str]) -> BinaryIO:
    """A new directory of pieces, `ARCHIVE.pieces/`, open for writing ARCHIVE into."""
    return io.BufferedWriter(_PiecesWriter(directory))


def open_input(path: str | os.PathLike[str]) -> BinaryIO:
    """`path` opened for reading: a file, or a directory of pieces (`ARCHIVE.pieces/`)."""
    if is_pieces(path):
        return io.BufferedReader(_PiecesReader(os.fspath(path)))
    return open(path, "rb")  # noqa: SIM115


def input_size(f: BinaryIO) -> int:
    """The size of a file `open_input` opened, its position left at the start."""
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    return size
