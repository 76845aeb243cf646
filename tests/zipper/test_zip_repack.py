"""repack: Info-ZIP archives of the same files converge to one canonical archive; unsafe input
is refused."""

from __future__ import annotations

import os
import resource
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from lambda_rules.zipper.cli import main
from lambda_rules.zipper.format import CREATOR_UNIX
from tests.conftest import file_sha256_hex, zipper_refuses
from tests.zipper.test_zip_golden import GOLDEN_SHA256


def _info_zip(tree: Path, out: Path, zip_tool: str, *options: str, umask: int = 0o022) -> Path:
    subprocess.run(
        [zip_tool, "-q", "-r", *options, str(out), "."],
        cwd=tree,
        check=True,
        preexec_fn=lambda: os.umask(umask),
    )
    return out


@pytest.mark.parametrize(
    "options, mtime, umask, order",
    [
        ((), 1_000_000_000, 0o022, "sorted"),
        (("-D",), 1_600_000_000, 0o077, "reversed"),
        (("-X",), 1_234_567_890, 0o002, "reversed"),
        (("-X", "-D"), 1_700_000_000, 0o022, "sorted"),
        (("-0",), 1_100_000_000, 0o022, "sorted"),
        (("-9", "-X"), 1_300_000_000, 0o077, "sorted"),
        (("-fd",), 1_400_000_000, 0o022, "reversed"),  # data descriptors
    ],
)
def test_info_zip_variants_repack_to_the_golden_build(
    zipper, make_golden_copy, require_tool, tmp_path, options, mtime, umask, order
):
    arrange = (lambda files: sorted(files, reverse=True)) if order == "reversed" else sorted
    tree = make_golden_copy(tmp_path / "tree", order=arrange, umask=umask)
    for path in tree.rglob("*"):
        os.utime(path, (mtime, mtime))
    source = _info_zip(tree, tmp_path / "info.zip", require_tool("zip"), *options, umask=umask)
    out = tmp_path / "repacked.zip"
    zipper.run("repack", source, "-o", out, umask=umask)
    assert file_sha256_hex(out) == GOLDEN_SHA256
    assert out.stat().st_mode & 0o777 == 0o644


def test_streamed_info_zip_repacks_to_the_golden_build(zipper, golden_copy, require_tool, tmp_path):
    streamed = tmp_path / "streamed.zip"
    with open(streamed, "wb") as stdout:  # `zip -r - .` writes to a pipe: no seeking back
        subprocess.run(
            [require_tool("zip"), "-q", "-r", "-", "."], cwd=golden_copy, stdout=stdout, check=True
        )
    out = tmp_path / "repacked.zip"
    zipper.run("repack", streamed, "-o", out)
    assert file_sha256_hex(out) == GOLDEN_SHA256


def test_zip64_extra_fields_in_small_archives_are_read(tmp_path, crafter):
    plain = crafter.write(tmp_path / "plain.zip", [crafter.Entry("a.txt", data=b"a" * 300)])
    zip64 = crafter.write(
        tmp_path / "zip64.zip", [crafter.Entry("a.txt", data=b"a" * 300, zip64=True)]
    )
    assert main(["repack", str(plain), "-o", str(tmp_path / "p.zip")]) == 0
    assert main(["repack", str(zip64), "-o", str(tmp_path / "z.zip")]) == 0
    assert (tmp_path / "p.zip").read_bytes() == (tmp_path / "z.zip").read_bytes()
    with zipfile.ZipFile(zip64) as archive:  # the crafted archive itself is valid
        assert archive.read("a.txt") == b"a" * 300


def test_repack_is_idempotent_and_in_place(zipper, golden_copy, tmp_path):
    built = tmp_path / "built.zip"
    zipper.build_sha256(golden_copy, built)
    zipper.run("repack", built, "-o", built)
    assert file_sha256_hex(built) == GOLDEN_SHA256


