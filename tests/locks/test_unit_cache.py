"""The unit cache: a wheel laid out once is not read again, by any set of wheels that pins it,
and gives the same units; a damaged entry is laid out again; a cache that cannot be written is no
error. Real wheels made here, read by `installer`; the units compared byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from lambda_rules import fetch, sandbox_files, units, wheel_units
from lambda_rules.unit_cache import UnitCache
from tests.locks.test_shared_paths import MODES, make_wheel, wanted


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def write(tmp_path: Path, name: str, wheels: list[fetch.Wanted], mode: str, cache: Path) -> Path:
    """`wheels` written into units in `mode` (`MODES`), with the unit cache at `cache`."""
    wheel_cache = fetch.WheelCache(tmp_path / f"wheels-{name}")
    if MODES[mode][0]:
        wheel_cache.fetch_all(w for w in wheels if Path(w.url[len("file://") :]).exists())
    early = None if MODES[mode][0] else wheel_units.EarlyParts(tmp_path / f"early-{name}", 6, "")
    out = tmp_path / name
    wheel_units.write_units(wheels, wheel_cache, out, early=early, unit_cache=UnitCache(cache))
    return out


def wheels(tmp_path: Path, blob: bytes) -> dict[str, Path]:
    """alpha and beta both ship `ns/__init__.py`, which stays with alpha; gamma is alone."""
    folder = tmp_path / "made"
    folder.mkdir()
    return {
        "alpha": make_wheel(folder, "alpha", {"ns/__init__.py": b"# a\n", "alpha/a.py": b"A\n"}),
        "beta": make_wheel(
            folder, "beta", {"ns/__init__.py": b"# b\n", "beta/b.py": b"B\n", "beta/x.bin": blob}
        ),
        "gamma": make_wheel(folder, "gamma", {"gamma/g.py": b"G\n"}),
    }


@pytest.mark.parametrize("mode", MODES)
def test_a_wheel_laid_out_once_is_not_read_again(tmp_path, mode):
    made = wheels(tmp_path, MODES[mode][1])
    pinned = {name: wanted(wheel) for name, wheel in made.items()}
    cache = tmp_path / "units"
    first = tree(write(tmp_path, "first", [pinned["beta"], pinned["alpha"]], mode, cache))
    plain = tree(write(tmp_path, "plain", [pinned["beta"], pinned["alpha"]], mode, tmp_path / "x"))
    assert first == plain

    # Without the wheels, nor any wheel cache, the same units come from the unit cache alone: a
    # fetch would fail (the wheels' file:// URLs are gone). beta loses ns/__init__.py again.
    (tmp_path / "kept").mkdir()
    kept = shutil.copy(made["beta"], tmp_path / "kept")
    made["alpha"].unlink()
    made["beta"].unlink()
    again = tree(write(tmp_path, "again", [pinned["alpha"], pinned["beta"]], mode, cache))
    assert again == first

    # Another set that shares a wheel reads only the wheel it has not seen.
    other = write(tmp_path, "other", [pinned["gamma"], pinned["beta"]], mode, cache)
    alone = [pinned["gamma"], wanted(Path(kept))]
    assert tree(other) == tree(write(tmp_path, "expected", alone, mode, tmp_path / "y"))


def assert_written_whole_again(
    tmp_path: Path, pinned: list[fetch.Wanted], used: list[Path], cache: Path, first: dict
) -> None:
    """The units are `first` again, laid out anew; then, with the wheels gone, from the cache
    alone: the entry was written whole again."""
    assert tree(write(tmp_path, "second", pinned, "threads", cache)) == first
    for wheel in used:
        wheel.unlink()
    assert tree(write(tmp_path, "third", pinned, "fetching", cache)) == first


def test_a_damaged_entry_is_laid_out_again(tmp_path):
    made = wheels(tmp_path, b"blob")
    pinned = [wanted(made["alpha"]), wanted(made["beta"])]
    cache = tmp_path / "units"
    first = tree(write(tmp_path, "first", pinned, "threads", cache))
    # alpha's unit is kept whole: a changed byte of a stored file would reach the package.
    piece = next((cache / pinned[0].sha256[:2] / pinned[0].sha256).rglob("000000"))
    damaged = piece.read_bytes().replace(b"# a\n", b"# A\n")
    assert damaged != piece.read_bytes()
    piece.unlink()  # a link: writing through it would damage the first units too
    piece.write_bytes(damaged)

    assert_written_whole_again(tmp_path, pinned, [made["alpha"], made["beta"]], cache, first)


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path):
    made = wheels(tmp_path, b"blob")
    pinned = [wanted(made["gamma"])]
    not_a_folder = tmp_path / "units"
    not_a_folder.write_bytes(b"")
    written = write(tmp_path, "written", pinned, "threads", not_a_folder)
    expected = write(tmp_path, "expected", pinned, "threads", tmp_path / "elsewhere")
    assert tree(written) == tree(expected)


def test_the_cache_is_named_by_every_source_that_lays_wheels_out():
    sources = sandbox_files.layout_sources()
    assert "lambda_rules/wheel_units.py" in sources
    assert any(path.startswith("installer/") for path in sources)
    name = sandbox_files.fingerprint(sources)
    for path in ("lambda_rules/wheel_units.py", "installer/sources.py"):
        edited = {**sources, path: sources[path] + b"\n"}
        assert sandbox_files.fingerprint(edited) != name
    assert sandbox_files.fingerprint({"a": b"1", "b": b""}) != sandbox_files.fingerprint(
        {"a": b"", "b": b"1"}
    )


def entry_of(cache: Path, wheel: fetch.Wanted) -> Path:
    (entry,) = (cache / wheel.sha256[:2] / wheel.sha256).iterdir()
    return entry


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: doc.replace(b'\\"size', b'\\"SIZE'),  # a key renamed inside the unit
        lambda doc: doc.replace(b"beta", b"bet4"),  # the distribution's name
        lambda doc: b'{"unit": "{\\"metadata\\": []}", "sha256": "0"}',
        lambda doc: b"[]",
        lambda doc: doc[: len(doc) // 2],
    ],
    ids=["key", "name", "types", "not-an-object", "truncated"],
)
def test_a_damaged_document_is_laid_out_again(tmp_path, damage):
    made = wheels(tmp_path, b"blob")
    pinned = [wanted(made["beta"])]
    cache = tmp_path / "units"
    first = tree(write(tmp_path, "first", pinned, "threads", cache))
    document = entry_of(cache, pinned[0]) / "unit.json"
    damaged = damage(document.read_bytes())
    assert damaged != document.read_bytes()
    document.write_bytes(damaged)
    assert_written_whole_again(tmp_path, pinned, [made["beta"]], cache, first)


def test_an_entry_left_half_written_is_written_whole_again(tmp_path):
    made = wheels(tmp_path, b"blob")
    pinned = [wanted(made["gamma"])]
    cache = tmp_path / "units"
    first = tree(write(tmp_path, "first", pinned, "threads", cache))
    (entry_of(cache, pinned[0]) / "unit.json").unlink()
    assert_written_whole_again(tmp_path, pinned, [made["gamma"]], cache, first)


def test_the_same_bytes_under_another_file_name_are_not_the_same_unit(tmp_path):
    """installer takes the version from the file name: the bytes of a wheel renamed must not find
    the unit of the name they had before, or the cache would decide the version."""
    made = wheels(tmp_path, b"blob")
    cache = tmp_path / "units"
    write(tmp_path, "first", [wanted(made["gamma"])], "threads", cache)
    renamed = made["gamma"].rename(made["gamma"].with_name("gamma-2.0-py3-none-any.whl"))
    second = write(tmp_path, "second", [wanted(renamed)], "threads", cache)
    listing = json.loads((second / units.UNITS_JSON).read_text())["units"]
    assert [unit["distribution"] for unit in listing] == [["gamma", "2.0"]]
    alone = write(tmp_path, "alone", [wanted(renamed)], "threads", tmp_path / "elsewhere")
    assert tree(second) == tree(alone)


def test_what_a_killed_run_left_beside_an_entry_is_removed_once_old(tmp_path):
    """A run killed while it kept or removed an entry leaves a temporary folder beside it; a later
    run that reads the entry (a hit) or writes it (a miss) removes it, unless it is young enough
    to be a live run's."""
    made = wheels(tmp_path, b"blob")
    pinned = [wanted(made["gamma"])]
    cache = tmp_path / "units"
    first = tree(write(tmp_path, "first", pinned, "threads", cache))
    entry = entry_of(cache, pinned[0])

    def leave(*names: str, age: float) -> None:
        for name in names:
            (entry.parent / name / "unit.zip.pieces").mkdir(parents=True)
            os.utime(entry.parent / name, (time.time() - age, time.time() - age))

    leave(".put-killed", ".damaged-killed", age=7200)
    leave(".put-live", age=60)
    assert tree(write(tmp_path, "hit", pinned, "threads", cache)) == first
    assert sorted(p.name for p in entry.parent.iterdir()) == sorted([entry.name, ".put-live"])

    shutil.rmtree(entry)
    leave(".put-killed-again", age=7200)
    assert tree(write(tmp_path, "miss", pinned, "threads", cache)) == first
    assert sorted(p.name for p in entry.parent.iterdir()) == sorted([entry.name, ".put-live"])


def test_a_layout_no_run_has_used_for_30_days_is_removed(tmp_path):
    """Each version of the laying-out sources keeps its units in a folder of its own: an upgrade
    must not leave the old one for good. A run marks its own as used; another layout's folder
    goes once unused for 30 days, a recently used one stays, and nothing else is touched."""
    made = wheels(tmp_path, b"blob")
    layouts = tmp_path / "units"
    current, recent, old = (layouts / (c * 64) for c in "abc")
    other = layouts / "not-a-layout"
    for folder, days in ((current, 40), (recent, 29), (old, 31), (other, 400)):
        (folder / "00").mkdir(parents=True)
        os.utime(folder, (time.time() - days * 86400,) * 2)
    (layouts / ".retired-killed" / ("d" * 64)).mkdir(parents=True)
    first = tree(write(tmp_path, "first", [wanted(made["gamma"])], "threads", current))
    assert sorted(p.name for p in layouts.iterdir()) == sorted(
        [current.name, recent.name, other.name]
    )
    assert current.stat().st_mtime > time.time() - 60
    assert tree(write(tmp_path, "again", [wanted(made["gamma"])], "threads", current)) == first
