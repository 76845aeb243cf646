"""Units written from several wheels at once: a path two wheels ship (a namespace `__init__.py`)
stays with the first distribution in name order, whichever wheel finishes first, in each way
`wheel_units.write_units` works: cached wheels laid out by threads, or by worker processes when
they are large enough (`zipper.pipeline.PARALLEL_MIN_BYTES` of wheels, on a machine with two CPUs
or more), and wheels still to fetch, each by a forked worker that also zips its unit early."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from lambda_rules import fetch, units, wheel_units
from lambda_rules.zipper import pieces
from lambda_rules.zipper.pipeline import PARALLEL_MIN_BYTES, available_cpus
from lambda_rules.zipper.repack import repack_zip
from tests.locks.test_bad_input import record_hash


def make_wheel(
    directory: Path,
    name: str,
    files: dict[str, bytes],
    *,
    lie: bool = False,
    executable: frozenset[str] = frozenset(),
) -> Path:
    """`name` 1.0, a pure wheel of `files` and its dist-info, `executable` ones with mode 755;
    with `lie`, RECORD states a wrong hash for every `.py` file."""
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
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if path in executable else 0o100644) << 16
            out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel


def archive_files(archive: Path) -> dict[str, bytes]:
    with pieces.open_input(archive) as f, zipfile.ZipFile(f) as stored:
        return {name: stored.read(name) for name in stored.namelist()}


def archive_modes(archive: Path) -> dict[str, int]:
    with pieces.open_input(archive) as f, zipfile.ZipFile(f) as stored:
        return {i.filename: i.external_attr >> 16 for i in stored.infolist()}


def wanted(wheel: Path) -> fetch.Wanted:
    return fetch.Wanted(wheel.as_uri(), hashlib.sha256(wheel.read_bytes()).hexdigest())


# Incompressible, so the wheels alone pass the threshold for worker processes.
LARGE = os.urandom(PARALLEL_MIN_BYTES + 1024)
# How write_units runs: (wheels already in the wheel cache, the size of a wheel's blob).
MODES = {"threads": (True, b"small"), "processes": (True, LARGE), "fetching": (False, b"small")}


def write(tmp_path: Path, wheels: list[Path], mode: str) -> Path:
    """`wheels` written into units by `write_units` in `mode`; the units' folder."""
    cache = fetch.WheelCache(tmp_path / "wheel-cache")
    if MODES[mode][0]:
        cache.fetch_all(map(wanted, wheels))
    early = None if MODES[mode][0] else wheel_units.EarlyParts(tmp_path / "early", 6, "")
    out = tmp_path / "units"
    wheel_units.write_units([wanted(w) for w in wheels], cache, out, early=early)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_a_path_two_wheels_ship_stays_with_the_first_in_name_order(tmp_path, mode):
    blob = MODES[mode][1]
    # beta is given first and is the larger: it is laid out first, alpha still keeps ns/.
    beta = make_wheel(
        tmp_path,
        "beta",
        {
            "ns/__init__.py": b"# beta's\n",
            "beta/__init__.py": b"B = 2\n",
            "beta/blob.bin": blob,
            "beta/run.sh": b"#!/bin/sh\n",
        },
        executable=frozenset({"beta/run.sh"}),
    )
    alpha = make_wheel(
        tmp_path, "alpha", {"ns/__init__.py": b"# alpha's\n", "alpha/__init__.py": b"A = 1\n"}
    )
    if mode == "processes" and available_cpus() > 1:
        with wheel_units._executor([w.stat().st_size for w in (beta, alpha)]) as executor:
            assert isinstance(executor, ProcessPoolExecutor)
    out = write(tmp_path, [beta, alpha], mode)

    listing = json.loads((out / units.UNITS_JSON).read_text())["units"]
    assert [unit["distribution"] for unit in listing] == [["alpha", "1.0"], ["beta", "1.0"]]
    alpha_files = archive_files(out / f"0.zip{pieces.SUFFIX}")
    beta_files = archive_files(out / f"1.zip{pieces.SUFFIX}")
    assert alpha_files["ns/__init__.py"] == b"# alpha's\n"
    assert "ns/__init__.py" not in beta_files
    assert beta_files["beta/blob.bin"] == blob
    # Written again without ns/__init__.py, beta's unit keeps each file's mode.
    assert archive_modes(out / f"1.zip{pieces.SUFFIX}") == {
        "beta/__init__.py": 0o100644,
        "beta/blob.bin": 0o100644,
        "beta/run.sh": 0o100755,
        "beta-1.0.dist-info/METADATA": 0o100644,
        "beta-1.0.dist-info/RECORD": 0o100644,
        "beta-1.0.dist-info/WHEEL": 0o100644,
    }
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
    if mode == "fetching":
        # alpha's unit is whole, so its early part is its part, as the unit's archive repacks.
        early = wheel_units.early_part(tmp_path / "early", listing[0]["sha256"])
        with zipfile.ZipFile(early) as part:
            assert {i.filename: part.read(i) for i in part.infolist()} == alpha_files
        repack_zip(out / f"0.zip{pieces.SUFFIX}", tmp_path / "later.zip", level=6)
        assert early.read_bytes() == (tmp_path / "later.zip").read_bytes()
        # beta lost ns/__init__.py: its early part is of the whole wheel, not of its unit.
        assert not wheel_units.early_part(tmp_path / "early", listing[1]["sha256"]).exists()


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_wheel_among_others_is_named(tmp_path, mode):
    good = make_wheel(tmp_path, "good", {"good/blob.bin": MODES[mode][1]})
    bad = make_wheel(tmp_path, "bad", {"bad/__init__.py": b"X = 1\n"}, lie=True)
    with pytest.raises(wheel_units.WheelError) as raised:
        write(tmp_path, [good, bad], mode)
    assert str(raised.value).startswith(f"{bad.as_uri()}: bad/__init__.py does not match")
