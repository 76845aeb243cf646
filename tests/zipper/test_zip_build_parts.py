"""`build-parts`: several directories zipped in one process, each exactly as `build` zips it."""

from __future__ import annotations

import os
import zipfile

import pytest

from lambda_rules.zipper.cli import main
from tests.conftest import file_sha256_hex, write_tree, zipper_refuses


def test_each_part_is_what_build_writes(tmp_path, capsys):
    trees = [
        write_tree(tmp_path / "a", {"a/__init__.py": "A = 1\n", "a/data.json": "{}\n"}),
        write_tree(tmp_path / "b", {"b.py": "B = 2\n", "b-1.0.dist-info/RECORD": "b.py,,\n"}),
    ]
    parts = [str(tmp_path / f"parts/{index}/part.zip") for index in range(2)]
    argv = ["build-parts", "--part", str(trees[0]), parts[0], "--part", str(trees[1]), parts[1]]
    assert main([*argv, "--level", "9"]) == 0
    for index, tree in enumerate(trees):
        alone = tmp_path / f"alone-{index}.zip"
        assert main(["build", str(tree), "-o", str(alone), "--level", "9"]) == 0
        assert file_sha256_hex(tmp_path / f"parts/{index}/part.zip") == file_sha256_hex(alone)
    out = capsys.readouterr().out
    assert out.count("sha256:") == 4


def test_a_bad_part_is_refused_like_build(tmp_path, capsys):
    code = main(["build-parts", "--part", str(tmp_path / "missing"), str(tmp_path / "x.zip")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("lambda-zip: error: ") and "missing" in err


def _unit_tree(tmp_path):
    tree = write_tree(
        tmp_path / "unit",
        {"six.py": "X = 1\n" * 400, "six-1.0.dist-info/RECORD": "six.py,,\n", "bin/tool": "#!\n"},
    )
    os.chmod(tree / "bin/tool", 0o755)
    return tree


def test_a_stored_archive_repacks_to_what_build_writes_of_its_tree(tmp_path):
    """The rules pack each unit stored where pex lays it out, and compress by repacking it: the
    part must be byte-identical to a build of the unit's files, exec bits included."""
    tree = _unit_tree(tmp_path)
    stored, built, repacked = (tmp_path / n for n in ("stored.zip", "built.zip", "repacked.zip"))
    assert main(["build", str(tree), "-o", str(stored), "--store"]) == 0
    assert main(["build", str(tree), "-o", str(built), "--level", "9"]) == 0
    assert main(["repack", str(stored), "-o", str(repacked), "--level", "9"]) == 0
    assert file_sha256_hex(repacked) == file_sha256_hex(built)
    with zipfile.ZipFile(repacked) as archive:
        assert archive.getinfo("bin/tool").external_attr >> 16 & 0o111


def test_repack_parts_and_prefix_are_what_repack_and_build_write(tmp_path):
    tree = _unit_tree(tmp_path)
    stored = tmp_path / "stored.zip"
    assert main(["build", str(tree), "-o", str(stored), "--store"]) == 0
    parts = tmp_path / "parts"
    argv = ["build-parts", "--repack", str(stored), str(parts / "0.zip"), "--prefix", "python/"]
    assert main([*argv, "--part", str(tree), str(parts / "1.zip"), "--level", "6"]) == 0
    alone = [tmp_path / "repacked.zip", tmp_path / "built.zip"]
    assert (
        main(["repack", str(stored), "-o", str(alone[0]), "--prefix", "python", "--level", "6"])
        == 0
    )
    assert (
        main(["build", str(tree), "-o", str(alone[1]), "--prefix", "python/", "--level", "6"]) == 0
    )
    assert file_sha256_hex(parts / "0.zip") == file_sha256_hex(alone[0])
    assert file_sha256_hex(parts / "1.zip") == file_sha256_hex(alone[1])
    assert file_sha256_hex(alone[0]) == file_sha256_hex(alone[1])
    with zipfile.ZipFile(alone[0]) as archive:
        assert archive.namelist() == [
            "python/bin/tool",
            "python/six-1.0.dist-info/RECORD",
            "python/six.py",
        ]


@pytest.mark.parametrize("prefix", ["/abs/", "../up/", "a/../b/", "./", "a//b/"])
def test_a_prefix_that_is_not_a_plain_relative_directory_is_refused(tmp_path, capsys, prefix):
    tree = _unit_tree(tmp_path)
    err = zipper_refuses(tmp_path, capsys, "build", tree, "--prefix", prefix)
    assert "--prefix" in err and "python/" in err


def test_build_parts_without_inputs_is_refused(tmp_path, capsys):
    assert main(["build-parts"]) == 2
    assert "--part" in capsys.readouterr().err


def test_executables_decide_exec_bits_whatever_the_modes(tmp_path):
    """Pants links a file of 512 KB or more from its store (mode 0555) into a sandbox: the rules
    pass the exec bits their digests hold, for build, build-parts and merge's --tree alike."""
    tree = write_tree(tmp_path / "t", {"big.json": "{}\n", "bin/tool": "#!/bin/sh\n"})
    os.chmod(tree / "big.json", 0o555)
    os.chmod(tree / "bin/tool", 0o644)
    listed = tmp_path / "executables.txt"
    listed.write_text(f"{tree}/bin/tool\n")
    outs = [tmp_path / n for n in ("built.zip", "parts/0.zip", "merged.zip")]
    assert main(["build", str(tree), "-o", str(outs[0]), "--executables", str(listed)]) == 0
    argv = ["build-parts", "--part", str(tree), str(outs[1]), "--executables", str(listed)]
    assert main(argv) == 0
    argv = ["merge", "--tree", str(tree), "-o", str(outs[2]), "--executables", str(listed)]
    assert main(argv) == 0
    for out in outs:
        with zipfile.ZipFile(out) as archive:
            modes = {i.filename: i.external_attr >> 16 & 0o777 for i in archive.infolist()}
        assert modes == {"big.json": 0o644, "bin/tool": 0o755}, out
    # Without the list, the file's own mode decides, as before.
    assert main(["build", str(tree), "-o", str(tmp_path / "own.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "own.zip") as archive:
        assert archive.getinfo("big.json").external_attr >> 16 & 0o111
