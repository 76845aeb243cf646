"""Wheels that lie about their layout, each refused by `lambda-zip package` as an installer
would refuse it (one line naming the wheel, a non-zero exit, nothing written), and a wheel pip
installs that is laid out as pip lays it out."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from lambda_rules import wheel_units
from tests.locks.test_bad_input import pylock, record_hash, refused

METADATA = b"Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n"
WHEEL = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def wheel_of(
    directory: Path,
    files: dict[str, bytes],
    *,
    wheel_file: bytes = WHEEL,
    hash_of=record_hash,
    rows: list[str] = (),
) -> Path:
    """tiny 1.0 holding `files` besides its metadata, each listed in RECORD by `hash_of`;
    `rows` replace the rows of the files they name."""
    files = {
        **files,
        "tiny-1.0.dist-info/METADATA": METADATA,
        "tiny-1.0.dist-info/WHEEL": wheel_file,
    }
    record = {name: f"{name},{hash_of(data)},{len(data)}" for name, data in files.items()}
    record.update((row.split(",")[0], row) for row in rows)
    record["tiny-1.0.dist-info/RECORD"] = "tiny-1.0.dist-info/RECORD,,"
    path = directory / "tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("tiny-1.0.dist-info/RECORD", "\n".join(record.values()) + "\n")
    return path


def refused_wheel(tmp_path: Path, wheel: Path, *expected: str) -> None:
    line = refused(tmp_path, pylock(tmp_path, wheel), wheel.as_uri(), *expected)
    assert "Traceback" not in line


PACKAGE = {"tiny/__init__.py": b"VALUE = 1\n"}


@pytest.mark.parametrize(
    "files, expected",
    [
        # A `.data` entry that climbs out of its scheme into the package (pip: "Unexpected file").
        ({**PACKAGE, "tiny-1.0.data/headers/../../tiny/x.py": b"EVIL = 1\n"}, "escapes"),
        ({**PACKAGE, "tiny-1.0.data/scripts/../../evil.py": b"EVIL = 1\n"}, "escapes"),
        # A scheme no installer knows (pip: "Unknown scheme key used").
        ({**PACKAGE, "tiny-1.0.data/lib/tiny/y.py": b""}, "is not under a scheme"),
        # Two entries on one path: pip lets the `.data` one win, a zip reader the other.
        ({**PACKAGE, "tiny-1.0.data/purelib/tiny/__init__.py": b"VALUE = 2\n"}, "clashes"),
        ({**PACKAGE, "tiny/./__init__.py": b"VALUE = 2\n"}, "clashes"),
        # A file where another entry has a folder.
        ({**PACKAGE, "tiny/a": b"", "tiny/a/b.py": b""}, "clashes"),
    ],
)
def test_a_wheel_whose_entries_do_not_lay_out_is_refused(tmp_path, files, expected):
    refused_wheel(tmp_path, wheel_of(tmp_path, files), expected)


def test_a_wheel_of_an_unknown_wheel_version_is_refused(tmp_path):
    wheel = wheel_of(tmp_path, PACKAGE, wheel_file=WHEEL.replace(b"1.0", b"2.0", 1))
    refused_wheel(tmp_path, wheel, "Wheel-Version '2.0'")


@pytest.mark.parametrize("algorithm", ["md5", "sha1"])
def test_a_record_hashed_with_a_weak_hash_is_refused(tmp_path, algorithm):
    def weak(data: bytes) -> str:
        return f"{algorithm}={hashlib.new(algorithm, data).hexdigest()}"

    refused_wheel(tmp_path, wheel_of(tmp_path, PACKAGE, hash_of=weak), f"with {algorithm}")


@pytest.mark.parametrize(
    "row, expected",
    [
        ("tiny/bad.py,sha256=abc,not-a-size", "not a valid wheel"),
        ("tiny/bad.py,deadbeef,1", "not a valid wheel"),
        ("tiny/bad.py,shake_128=AA,1", "with shake_128"),  # hashlib wants a length for it
    ],
)
def test_a_record_row_that_cannot_be_read_is_one_line(tmp_path, row, expected):
    wheel = wheel_of(tmp_path, {**PACKAGE, "tiny/bad.py": b"x"}, rows=[row])
    refused_wheel(tmp_path, wheel, expected)


def test_a_wheel_with_damaged_deflate_data_is_one_line(tmp_path):
    wheel = wheel_of(tmp_path, {"tiny/__init__.py": b"VALUE = 1\n" * 1000})
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("tiny/__init__.py")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + 8] = b"\xff" * 8
    wheel.write_bytes(bytes(data))
    refused_wheel(tmp_path, wheel, "while decompressing data")


def test_a_data_folder_spelt_otherwise_than_the_file_name_is_read_as_pip_reads_it(tmp_path):
    """pip takes any top-level `*.data` folder for the data folder: its purelib goes to the
    top, its scripts and data are left out of a `--target` folder."""
    wheel = wheel_of(
        tmp_path,
        {
            **PACKAGE,
            "Tiny-1.0.data/purelib/tiny/z.py": b"Z = 1\n",
            "Tiny-1.0.data/scripts/run": b"#!python\n",
            "Tiny-1.0.data/data/share/x.txt": b"x\n",
        },
    )
    laid_out = wheel_units.lay_out(wheel, shown="tiny")
    assert sorted(p for p in laid_out.files if not p.startswith("tiny-1.0.dist-info/")) == [
        "tiny/__init__.py",
        "tiny/z.py",
    ]
