"""merge: builds of any split of a tree merge to the build of the whole; the rest is refused."""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from lambda_rules.zipper.build import build_zip
from lambda_rules.zipper.cli import main
from lambda_rules.zipper.errors import ZipError
from lambda_rules.zipper.merge import merge_zips
from lambda_rules.zipper.reader import read_archive
from lambda_rules.zipper.summary import ZipTotals
from tests.conftest import write_tree, zipper_refuses
from tests.zipper.test_zip_golden import GOLDEN_SHA256

REPO_ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ("pytest", "pluggy", "iniconfig", "py", "deflate")
"""Installed in the test interpreter (pytest and its dependencies, the zipper's compressor)."""


def _files(tree: Path) -> list[str]:
    return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())


def _build_parts(tree: Path, groups: list[list[str]], parts_dir: Path, **options) -> list[Path]:
    """One part per group of names, each built from a tree holding only those files."""
    parts = []
    for index, names in enumerate(groups):
        subset = parts_dir / f"subset{index}"
        for name in names:
            target = subset / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tree / name, target)  # content and mode bits
        part = parts_dir / f"part{index}.zip"
        build_zip(subset, part, workers=1, **options)
        parts.append(part)
    return parts


def _random_split(seed: int) -> Callable[[list[str]], list[list[str]]]:
    def split(names: list[str]) -> list[list[str]]:
        rng = random.Random(seed)
        groups: list[list[str]] = [[] for _ in range(rng.randint(2, 4))]
        for name in names:
            rng.choice(groups).append(name)
        return [group for group in groups if group]

    return split


def _by_top_level(names: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("/")[0], []).append(name)
    return list(groups.values())


SPLITS = {
    "top-level": _by_top_level,
    "alternating": lambda names: [names[0::2], names[1::2]],
    "random-1": _random_split(1),
    "random-7": _random_split(7),
    "random-42": _random_split(42),
    "one-per-file": lambda names: [[name] for name in names],
    "single-part": lambda names: [names],
}


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_any_split_of_the_golden_tree_merges_to_the_golden_build(golden_copy, tmp_path, split):
    whole = build_zip(golden_copy, tmp_path / "whole.zip", workers=1)
    parts = _build_parts(golden_copy, split(_files(golden_copy)), tmp_path)
    random.Random(0).shuffle(parts)  # argv order must not matter
    out, summary_json = tmp_path / "merged.zip", tmp_path / "merged.json"
    argv = ["merge", *map(str, parts), "-o", str(out), "--summary-json", str(summary_json)]
    assert main(argv) == 0
    assert out.read_bytes() == (tmp_path / "whole.zip").read_bytes()
    assert whole.sha256_hex == GOLDEN_SHA256
    assert summary_json.read_text(encoding="utf-8") == whole.to_json()
    if len(parts) == 1:
        assert out.read_bytes() == parts[0].read_bytes()


@pytest.mark.parametrize(
    "options",
    [
        {"level": 1},
        {"level": 12, "timestamp": 1_700_000_000},
        {"store": True, "timestamp": 1_234_567_890},
    ],
    ids=["level1", "level12-timestamp", "store-timestamp"],
)
def test_parts_built_with_other_options_merge_to_a_build_with_them(golden_copy, tmp_path, options):
    whole = build_zip(golden_copy, tmp_path / "whole.zip", workers=1, **options)
    parts = _build_parts(golden_copy, _random_split(3)(_files(golden_copy)), tmp_path, **options)
    assert whole.sha256_hex != GOLDEN_SHA256
    assert merge_zips(parts, tmp_path / "merged.zip") == whole
    assert (tmp_path / "merged.zip").read_bytes() == (tmp_path / "whole.zip").read_bytes()