def test_repack_keeps_pycache_unless_excluded(zipper, golden_copy, require_tool, tmp_path):
    (golden_copy / "pkg" / "__pycache__").mkdir()
    (golden_copy / "pkg" / "__pycache__" / "Zeta.cpython-39.pyc").write_bytes(b"\x61\x0d\x0d\x0a")
    source = _info_zip(golden_copy, tmp_path / "info.zip", require_tool("zip"))
    kept = tmp_path / "kept.zip"
    zipper.run("repack", source, "-o", kept)
    with zipfile.ZipFile(kept) as archive:
        assert "pkg/__pycache__/Zeta.cpython-39.pyc" in archive.namelist()
    dropped = tmp_path / "dropped.zip"
    zipper.run("repack", source, "-o", dropped, "--exclude", "__pycache__")
    assert file_sha256_hex(dropped) == GOLDEN_SHA256


def test_exec_bit_comes_from_unix_attributes_only(tmp_path, crafter):
    source = crafter.write(
        tmp_path / "in.zip",
        [
            crafter.Entry("unix_exec.sh", external_attr=0o100750 << 16),
            crafter.Entry("unix_plain.txt", external_attr=0o100600 << 16),
            crafter.Entry("unix_no_mode.txt", external_attr=0),
            crafter.Entry("dos_exec_bits.txt", made_by=(0 << 8) | 20, external_attr=0o100755 << 16),
            crafter.Entry("dir/", data=b"", method=0, external_attr=(0o040755 << 16) | 0x10),
        ],
    )
    out = tmp_path / "out.zip"
    assert main(["repack", str(source), "-o", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
        assert {i.create_system for i in archive.infolist()} == {CREATOR_UNIX}
    assert modes == {
        "dos_exec_bits.txt": 0o100644,
        "unix_exec.sh": 0o100755,
        "unix_no_mode.txt": 0o100644,
        "unix_plain.txt": 0o100644,
    }


def test_dot_segments_are_normalized_and_entries_sorted(tmp_path, crafter):
    source = crafter.write(
        tmp_path / "in.zip",
        [
            crafter.Entry("./b//c.txt", data=b"c"),
            crafter.Entry("a.txt", data=b"a"),
        ],
    )
    out = tmp_path / "out.zip"
    assert main(["repack", str(source), "-o", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["a.txt", "b/c.txt"]


ZEROS = b"\0" * (20 << 20)


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"name": "/etc/cron.d/evil"}], "is an absolute path"),
        ([{"name": "C:/Windows/evil.dll"}], "is an absolute path"),
        ([{"name": "../evil.py"}], "contains a '..' component"),
        ([{"name": "a/../../evil.py"}], "contains a '..' component"),
        ([{"name": "..\\evil.py"}], "uses a backslash"),
        ([{"name": "dir\\file.py"}], "uses a backslash"),
        ([{"name": "a.py"}, {"name": "a.py", "data": b"other"}], "both unpack to 'a.py'"),
        ([{"name": "a.py"}, {"name": "./a.py", "data": b"other"}], "both unpack to 'a.py'"),
        ([{"name": "a"}, {"name": "a/b.py"}], "'a' is both a file and the directory of 'a/b.py'"),
        ([{"name": "secret.txt", "flags": 0x0801}], "is encrypted"),
        (
            [{"name": "link", "data": b"target.txt", "method": 0, "external_attr": 0o120777 << 16}],
            "is a symlink",
        ),
        (
            [{"name": "fifo", "data": b"", "method": 0, "external_attr": 0o010644 << 16}],
            "is a special file",
        ),
        ([{"name": "a.bz2", "method": 12, "payload": b"BZh9"}], "uses compression method 12"),
        ([{"name": "bad-crc.txt", "crc": 0xDEADBEEF}], "fails its CRC-32 check"),
        (
            [{"name": "lying.txt", "data": b"x" * 5000, "declared_size": 100}],
            "inflates past its declared size of 100",
        ),
        (
            [{"name": "short.txt", "data": b"x" * 5000, "declared_size": 6000}],
            "holds 5000 bytes but declares 6000",
        ),
        ([{"name": "stored.txt", "method": 0, "declared_size": 3}], "declares 3 bytes but holds 8"),
        ([{"name": "junk.txt", "payload": b"\xff\xff\xff\xff"}], "corrupt deflate data"),
        ([{"name": "bomb.bin", "data": ZEROS}], "(limit 200:1), a likely zip bomb"),
        ([{"name": "a.txt", "local_name": b"b.txt"}], "local header name b'b.txt' differs"),
        ([{"name": "a.txt", "local_crc": 0x1234}], "local header (crc 0x00001234, sizes"),
        (
            [{"name": "a.txt", "flags": 0x0808, "local_crc": 0x1234}],
            "local header CRC/sizes disagree",
        ),
        ([{"name": "a.txt", "flags": 0x0808}], "data descriptor missing or disagrees"),
    ],
)
def test_unsafe_or_corrupt_archives_are_refused(tmp_path, capsys, crafter, entries, message):
    source = crafter.write(tmp_path / "in.zip", [crafter.Entry(**e) for e in entries])
    assert message in zipper_refuses(tmp_path, capsys, "repack", source)


