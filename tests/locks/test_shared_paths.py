"""Units written from several wheels at once: a path two wheels ship (a namespace `__init__.py`)
stays with the first distribution in name order, whichever wheel finishes first, both when the
wheels are laid out by threads and when they are large enough for worker processes
(`zipper.pipeline.PARALLEL_MIN_BYTES` of wheels, on a machine with two CPUs or more)."""

from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from lambda_rules import units, wheel_units
from lambda_rules.zipper import pieces
from lambda_rules.zipper.pipeline import PARALLEL_MIN_BYTES, available_cpus
from tests.locks.test_bad_input import record_hash


def make_wheel(directory: Path, name: str, files: dict[str, bytes], *, lie: bool = False) -> Path:
    """`name` 1.0, a pure wheel of `files` and its dist-info; with `lie`, RECORD states a wrong
    hash for every `.py` file."""
    info = f"{name}-1.0.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    rows = [
        f"{path},{record_hash(b'altered' if lie and path.endswith('.py') else data)},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{info}/RECORD"] = ("\n".join([*rows, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as out:
        for path, data in files.items():
            out.writestr(path, data)
    return wheel


def archive_files(archive: Path) -> dict[str, bytes]:
    with pieces.open_input(archive) as f, zipfile.ZipFile(f) as stored:
        return {name: stored.read(name) for name in stored.namelist()}


# Incompressible, so the wheels alone pass the threshold for worker processes.
LARGE = os.urandom(PARALLEL_MIN_BYTES + 1024)


@pytest.mark.parametrize("blob", [b"small", LARGE], ids=["threads", "processes"])
def test_a_path_two_wheels_ship_stays_with_the_first_in_name_order(tmp_path, blob):
    # beta is given first and is the larger: it is laid out first, alpha still keeps ns/.
    beta = make_wheel(
        tmp_path,
        "beta",
        {"ns/__init__.py": b"# beta's\n", "beta/__init__.py": b"B = 2\n", "beta/blob.bin": blob},
    )
    alpha = make_wheel(
        tmp_path, "alpha", {"ns/__init__.py": b"# alpha's\n", "alpha/__init__.py": b"A = 1\n"}
    )
    wheels = [(beta, "https://example/beta"), (alpha, "https://example/alpha")]
    if blob is LARGE and available_cpus() > 1:
        with wheel_units._executor([w.stat().st_size for w, _ in wheels]) as executor:
            assert isinstance(executor, ProcessPoolExecutor)
    out = tmp_path / "units"
    wheel_units.write_units(wheels, out)

    listing = json.loads((out / units.UNITS_JSON).read_text())["units"]
    assert [unit["distribution"] for unit in listing] == [["alpha", "1.0"], ["beta", "1.0"]]
    alpha_files = archive_files(out / f"0.zip{pieces.SUFFIX}")
    beta_files = archive_files(out / f"1.zip{pieces.SUFFIX}")
    assert alpha_files["ns/__init__.py"] == b"# alpha's\n"
    assert "ns/__init__.py" not in beta_files
    assert beta_files["beta/blob.bin"] == blob
    for unit, files in zip(listing, (alpha_files, beta_files)):
        assert unit["paths"] == sorted(files)
        assert unit["size"] == sum(map(len, files.values()))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["0.zip.pieces", "1.zip.pieces", units.UNITS_JSON, units.METADATA_DIR]
    )
    assert sorted(
        p.relative_to(out / units.METADATA_DIR).as_posix()
        for p in (out / units.METADATA_DIR).rglob("*")
        if p.is_file()
    ) == [f"{n}-1.0.dist-info/{f}" for n in ("alpha", "beta") for f in ("METADATA", "WHEEL")]


@pytest.mark.parametrize("blob", [b"small", LARGE], ids=["threads", "processes"])
def test_a_bad_wheel_among_others_is_named(tmp_path, blob):
    good = make_wheel(tmp_path, "good", {"good/blob.bin": blob})
    bad = make_wheel(tmp_path, "bad", {"bad/__init__.py": b"X = 1\n"}, lie=True)
    with pytest.raises(wheel_units.WheelError) as raised:
        wheel_units.write_units(
            [(good, "https://example/good"), (bad, "https://example/bad")], tmp_path / "units"
        )
    assert str(raised.value).startswith("https://example/bad: bad/__init__.py does not match")
