"""Shared helpers for the zipper tests: subprocess runs, the golden tree, raw archive crafting.

Helpers reach tests as fixtures (not `from conftest import`), which works in
every pytest import mode and next to other conftest.py files in the project.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import pytest

from tests.conftest import file_sha256_hex

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_TREE = Path(__file__).resolve().parent / "golden_tree"
GOLDEN_EXECUTABLES = frozenset({"bin/bootstrap"})

READER_PACKAGES = {
    "unzip": "unzip",
    "zipinfo": "unzip",
    "zip": "zip",
    "bsdtar": "libarchive-tools",
    "7z": "p7zip-full",
}


def _require_tool(name: str) -> str:
    """Path of an external tool; a missing one fails the test (never skips it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; install it with "
            f"`apt-get install -y {READER_PACKAGES.get(name, name)}` (./test does this)"
        )
    return path


def zipper_env(extra: Optional[dict] = None) -> dict:
    """The environment for a zipper subprocess: ours, importable, without SOURCE_DATE_EPOCH."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


class Zipper:
    """Runs `python -m lambda_rules.zipper` in a subprocess, as Pants and users do."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def run(
        self,
        *args: Union[str, Path],
        env: Optional[dict] = None,
        cwd: Optional[Path] = None,
        umask: Optional[int] = None,
        expect: Optional[int] = 0,
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.python, "-m", "lambda_rules.zipper", *map(str, args)],
            env=zipper_env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
        )
        if expect is not None:
            assert result.returncode == expect, (
                f"exit {result.returncode} != {expect}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def build_sha256(self, tree: Path, out: Path, *options: str, **run_options) -> str:
        """Build `tree` into `out` and return the sha256 the CLI printed (checked against the
        file)."""
        result = self.run("build", tree, "-o", out, *options, **run_options)
        printed = result.stdout.strip().rsplit("sha256:", 1)[1]
        assert printed == file_sha256_hex(out)
        return printed


@pytest.fixture
def zipper() -> Zipper:
    return Zipper()


@pytest.fixture
def zipper_for() -> Callable[[str], Zipper]:
    """Zipper for another interpreter: zipper_for('/path/to/python')."""
    return Zipper


@pytest.fixture
def require_tool() -> Callable[[str], str]:
    return _require_tool


@pytest.fixture
def golden_tree() -> Path:
    return GOLDEN_TREE


def copy_golden_tree(
    dest: Path, order: Callable[[list], Iterable] = sorted, umask: int = 0o022
) -> Path:
    """Recreate the golden tree at `dest` file by file, in `order`, under `umask`.

    Modes are set from GOLDEN_EXECUTABLES, not copied, so a checkout that lost
    the exec bit fails only the test that zips the checkout itself.
    """
    files = [p.relative_to(GOLDEN_TREE) for p in GOLDEN_TREE.rglob("*") if p.is_file()]
    previous = os.umask(umask)
    try:
        for relative in order(files):
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((GOLDEN_TREE / relative).read_bytes())
            if relative.as_posix() in GOLDEN_EXECUTABLES:
                target.chmod(0o777 & ~umask)
    finally:
        os.umask(previous)
    return dest


@pytest.fixture
def golden_copy(tmp_path: Path) -> Path:
    return copy_golden_tree(tmp_path / "tree")


@pytest.fixture
def make_golden_copy() -> Callable[..., Path]:
    return copy_golden_tree


@dataclass
class RawEntry:
    """One entry of a hand-made archive; every field can lie, for refusal tests."""

    name: Union[str, bytes]
    data: bytes = b"content\n"
    method: int = 8
    flags: int = 0x0800
    made_by: int = (3 << 8) | 20
    external_attr: int = 0o100644 << 16
    crc: Optional[int] = None
    declared_size: Optional[int] = None
    payload: Optional[bytes] = None
    local_name: Optional[bytes] = None
    local_crc: Optional[int] = None
    extra: bytes = b""
    zip64: bool = False
    dos_time: int = 0
    dos_date: int = 0x21

    @property
    def raw_name(self) -> bytes:
        return self.name.encode("utf-8") if isinstance(self.name, str) else self.name


def raw_deflate(data: bytes, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def write_raw_zip(
    path: Path,
    entries: Iterable[RawEntry],
    comment: bytes = b"",
    local_offsets: Optional[list] = None,
) -> Path:
    """Write an archive record by record with struct, so tests can break any field.

    `local_offsets`, when given, overrides where central headers say each
    local header is (for overlapping-entry tests).
    """
    body = bytearray()
    central = bytearray()
    entries = list(entries)
    for index, e in enumerate(entries):
        payload = (
            e.payload
            if e.payload is not None
            else (raw_deflate(e.data) if e.method == 8 else e.data)
        )
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        size = len(e.data) if e.declared_size is None else e.declared_size
        offset = len(body)
        local_name = e.raw_name if e.local_name is None else e.local_name
        extra, size_fields = e.extra, (len(payload), size)
        if e.zip64:  # sizes moved to a Zip64 extra field, as streaming writers do
            extra += struct.pack("<HHQQ", 1, 16, size, len(payload))
            size_fields = (0xFFFFFFFF, 0xFFFFFFFF)
        body += (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                45 if e.zip64 else 20,
                e.flags,
                e.method,
                e.dos_time,
                e.dos_date,
                crc if e.local_crc is None else e.local_crc,
                *size_fields,
                len(local_name),
                len(extra),
            )
            + local_name
            + extra
            + payload
        )
        if local_offsets is not None:
            offset = local_offsets[index]
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                e.made_by,
                45 if e.zip64 else 20,
                e.flags,
                e.method,
                e.dos_time,
                e.dos_date,
                crc,
                *size_fields,
                len(e.raw_name),
                len(extra),
                0,
                0,
                0,
                e.external_attr,
                offset,
            )
            + e.raw_name
            + extra
        )
    end = struct.pack(
        "<IHHHHIIH",
        0x06054B50,
        0,
        0,
        len(entries),
        len(entries),
        len(central),
        len(body),
        len(comment),
    )
    Path(path).write_bytes(bytes(body + central + end + comment))
    return Path(path)


class ZipCrafter:
    """Fixture object bundling the raw-archive helpers."""

    Entry = RawEntry
    write = staticmethod(write_raw_zip)
    deflate = staticmethod(raw_deflate)


@pytest.fixture
def crafter() -> type:
    return ZipCrafter
