"""Archives we write are valid for independent readers: Info-ZIP, libarchive, 7-Zip, zipfile."""

from __future__ import annotations

import filecmp
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from lambda_rules.zipper.archive import PlannedEntry, write_archive
from lambda_rules.zipper.reader import read_archive
from lambda_rules.zipper.timestamps import dos_date_time

EXPECTED_MODES = {
    "bin/bootstrap": 0o100755,
    "handler.py": 0o100644,
    "pkg/Zeta.py": 0o100644,
    "pkg/__init__.py": 0o100644,
    "pkg/data/blob.bin": 0o100644,
    "pkg/données/ünïcødé.txt": 0o100644,
    "pkg/sub/deep/module.py": 0o100644,
}


@pytest.fixture
def golden_zip(zipper, golden_copy, tmp_path) -> Path:
    out = tmp_path / "golden.zip"
    zipper.build_sha256(golden_copy, out)
    return out


def _run(command) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, encoding="utf-8", errors="replace"
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_unzip_t(golden_zip, require_tool):
    output = _run([require_tool("unzip"), "-t", str(golden_zip)])
    assert "No errors detected" in output
    assert output.count(" OK") == len(EXPECTED_MODES)


def test_zipinfo_shows_canonical_modes_times_and_methods(golden_zip, require_tool):
    lines = _run([require_tool("zipinfo"), str(golden_zip)]).splitlines()
    entries = [line for line in lines if line.startswith("-")]
    assert [line.split()[-1] for line in entries][:4] == [
        "bin/bootstrap",
        "handler.py",
        "pkg/Zeta.py",
        "pkg/__init__.py",
    ]
    assert len(entries) == len(EXPECTED_MODES)
    for line in entries:
        permissions, version, system, _size, _kind, method, date, time = line.split()[:8]
        expected = "-rwxr-xr-x" if line.endswith("bin/bootstrap") else "-rw-r--r--"
        assert (permissions, version, system, date, time) == (
            expected,
            "2.0",
            "unx",
            "80-Jan-01",
            "00:00",
        )
        assert method in ("defN", "stor")
    methods = {line.split()[-1]: line.split()[5] for line in entries}
    assert methods["pkg/__init__.py"] == "stor"  # empty
    assert methods["pkg/data/blob.bin"] == "stor"  # incompressible
    assert methods["pkg/sub/deep/module.py"] == "defN"


def test_bsdtar_lists_and_extracts_identical_content(
    golden_zip, golden_tree, tmp_path, require_tool
):
    bsdtar = require_tool("bsdtar")
    listed = _run([bsdtar, "-tf", str(golden_zip)]).splitlines()
    assert listed == list(EXPECTED_MODES)
    extracted = tmp_path / "bsdtar"
    extracted.mkdir()
    _run([bsdtar, "-xf", str(golden_zip), "-C", str(extracted)])
    _assert_same_files(golden_tree, extracted)
    assert (extracted / "bin" / "bootstrap").stat().st_mode & 0o111


def test_7z_t(golden_zip, require_tool):
    output = _run([require_tool("7z"), "t", str(golden_zip)])
    assert "Everything is Ok" in output
    assert f"Files: {len(EXPECTED_MODES)}" in output


def test_python_zipfile_reads_content_modes_and_timestamps(golden_zip, golden_tree):
    with zipfile.ZipFile(golden_zip) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [i.filename for i in infos] == list(EXPECTED_MODES)
        for info in infos:
            assert info.create_system == 3
            assert info.external_attr >> 16 == EXPECTED_MODES[info.filename]
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.extra == b"" and info.comment == b""
            assert info.flag_bits == 0x0800
            assert archive.read(info) == (golden_tree / info.filename).read_bytes()
        assert archive.comment == b""


def test_unzip_extracts_identical_tree_with_exec_bit(
    golden_zip, golden_tree, tmp_path, require_tool
):
    extracted = tmp_path / "unzip"
    _run([require_tool("unzip"), "-q", str(golden_zip), "-d", str(extracted)])
    _assert_same_files(golden_tree, extracted)
    assert stat.S_IMODE((extracted / "bin" / "bootstrap").stat().st_mode) & 0o111


class _Bytes:
    """In-memory content for writer-level tests."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self) -> bytes:
        return self.data


def test_zip64_with_more_than_65535_entries(tmp_path, require_tool):
    count = 65_600
    entries = [
        PlannedEntry(f"d{i // 1000:02d}/f{i:05d}.txt", i % 97 == 0, _Bytes(b"%d\n" % i))
        for i in range(count)
    ]
    out = tmp_path / "many.zip"
    summary = write_archive(out, entries, level=6, timestamp=None, workers=1)
    assert summary.entry_count == count
    data = out.read_bytes()
    end = data[-22:]
    assert end[:4] == b"PK\x05\x06" and end[8:12] == b"\xff\xff\xff\xff"  # count fields overflowed
    assert data[-42:-38] == b"PK\x06\x07"  # Zip64 locator right before the end record
    output = _run([require_tool("unzip"), "-tq", str(out)])
    assert "No errors detected" in output
    parsed = read_archive(out)
    assert parsed.zip64 and len(parsed.entries) == count
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
        assert len(infos) == count
        assert archive.read("d65/f65599.txt") == b"65599\n"
        assert infos[97].external_attr >> 16 == 0o100755
        assert archive.testzip() is None


def test_dos_date_time_encoding_is_what_zipfile_decodes():
    for epoch, expected in [
        (0, (1980, 1, 1, 0, 0, 0)),
        (315532800, (1980, 1, 1, 0, 0, 0)),
        (1700000001, (2023, 11, 14, 22, 13, 20)),
        (4354819199, (2107, 12, 31, 23, 59, 58)),
        (10**11, (2107, 12, 31, 23, 59, 58)),
    ]:
        dos_date, dos_time = dos_date_time(epoch)
        decoded = (
            (dos_date >> 9) + 1980,
            (dos_date >> 5) & 0xF,
            dos_date & 0x1F,
            dos_time >> 11,
            (dos_time >> 5) & 0x3F,
            (dos_time & 0x1F) * 2,
        )
        assert decoded == expected, epoch


def _assert_same_files(expected_root: Path, actual_root: Path) -> None:
    expected = sorted(
        p.relative_to(expected_root).as_posix() for p in expected_root.rglob("*") if p.is_file()
    )
    actual = sorted(
        p.relative_to(actual_root).as_posix() for p in actual_root.rglob("*") if p.is_file()
    )
    assert actual == expected
    for name in expected:
        assert filecmp.cmp(expected_root / name, actual_root / name, shallow=False), name