def test_bomb_limit_can_be_raised(tmp_path, capsys, crafter):
    source = crafter.write(tmp_path / "in.zip", [crafter.Entry("bomb.bin", data=ZEROS)])
    out = tmp_path / "out.zip"
    assert main(["repack", str(source), "-o", str(out), "--max-ratio", "2000"]) == 0
    with zipfile.ZipFile(out) as archive:
        assert archive.getinfo("bomb.bin").file_size == len(ZEROS)


def test_total_unzipped_size_limit(tmp_path, capsys, crafter):
    source = crafter.write(
        tmp_path / "in.zip",
        [crafter.Entry("a", data=b"a" * 600), crafter.Entry("b", data=b"b" * 600)],
    )
    err = zipper_refuses(tmp_path, capsys, "repack", source, "--max-unzipped-size", "1000")
    assert "exceeds 1000 bytes at entry 'b'; raise --max-unzipped-size" in err


def test_overlapping_entries_are_refused(tmp_path, capsys, crafter):
    # Fifield-style overlap: a.txt's stored data *is* b.txt's local header and data.
    b_data = b"bbbb"
    b_local = (
        struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0x0800, 0, 0, 0x21, zlib.crc32(b_data), 4, 4, 5, 0
        )
        + b"b.txt"
        + b_data
    )
    source = crafter.write(
        tmp_path / "in.zip",
        [
            crafter.Entry("a.txt", data=b_local, method=0),
            crafter.Entry("b.txt", data=b_data, method=0),
        ],
        local_offsets=[0, 30 + len("a.txt")],
    )
    assert "share bytes; overlapping entries are a zip-bomb technique" in zipper_refuses(
        tmp_path, capsys, "repack", source
    )


@pytest.mark.parametrize("cut", [1, 22, 60, 200])
def test_truncated_archive_is_refused(zipper, golden_copy, tmp_path, capsys, cut):
    built = tmp_path / "built.zip"
    zipper.build_sha256(golden_copy, built)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(built.read_bytes()[:-cut])
    err = zipper_refuses(tmp_path, capsys, "repack", truncated)
    assert "no end-of-central-directory record" in err or "truncated" in err


def test_prepended_and_trailing_bytes_are_refused(zipper, golden_copy, tmp_path, capsys):
    built = tmp_path / "built.zip"
    zipper.build_sha256(golden_copy, built)
    prepended = tmp_path / "prepended.zip"
    prepended.write_bytes(b"#!/bin/sh\nexit 0\n" + built.read_bytes())
    assert "bytes were prepended or inserted" in zipper_refuses(
        tmp_path, capsys, "repack", prepended
    )
    trailing = tmp_path / "trailing.zip"
    trailing.write_bytes(built.read_bytes() + b"\0" * 10)
    assert "has trailing bytes" in zipper_refuses(tmp_path, capsys, "repack", trailing)


