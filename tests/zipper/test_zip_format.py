"""Unit tests of the pieces: header encoding (incl. Zip64 past 4 GiB), compression, filters,
names."""

from __future__ import annotations

import json
import struct
import sys
import zlib

import pytest

from lambda_rules.zipper import format as zf
from lambda_rules.zipper.build import build_zip
from lambda_rules.zipper.compress import compress, effective_level
from lambda_rules.zipper.errors import FormatLimitError, ZipError
from lambda_rules.zipper.filters import PathFilter
from lambda_rules.zipper.summary import EntrySummary, ZipSummary
from lambda_rules.zipper.timestamps import timestamp_from_environment

GIB = 1 << 30


def _record(**overrides) -> zf.EntryRecord:
    fields = dict(
        name=b"big.bin",
        executable=False,
        method=zf.METHOD_DEFLATED,
        crc32=0x12345678,
        compressed_size=100,
        uncompressed_size=200,
        local_header_offset=0,
    )
    fields.update(overrides)
    return zf.EntryRecord(**fields)


def test_small_entry_headers_have_no_extra_and_version_20():
    local = zf.local_file_header(_record(), 0x21, 0)
    fields = zf.LOCAL_FILE_HEADER.unpack_from(local)
    assert fields == (
        zf.LOCAL_FILE_HEADER_SIGNATURE,
        20,
        0x0800,
        8,
        0,
        0x21,
        0x12345678,
        100,
        200,
        7,
        0,
    )
    central = zf.central_directory_header(_record(executable=True), 0x21, 0)
    fields = zf.CENTRAL_DIRECTORY_HEADER.unpack_from(central)
    assert fields[1:3] == (0x0314, 20)
    assert fields[11:17] == (0, 0, 0, 0, 0o100755 << 16, 0)


def test_zip64_local_header_carries_both_sizes_past_4_gib():
    record = _record(compressed_size=4 * GIB + 5, uncompressed_size=5 * GIB)
    local = zf.local_file_header(record, 0x21, 0)
    fields = zf.LOCAL_FILE_HEADER.unpack_from(local)
    assert fields[1] == 45
    assert fields[7:9] == (zf.UINT32_MAX, zf.UINT32_MAX)
    extra = local[zf.LOCAL_FILE_HEADER.size + len(record.name) :]
    assert extra == struct.pack("<HHQQ", 1, 16, 5 * GIB, 4 * GIB + 5)


def test_zip64_central_header_holds_only_overflowing_fields_in_order():
    record = _record(
        compressed_size=3 * GIB, uncompressed_size=5 * GIB, local_header_offset=6 * GIB
    )
    central = zf.central_directory_header(record, 0x21, 0)
    fields = zf.CENTRAL_DIRECTORY_HEADER.unpack_from(central)
    assert fields[1:3] == ((3 << 8) | 45, 45)
    assert (fields[8], fields[9], fields[16]) == (3 * GIB, zf.UINT32_MAX, zf.UINT32_MAX)
    extra = central[zf.CENTRAL_DIRECTORY_HEADER.size + len(record.name) :]
    assert extra == struct.pack("<HHQQ", 1, 16, 5 * GIB, 6 * GIB)


def test_exactly_0xffffffff_already_needs_zip64():
    assert _record(uncompressed_size=0xFFFFFFFE).needs_zip64 is False
    assert _record(uncompressed_size=0xFFFFFFFF).needs_zip64 is True


def test_end_record_for_central_directory_past_4_gib():
    end = zf.end_of_archive(
        entry_count=3, central_directory_offset=5 * GIB, central_directory_size=200
    )
    record = zf.ZIP64_END_OF_CENTRAL_DIRECTORY.unpack_from(end)
    assert record == (
        zf.ZIP64_END_OF_CENTRAL_DIRECTORY_SIGNATURE,
        44,
        0x032D,
        45,
        0,
        0,
        3,
        3,
        200,
        5 * GIB,
    )
    locator = zf.ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR.unpack_from(end, 56)
    assert locator == (zf.ZIP64_END_OF_CENTRAL_DIRECTORY_LOCATOR_SIGNATURE, 0, 5 * GIB + 200, 1)
    classic = zf.END_OF_CENTRAL_DIRECTORY.unpack_from(end, 76)
    assert classic == (zf.END_OF_CENTRAL_DIRECTORY_SIGNATURE, 0, 0, 3, 3, 200, zf.UINT32_MAX, 0)
    assert len(end) == 98


def test_end_record_without_zip64():
    assert zf.end_of_archive(65534, 1000, 50) == struct.pack(
        "<IHHHHIIH", zf.END_OF_CENTRAL_DIRECTORY_SIGNATURE, 0, 0, 65534, 65534, 50, 1000, 0
    )


def test_name_longer_than_65535_bytes_is_refused():
    zf.encode_name("a" * 65535)
    with pytest.raises(FormatLimitError, match="limited to 65535 bytes"):
        zf.encode_name("é" * 32768)