def test_cli_merge_reports_like_build(zipper, golden_copy, tmp_path):
    out = tmp_path / "whole.zip"
    built = zipper.run("build", golden_copy, "-o", out, "--summary-json", tmp_path / "b.json")
    parts = _build_parts(golden_copy, _by_top_level(_files(golden_copy)), tmp_path)
    merged = zipper.run("merge", *parts, "-o", out, "--summary-json", tmp_path / "m.json")
    assert merged.stdout == built.stdout  # same output path, size and sha256
    assert GOLDEN_SHA256 in merged.stdout
    assert (tmp_path / "m.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    help_text = " ".join(zipper.run("merge", "--help").stdout.split())
    assert "canonical form are refused, not repacked" in help_text


def test_totals_json_is_the_summary_without_its_entries(zipper, golden_copy, tmp_path):
    """What the Pants rules read of every merge: the figures a manifest states, and no entry."""
    parts = _build_parts(golden_copy, _by_top_level(_files(golden_copy)), tmp_path)
    out, totals = tmp_path / "m.zip", tmp_path / "totals.json"
    zipper.run(
        "merge", *parts, "-o", out, "--summary-json", tmp_path / "s.json", "--totals-json", totals
    )
    summary = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    document = json.loads(totals.read_text(encoding="utf-8"))
    assert "entries" not in document
    assert document == {key: value for key, value in summary.items() if key != "entries"}
    assert document["sha256_hex"] == GOLDEN_SHA256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert document["zipped_size"] == out.stat().st_size
    assert document["entry_count"] == len(summary["entries"]) == len(read_archive(out).entries)
    assert ZipTotals.from_json(totals.read_bytes()) == ZipTotals.from_json(
        (tmp_path / "s.json").read_bytes()
    )


@pytest.mark.parametrize("tree_split", ["handler-only", "top-level"])
def test_tree_option_zips_a_directory_into_the_merge(golden_copy, tmp_path, tree_split):
    """`merge --tree DIR`: DIR's files zipped in the same process, as the Pants rules zip
    first-party code; the result is still the build of the whole tree."""
    groups = _by_top_level(_files(golden_copy))
    tree_names = groups.pop() if tree_split == "top-level" else [groups[-1].pop()]
    groups = [group for group in groups if group]
    parts = _build_parts(golden_copy, groups, tmp_path / "parts")
    tree = tmp_path / "first-party"
    for name in tree_names:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(golden_copy / name, tree / name)
    out = tmp_path / "out" / "merged.zip"
    argv = ["merge", *map(str, parts), "--tree", str(tree), "--workers", "1", "-o", str(out)]
    assert main([*argv, "--summary-json", str(tmp_path / "m.json")]) == 0
    whole = build_zip(golden_copy, tmp_path / "whole.zip", workers=1)
    assert out.read_bytes() == (tmp_path / "whole.zip").read_bytes()
    assert whole.sha256_hex == GOLDEN_SHA256
    assert (tmp_path / "m.json").read_text(encoding="utf-8") == whole.to_json()
    assert os.listdir(out.parent) == ["merged.zip"], "the tree's scratch part must not remain"
    # Only a tree: the same as build.
    only = tmp_path / "only.zip"
    assert main(["merge", "--tree", str(golden_copy), "-o", str(only)]) == 0
    assert only.read_bytes() == (tmp_path / "whole.zip").read_bytes()


def test_tree_clashing_with_a_part_or_its_timestamp_is_refused_naming_the_tree(
    tmp_path, capsys, good_part
):
    clash = write_tree(tmp_path / "clash", {"lib/util.py": b"X = 2\n"})
    err = zipper_refuses(tmp_path, capsys, "merge", good_part, "--tree", clash)
    assert f"'lib/util.py' is in both {good_part} and --tree {clash}" in err
    later = write_tree(tmp_path / "later", {"z.py": b"Z = 1\n"})
    err = zipper_refuses(
        tmp_path, capsys, "merge", good_part, "--tree", later, "--timestamp", "1700000000"
    )
    assert f"but --tree {later} has 2023-11-14 22:13:20" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = zipper_refuses(tmp_path, capsys, "merge", good_part, "--tree", empty)
    assert "nothing to zip" in err and f"--tree {empty}" in err


def _copy_installed_distributions(dest: Path) -> Path:
    """The files each distribution's RECORD lists, staged as a Lambda build would (no bytecode)."""
    for name in DISTRIBUTIONS:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or ():
            source = Path(distribution.locate_file(file))
            if file.parts[0] == ".." or "__pycache__" in file.parts or not source.is_file():
                continue
            target = dest / file.as_posix()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    (dest / "handler.py").write_text("def handler(event, context):\n    return event\n")
    (dest / "config" / "settings.json").parent.mkdir()
    (dest / "config" / "settings.json").write_text('{"stage": "test"}\n')
    return dest


def _split_by_record(tree: Path) -> list[list[str]]:
    """A group per `*.dist-info/RECORD`, then files no RECORD claims (as the Pants rules split)."""
    present = set(_files(tree))
    claimed: set[str] = set()
    groups = []
    for record in sorted(tree.glob("*.dist-info/RECORD")):
        with open(record, newline="", encoding="utf-8") as f:
            names = sorted({row[0] for row in csv.reader(f) if row and row[0] in present} - claimed)
        claimed.update(names)
        groups.append(names)
    groups.append(sorted(present - claimed))
    return groups


@pytest.fixture(scope="module")
def installed_merge(tmp_path_factory) -> tuple[Path, Path]:
    """(build of a tree of real installed packages, merge of its per-distribution parts)."""
    root = tmp_path_factory.mktemp("installed")
    tree = _copy_installed_distributions(root / "tree")
    assert sum((tree / name).stat().st_size for name in _files(tree)) < 8 << 20
    groups = _split_by_record(tree)
    assert len(groups) == len(DISTRIBUTIONS) + 1 and all(groups)
    assert groups[-1] == ["config/settings.json", "handler.py"]
    whole = build_zip(tree, root / "whole.zip", workers=1)
    merged = merge_zips(_build_parts(tree, groups, root / "parts"), root / "merged.zip")
    assert merged == whole
    return root / "whole.zip", root / "merged.zip"


def test_per_distribution_parts_of_installed_packages_merge_to_the_whole_build(installed_merge):
    whole, merged = installed_merge
    assert merged.read_bytes() == whole.read_bytes()
    modes = {info.external_attr >> 16 for info in zipfile.ZipFile(merged).infolist()}
    assert modes == {0o100644, 0o100755}  # the compiled extension keeps its exec bit


def _run(command: list) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, encoding="utf-8", errors="replace"
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_independent_readers_accept_the_merged_archive(installed_merge, require_tool):
    merged = installed_merge[1]
    names = [entry.name for entry in read_archive(merged).entries]
    assert "No errors detected" in _run([require_tool("unzip"), "-t", str(merged)])
    assert _run([require_tool("bsdtar"), "-tf", str(merged)]).splitlines() == names
    seven = _run([require_tool("7z"), "t", str(merged)])
    assert "Everything is Ok" in seven and f"Files: {len(names)}" in seven
    with zipfile.ZipFile(merged) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == names


def _part(tmp_path: Path, stem: str, files: dict, **options) -> Path:
    out = tmp_path / "parts" / f"{stem}.zip"
    out.parent.mkdir(exist_ok=True)
    build_zip(write_tree(tmp_path / "trees" / stem, files), out, workers=1, **options)
    return out


@pytest.fixture
def good_part(tmp_path) -> Path:
    files = {"handler.py": b"def handler(event, context):\n    pass\n", "lib/util.py": b"X = 1\n"}
    return _part(tmp_path, "good", files)


def test_a_path_in_two_parts_is_refused_naming_both_parts(tmp_path, capsys, good_part):
    other = _part(tmp_path, "other", {"handler.py": b"different\n", "z.py": b""})
    err = zipper_refuses(tmp_path, capsys, "merge", good_part, other)
    assert f"'handler.py' is in both {good_part} and {other}" in err


def test_parts_with_different_timestamps_are_refused(tmp_path, capsys, good_part):
    later = _part(tmp_path, "later", {"z.py": b"Z = 1\n"}, timestamp=1_700_000_000)
    err = zipper_refuses(tmp_path, capsys, "merge", good_part, later)
    expected = f"{good_part} has timestamp 1980-01-01 00:00:00 but {later} has 2023-11-14 22:13:20"
    assert expected in err
    assert "--timestamp" in err


def _stdlib_zipfile(path: Path, crafter) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("other.py", date_time=(1980, 1, 1, 0, 0, 0)), "X = 2\n")
    return path


