"""`build-parts`: several directories zipped in one process, each exactly as `build` zips it."""

from __future__ import annotations

from lambda_rules.zipper.cli import main
from tests.conftest import file_sha256_hex, write_tree


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
