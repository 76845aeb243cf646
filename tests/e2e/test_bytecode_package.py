"""`compile_bytecode=True` end to end: reproducible .pyc that the runtime's CPython really uses."""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import zipfile

import pytest

from tests.conftest import file_sha256_hex, pyenv_python
from tests.e2e.test_package import EXPECTED_RESPONSE, call_handler, extract_read_only

pytestmark = pytest.mark.e2e

BYTECODE_BUILD = """
lambda_function(
    name="pyc",
    handler="app.py:handler",
    runtime=parametrize("python3.9", "python3.10", "python3.11", "python3.12", "python3.13"),
    compile_bytecode=True,
)
"""
MINORS = (9, 10, 11, 12, 13)
PYC_FLAGS_UNCHECKED_HASH = 0b01


def pyc_of(source: str, cache_tag: str) -> str:
    directory, name = posixpath.split(source)
    return posixpath.join(directory, "__pycache__", f"{name[:-3]}.{cache_tag}.pyc")


def magic_number(minor: int) -> bytes:
    out = subprocess.run(
        [
            str(pyenv_python(minor)),
            "-I",
            "-c",
            "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return bytes.fromhex(out)


def test_bytecode_packages_are_reproducible_and_used_by_the_runtime(clone_factory, tmp_path):
    first = clone_factory("pyc-first")
    second = clone_factory("pyc-second-at-another-path", reverse_order=True)
    for clone in (first, second):
        clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + BYTECODE_BUILD)
    for path in second.root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            os.utime(path, (1_234_567_890, 1_234_567_890))

    first.pants("package", "fn:pyc", umask=0o022, pantsd=True, env={"PYTHONHASHSEED": "0"})
    # One core granted to every process (other worker counts), no cache, another hash seed.
    second.pants(
        "--no-local-cache",
        "--process-execution-local-parallelism=1",
        "package",
        "fn:pyc",
        umask=0o077,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert first.dist_files() == second.dist_files()
    for relpath in first.dist_files():
        assert (first.root / "dist" / relpath).read_bytes() == (
            second.root / "dist" / relpath
        ).read_bytes(), relpath

    for minor in MINORS:
        runtime = f"python3.{minor}"
        archive = first.root / f"dist/fn/pyc@runtime=python3_{minor}.zip"
        manifest = json.loads(archive.with_suffix(".json").read_text())
        assert manifest["bytecode_compiled_by"].startswith(f"3.{minor}.")
        cache_tag = f"cpython-3{minor}"
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            pycs = [n for n in names if n.endswith(".pyc")]
            sources = [n for n in names if n.endswith(".py")]
            # Every source has its .pyc beside it, for this runtime's version only.
            assert all(p.endswith(f".{cache_tag}.pyc") for p in pycs), pycs[:5]
            assert {pyc_of(s, cache_tag) for s in sources} <= set(pycs)
            magic = magic_number(minor)
            for pyc in pycs:
                header = zf.read(pyc)[:16]
                assert header[:4] == magic, pyc
                assert int.from_bytes(header[4:8], "little") == PYC_FLAGS_UNCHECKED_HASH, pyc

        extracted = extract_read_only(archive, tmp_path / runtime)
        # The README example runs from the read-only extraction on its runtime's CPython.
        assert call_handler(pyenv_python(minor), extracted) == EXPECTED_RESPONSE
        # The .pyc is what runs: a changed source is not even looked at.
        app = extracted / "app.py"
        app.chmod(0o644)
        app.write_text("def handler(event, context):\n    return 'the source ran'\n")
        app.chmod(0o444)
        assert call_handler(pyenv_python(minor), extracted) == EXPECTED_RESPONSE
        assert file_sha256_hex(archive) == file_sha256_hex(
            second.root / "dist" / archive.relative_to(first.root / "dist")
        )