_UT_EXTRA = b"UT\x05\x00\x01\x00\x00\x00\x00"


def _crafted(*entries: dict, **options) -> Callable:
    """A maker of a hand-written archive whose entries are given as crafter.Entry arguments."""
    return lambda path, crafter: crafter.write(
        path, [crafter.Entry(**entry) for entry in entries], **options
    )


NON_CANONICAL = {
    "stdlib-zipfile": (_stdlib_zipfile, "local header of 'other.py': flags is 0x0"),
    "directory-entry": (
        _crafted(
            dict(name="other/", data=b"", method=0, external_attr=(0o40755 << 16) | 0x10),
            dict(name="other/a.py"),
        ),
        "it has a directory entry 'other/'",
    ),
    "extra-field": (
        _crafted(dict(name="other.py", extra=_UT_EXTRA)),
        "local header of 'other.py': extra field length is 0x9, the canonical value is 0x0",
    ),
    "group-writable-mode": (
        _crafted(dict(name="other.py", external_attr=0o100664 << 16)),
        "central header of 'other.py': external attributes is 0x81b40000",
    ),
    "unsorted": (
        _crafted(dict(name="z.py"), dict(name="other.py")),
        "not sorted by UTF-8 name bytes ('z.py' comes before 'other.py')",
    ),
    "two-timestamps": (
        _crafted(dict(name="other.py"), dict(name="z.py", dos_date=0x21 + 32)),
        "more than one timestamp ('other.py': 1980-01-01 00:00:00, 'z.py': 1980-02-01 00:00:00)",
    ),
    "archive-comment": (
        _crafted(dict(name="other.py"), comment=b"built by hand"),
        "end records are not the canonical ones",
    ),
}


