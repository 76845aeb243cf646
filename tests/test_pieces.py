"""Pieces: a large file handed between the rules' processes below Pants' large-file size."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from lambda_rules.zipper import pieces
from lambda_rules.zipper.cli import main as zipper
from tests.conftest import file_sha256_hex, write_tree

# Pants 2.17 stores files of this size and more apart (`LARGE_FILE_SIZE_LIMIT`).
PANTS_LARGE_FILE_BYTES = 512 * 1024


def _stream(size: int) -> bytes:
    """Bytes no two pieces share at the same offset, so a misplaced piece cannot go unseen."""
    return b"".join(index.to_bytes(4, "big") for index in range(size // 4 + 1))[:size]


def _write(directory: Path, data: bytes, step: int) -> None:
    with pieces.create(directory) as written:
        for start in range(0, len(data), step):
            written.write(data[start : start + step])


@pytest.mark.parametrize("step", [7, 4096, pieces.PIECE_BYTES + 1, 3 << 20])
def test_a_stream_reads_back_whole_from_pieces_below_pants_large_file_size(tmp_path, step):
    data = _stream(2 * pieces.PIECE_BYTES + 1000)
    packed = tmp_path / f"a.zip{pieces.SUFFIX}"
    _write(packed, data, step)
    names = sorted(p.name for p in packed.iterdir())
    assert names == ["000000", "000001", "000002"]
    sizes = [(packed / name).stat().st_size for name in names]
    assert sizes == [pieces.PIECE_BYTES, pieces.PIECE_BYTES, 1000]
    assert max(sizes) < PANTS_LARGE_FILE_BYTES
    with pieces.open_input(packed) as f:
        assert pieces.input_size(f) == len(data)
        assert f.read() == data
        # Reads that cross from one piece into the next, and one that runs past the end.
        for offset, length in [(pieces.PIECE_BYTES - 3, 10), (10, 2 * pieces.PIECE_BYTES)]:
            f.seek(offset)
            assert f.read(length) == data[offset : offset + length]
        f.seek(-5, io.SEEK_END)
        assert f.read(100) == data[-5:]


def test_an_empty_stream_is_one_empty_piece(tmp_path):
    packed = tmp_path / f"empty{pieces.SUFFIX}"
    _write(packed, b"", 1)
    assert [p.name for p in packed.iterdir()] == ["000000"]
    with pieces.open_input(packed) as f:
        assert f.read() == b""


def _archive(tmp_path: Path) -> Path:
    """A stored archive of 1.3 MB: three pieces."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/data.bin": _stream(1300000)})
    archive = tmp_path / "unit.zip"
    assert zipper(["build", str(tree), "-o", str(archive), "--store"]) == 0
    return archive


def _as_pieces(archive: Path) -> Path:
    packed = archive.with_name(archive.name + pieces.SUFFIX)
    _write(packed, archive.read_bytes(), 1 << 20)
    return packed


def test_repack_and_zipfile_read_an_archive_from_its_pieces_as_from_the_file(tmp_path):
    archive = _archive(tmp_path)
    packed = _as_pieces(archive)
    from_file, from_pieces = tmp_path / "from-file.zip", tmp_path / "from-pieces.zip"
    assert zipper(["repack", str(archive), "-o", str(from_file), "--workers", "2"]) == 0
    assert zipper(["repack", str(packed), "-o", str(from_pieces), "--workers", "2"]) == 0
    assert file_sha256_hex(from_pieces) == file_sha256_hex(from_file)
    with pieces.open_input(packed) as f, zipfile.ZipFile(f) as unpacked:
        assert unpacked.testzip() is None
        assert unpacked.read("pkg/data.bin") == _stream(1300000)


def test_a_missing_piece_is_a_corrupt_archive_and_nothing_is_written(tmp_path, capsys):
    packed = _as_pieces(_archive(tmp_path))
    os.remove(packed / "000001")
    out = tmp_path / "out.zip"
    assert zipper(["repack", str(packed), "-o", str(out)]) == 2
    assert "not a directory of pieces" in capsys.readouterr().err
    assert not out.exists()


def test_a_short_piece_before_the_last_is_refused_and_nothing_is_written(tmp_path, capsys):
    packed = _as_pieces(_archive(tmp_path))
    with open(packed / "000000", "r+b") as first:
        first.truncate(1000)
    out = tmp_path / "out.zip"
    assert zipper(["repack", str(packed), "-o", str(out)]) == 2
    assert f"every piece but the last must be {pieces.PIECE_BYTES} bytes" in capsys.readouterr().err
    assert not out.exists()


def test_a_directory_not_named_as_pieces_is_not_read_as_pieces(tmp_path, capsys):
    packed = _as_pieces(_archive(tmp_path))
    renamed = packed.rename(tmp_path / "unit")
    assert zipper(["repack", str(renamed), "-o", str(tmp_path / "out.zip")]) == 2
    assert "Is a directory" in capsys.readouterr().err