def test_not_a_zip_and_missing_file(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not a ZIP archive" in zipper_refuses(tmp_path, capsys, "repack", text)
    assert "No such file or directory" in zipper_refuses(
        tmp_path, capsys, "repack", tmp_path / "missing.zip"
    )


def test_refusal_leaves_an_existing_output_untouched(tmp_path, capsys, crafter):
    out = tmp_path / "out.zip"
    out.write_bytes(b"previous")
    source = crafter.write(tmp_path / "in.zip", [crafter.Entry("../evil")])
    assert main(["repack", str(source), "-o", str(out)]) == 2
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["in.zip", "out.zip"]


def test_python_zipfile_archive_repacks_with_default_modes(tmp_path):
    source = tmp_path / "py.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("z.txt", "z" * 100)
        archive.writestr(zipfile.ZipInfo("m/"), "")
        archive.writestr("m/a.txt", "a")
        archive.comment = b"made by zipfile"
    out = tmp_path / "out.zip"
    assert main(["repack", str(source), "-o", str(out), "--timestamp", "1700000000"]) == 0
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["m/a.txt", "z.txt"]
        assert {stat.S_IMODE(i.external_attr >> 16) for i in infos} == {0o644}
        assert {i.date_time for i in infos} == {(2023, 11, 14, 22, 13, 20)}
        assert archive.comment == b""


@pytest.mark.parametrize(
    "raw_name, flags, shown",
    [
        (b"a\0b.txt", 0x0800, "'a\\x00b.txt'"),
        (b"a\nb.txt", 0x0800, "'a\\nb.txt'"),
        (b"dir\x1b[31m/x.txt", 0x0800, "'dir\\x1b[31m/x.txt'"),
        (b"tab\t.txt", 0x0800, "'tab\\t.txt'"),
        (b"del\x7f.txt", 0x0800, "'del\\x7f.txt'"),
        ("csi\u009b.txt".encode("utf-8"), 0x0800, "'csi\\x9b.txt'"),  # C1, as UTF-8
        (b"\x82\x01.txt", 0, "'\u00e9\\x01.txt'"),  # not UTF-8: read as CP437
    ],
)
def test_control_characters_in_names_are_refused(tmp_path, capsys, crafter, raw_name, flags, shown):
    source = crafter.write(tmp_path / "in.zip", [crafter.Entry(raw_name, flags=flags)])
    err = zipper_refuses(tmp_path, capsys, "repack", source)
    assert f"in.zip: entry {shown} contains the control character" in err
    assert "Recreate the archive without control characters in names" in err
    assert err.count("\n") == 1, "the control character must not reach the terminal raw"


def test_nul_in_a_zipfile_written_name_is_refused(tmp_path, capsys):
    # ZipInfo("a\0b.txt") truncates the name to "a" (a defence of zipfile's own), so an archive
    # made that way holds an ordinary entry "a"; only a name set afterwards writes the NUL.
    source = tmp_path / "in.zip"
    with zipfile.ZipFile(source, "w") as archive:
        info = zipfile.ZipInfo("placeholder")
        info.filename = "a\0b.txt"
        archive.writestr(info, b"content")
    assert b"a\0b.txt" in source.read_bytes()
    assert "entry 'a\\x00b.txt' contains the control character '\\x00'" in zipper_refuses(
        tmp_path, capsys, "repack", source
    )


def _write_zero_filled_archive(path: Path, name: bytes, size_mib: int) -> Path:
    """One deflated entry of `size_mib` MiB of zeros, about a thousandth of that on disk.

    A fully flushed deflate segment starts on a byte boundary and refers to nothing before it,
    so one compressed MiB repeated is a valid stream: no need to deflate the whole size.
    """
    mebibyte = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(mebibyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    payload = segment * size_mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(size_mib):
        crc = zlib.crc32(mebibyte, crc)
    fields = (0x0800, 8, 0, 0x21, crc, len(payload), size_mib << 20, len(name))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, *fields, 0) + name
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            (CREATOR_UNIX << 8) | 20,
            20,
            *fields,
            0,
            0,
            0,
            0,
            0o100644 << 16,
            0,
        )
        + name
    )
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(payload), 0
    )
    path.write_bytes(local + payload + central + end)
    return path


@pytest.mark.parametrize("workers", ["1", "2"])  # inflated in this process, or in a worker
def test_out_of_memory_is_one_line_naming_the_input(tmp_path, workers):
    source = _write_zero_filled_archive(tmp_path / "big.zip", b"zeros.bin", size_mib=512)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    address_space = 256 << 20  # inherited by the spawned workers
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambda_rules.zipper",
            "repack",
            str(source),
            "-o",
            str(out_dir / "out.zip"),
            "--workers",
            workers,
            "--max-ratio",
            "100000",
            "--max-unzipped-size",
            str(512 << 20),
        ],
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space)),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"lambda-zip: error: {source}: not enough memory to repack;")
    assert "--workers" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert os.listdir(out_dir) == []