@pytest.mark.parametrize("make, problem", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_non_canonical_part_is_refused_until_repacked(
    tmp_path, capsys, crafter, good_part, make, problem
):
    bad = make(tmp_path / "bad.zip", crafter)
    err = zipper_refuses(tmp_path, capsys, "merge", good_part, bad)
    assert f"{bad} is not in the canonical form `lambda-zip build` writes (" in err
    assert problem in err
    assert f"Run `lambda-zip repack {bad} -o FIXED.zip`" in err
    assert str(good_part) not in err
    fixed = tmp_path / "fixed.zip"
    assert main(["repack", str(bad), "-o", str(fixed)]) == 0
    assert main(["merge", str(good_part), str(fixed), "-o", str(tmp_path / "merged.zip")]) == 0


def test_local_header_differing_from_a_canonical_central_directory_is_refused(
    tmp_path, capsys, good_part
):
    """merge reads a part's central directory, and checks each local header as it copies."""
    data = bytearray(good_part.read_bytes())
    second = data.index(b"PK\x03\x04", 4)  # the second entry's local header
    data[second + 4] = 10  # version needed 1.0 instead of 2.0
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    other = _part(tmp_path, "other", {"a.py": b"A = 1\n"})
    err = zipper_refuses(tmp_path, capsys, "merge", other, bad)
    assert f"{bad} is not in the canonical form" in err
    assert (
        "local header of 'lib/util.py': version needed is 0xa, the canonical value is 0x14" in err
    )


def test_crafted_archive_with_canonical_headers_is_accepted(tmp_path, crafter, good_part):
    """Each refusal above is about the one property it breaks: crafter's defaults are canonical."""
    entries = [crafter.Entry("other.py"), crafter.Entry("z.py")]
    crafted = crafter.write(tmp_path / "crafted.zip", entries)
    summary = merge_zips([good_part, crafted], tmp_path / "merged.zip")
    assert [e.name for e in summary.entries] == ["handler.py", "lib/util.py", "other.py", "z.py"]
    with zipfile.ZipFile(tmp_path / "merged.zip") as archive:
        assert archive.testzip() is None


def test_truncated_and_non_zip_and_missing_parts_are_refused(tmp_path, capsys, good_part):
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good_part.read_bytes()[:-10])
    assert f"{truncated}: no end-of-central-directory record" in zipper_refuses(
        tmp_path, capsys, "merge", good_part, truncated
    )
    text = tmp_path / "notes.zip"
    text.write_text("not an archive\n")
    assert f"{text}: no end-of-central-directory record: not a ZIP archive" in zipper_refuses(
        tmp_path, capsys, "merge", text, good_part
    )
    missing = tmp_path / "missing.zip"
    err = zipper_refuses(tmp_path, capsys, "merge", good_part, missing)
    assert f"{missing}: No such file or directory" in err


def test_failed_merge_leaves_an_existing_output_untouched(tmp_path, capsys, good_part):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.zip"
    out.write_bytes(b"previous build")
    assert main(["merge", str(good_part), str(good_part), "-o", str(out)]) == 2
    assert "is in both" in capsys.readouterr().err
    assert out.read_bytes() == b"previous build"
    assert os.listdir(out_dir) == ["out.zip"]


def test_zero_parts_are_refused(tmp_path, capsys):
    with pytest.raises(ZipError, match="no parts to merge"):
        merge_zips([], tmp_path / "out.zip")
    assert main(["merge", "-o", str(tmp_path / "out.zip")]) == 2
    assert "merge needs PART.zip archives" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


_PEAK_RSS_OF_CHILD = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"  # KiB on Linux
)


def _peak_rss_kib(*args) -> int:
    """Peak RSS of `python -m lambda_rules.zipper ARGS`, from a fresh parent with no other child."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = [sys.executable, "-m", "lambda_rules.zipper", *map(str, args)]
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_OF_CHILD, *command],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_merge_streams_payloads_in_bounded_memory(tmp_path, good_part):
    entry_size = 64 << 20
    big_tree = tmp_path / "big"
    big_tree.mkdir()
    (big_tree / "blob.bin").write_bytes(os.urandom(entry_size))
    big_part = tmp_path / "big.zip"
    build_zip(big_tree, big_part, store=True, workers=1)
    (big_tree / "blob.bin").unlink()
    out = tmp_path / "merged.zip"
    baseline = _peak_rss_kib("hash", good_part)  # same interpreter and imports, no payload
    peak = _peak_rss_kib("merge", big_part, good_part, "-o", out)
    print(f"peak RSS: merge {peak} KiB, baseline {baseline} KiB, entry {entry_size >> 10} KiB")
    assert peak - baseline < 16 << 10, (peak, baseline)
    assert peak < (entry_size >> 10) // 2, (peak, baseline)
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["blob.bin", "handler.py", "lib/util.py"]
        assert archive.getinfo("blob.bin").compress_type == zipfile.ZIP_STORED
        assert archive.testzip() is None
