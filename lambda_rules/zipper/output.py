"""Writing an output file so that it either appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from lambda_rules.zipper.errors import ZipError

OUTPUT_MODE = 0o644


@contextlib.contextmanager
def replaced_atomically(destination: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a temp file next to `destination`; on success fsync it (unless not `durable`) and
    rename it into place.

    On any exception, KeyboardInterrupt included, the temp file is removed and
    an existing `destination` is left untouched. The mode is set explicitly,
    so the umask never leaks into the output. `durable=False` is for a scratch file that its
    program deletes within the run: surviving a power loss is no use to it, and two fsyncs cost
    about 2 ms.
    """
    directory = destination.parent
    if not directory.is_dir():
        raise ZipError(
            f"{destination}: output directory {directory} does not exist; create it first"
        )
    if destination.is_dir():
        raise ZipError(f"{destination}: is a directory; pass a file path for the output")
    fd, temp_path = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".partial", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as temp_file:
            yield temp_file
            temp_file.flush()
            os.fchmod(temp_file.fileno(), OUTPUT_MODE)
            if durable:
                os.fsync(temp_file.fileno())
        os.replace(temp_path, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise
    if durable:
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; some filesystems refuse to open directories, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
