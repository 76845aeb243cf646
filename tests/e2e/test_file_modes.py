"""Exec bits come from what the target's files are, not from how Pants lays them into a sandbox:
Pants links a file of 512 KB or more from its store, where it is 0555, into each sandbox."""

from __future__ import annotations

import os
import random
import stat
import zipfile

import pytest

pytestmark = pytest.mark.e2e

BUILD = """
lambda_function(
    name="pyc",
    handler="app.py:handler",
    runtime="python3.12",
    compile_bytecode=True,
    output_path="fn/pyc.zip",
)
"""


def test_a_large_first_party_file_keeps_its_mode_with_and_without_bytecode(clone_factory):
    clone = clone_factory()
    rng = random.Random(1)
    table = "TABLE = " + repr([rng.random() for _ in range(40000)]) + "\n"
    big = clone.root / "fn/big_table.py"
    big.write_text(table)
    assert big.stat().st_size > 512 * 1024 and not big.stat().st_mode & 0o111
    with (clone.root / "fn/app.py").open("a") as app:
        app.write("import big_table  # noqa: E402,F401\n")
    with (clone.root / "fn/BUILD").open("a") as build:
        build.write(BUILD)
    clone.pants("package", "//fn:lambda", "//fn:pyc")
    for archive in ("dist/fn/lambda.zip", "dist/fn/pyc.zip"):
        with zipfile.ZipFile(clone.root / archive) as opened:
            modes = {i.filename: stat.S_IMODE(i.external_attr >> 16) for i in opened.infolist()}
        assert modes["big_table.py"] == 0o644, archive
        assert modes["app.py"] == 0o644, archive
        # A distribution's extension module keeps the exec bit its wheel gives it.
        extension = [m for n, m in modes.items() if n.startswith("pydantic_core/_pydantic_core.c")]
        assert extension == [0o755], archive
    assert not os.access(big, os.X_OK)