def test_compress_stores_when_deflate_does_not_help():
    assert compress(b"", 6).method == zf.METHOD_STORED
    incompressible = bytes(range(256))
    assert compress(incompressible, 6).method == zf.METHOD_STORED
    text = b"hello lambda " * 100
    entry = compress(text, 6)
    assert entry.method == zf.METHOD_DEFLATED and len(entry.payload) < len(text)
    assert zlib.decompress(bytes(entry.payload), -15) == text
    assert entry.crc32 == zlib.crc32(text)
    assert compress(text, None).method == zf.METHOD_STORED


def test_level_range_is_checked():
    assert effective_level(12, store=False) == 12
    with pytest.raises(ZipError, match="out of range; use 1..12"):
        effective_level(0, store=False)


def test_store_works_without_the_deflate_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "deflate", None)  # makes `import deflate` fail
    with pytest.raises(ZipError, match=r"pip install deflate==0\.8\.1"):
        effective_level(6, store=False)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_bytes(b"a" * 1000)
    summary = build_zip(tmp_path / "tree", tmp_path / "out.zip", store=True)
    assert summary.zipped_size == 1000 + 2 * len("a.txt") + 30 + 46 + 22


def test_other_deflate_version_is_refused(monkeypatch):
    import deflate

    monkeypatch.setattr(deflate, "__version__", "0.9.0")
    with pytest.raises(
        ZipError, match=r"deflate 0\.9\.0 is installed but .* needs deflate==0\.8\.1"
    ):
        effective_level(6, store=False)


@pytest.mark.parametrize(
    "excludes, includes, path, kept",
    [
        ((), (), "pkg/__pycache__/m.cpython-39.pyc", False),
        ((), (), "pkg/m.pyc", False),
        ((), (), "pkg/m.pyo", False),
        ((), (), "pkg/m.py", True),
        ((), ("__pycache__", "*.pyc"), "pkg/__pycache__/m.cpython-39.pyc", True),
        ((), ("*.pyc",), "pkg/__pycache__/m.cpython-39.pyc", True),
        (("tests",), (), "pkg/tests/test_a.py", False),
        (("tests",), (), "tests.py", True),
        (("pkg/tests",), (), "pkg/tests/deep/test_a.py", False),
        (("pkg/tests",), (), "other/pkg/tests/test_a.py", True),
        (("**/tests",), (), "other/pkg/tests/test_a.py", False),
        (("**/*.md",), (), "README.md", False),
        (("docs/**/*.md",), (), "docs/a/b/c.md", False),
        (("docs/**/*.md",), (), "docs/c.md", False),
        (("docs/*.md",), (), "docs/a/c.md", True),
        (("*.dist-info",), ("*.dist-info/RECORD",), "boto3-1.0.dist-info/METADATA", False),
        (("*.dist-info",), ("*.dist-info/RECORD",), "boto3-1.0.dist-info/RECORD", True),
        (("./tests/",), (), "tests/a.py", False),
    ],
)
def test_filter_semantics(excludes, includes, path, kept):
    assert PathFilter(excludes, includes).keeps(path) is kept


def test_filter_pruning_only_without_includes():
    assert PathFilter().prunes_directory("pkg/__pycache__")
    assert not PathFilter().prunes_directory("pkg")
    assert not PathFilter(includes=["*.pyc"]).prunes_directory("pkg/__pycache__")


@pytest.mark.parametrize("pattern", ["", "/abs/**", "/"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(ZipError, match="patterns are relative POSIX paths"):
        PathFilter([pattern])


def test_source_date_epoch_parsing():
    assert timestamp_from_environment({}) is None
    assert timestamp_from_environment({"SOURCE_DATE_EPOCH": ""}) is None
    assert timestamp_from_environment({"SOURCE_DATE_EPOCH": " 1700000000\n"}) == 1700000000
    with pytest.raises(ZipError, match="SOURCE_DATE_EPOCH must be an integer"):
        timestamp_from_environment({"SOURCE_DATE_EPOCH": "2024-01-01"})


def test_summary_json_matches_the_json_module_for_any_name():
    names = ["a.py", 'dir/"quoted".py', "ünï/cödé.py", "back\\slash", "tab\tname", "😀.py", "\x7f"]
    for count in (0, 1, len(names)):
        entries = tuple(
            EntrySummary(name, size=index * 1000, mode=0o755 if index % 2 else 0o644, crc32=index)
            for index, name in enumerate(names[:count])
        )
        summary = ZipSummary("0" * 64, "AA==", 22, 7000, count, entries)
        document = json.loads(summary.to_json())
        assert summary.to_json() == (
            json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        )
        assert [e["name"] for e in document["entries"]] == names[:count]
        assert ZipSummary.from_json(summary.to_json()) == summary


def test_summary_json_is_stable_and_complete(golden_copy, tmp_path):
    summary = build_zip(golden_copy, tmp_path / "out.zip")
    text = summary.to_json()
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert document["sha256_hex"] == summary.sha256_hex
    assert document["entry_count"] == 7 == len(document["entries"])
    assert document["entries"][0] == {
        "name": "bin/bootstrap",
        "size": 102,
        "mode": "0755",
        "crc32": "e11c096a",
    }
    assert document["zipped_size"] == (tmp_path / "out.zip").stat().st_size
    assert document["unzipped_size"] == sum(e["size"] for e in document["entries"])
