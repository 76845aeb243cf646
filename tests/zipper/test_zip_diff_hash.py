"""diff explains each kind of difference; hash matches hashlib; the CLI's contract."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from lambda_rules.zipper import cli
from lambda_rules.zipper.cli import main


@pytest.fixture
def base_zip(zipper, golden_copy, tmp_path) -> Path:
    out = tmp_path / "a.zip"
    zipper.build_sha256(golden_copy, out)
    return out


def _diff(zipper, a: Path, b: Path, expect: int = 1) -> str:
    return zipper.run("diff", a, b, expect=expect).stdout


def test_identical_archives(zipper, base_zip, tmp_path):
    copy = tmp_path / "copy.zip"
    copy.write_bytes(base_zip.read_bytes())
    assert "byte-identical" in _diff(zipper, base_zip, copy, expect=0)


def test_added_removed_and_changed_content(zipper, golden_copy, base_zip, tmp_path):
    (golden_copy / "handler.py").write_text("changed\n")
    (golden_copy / "pkg" / "Zeta.py").unlink()
    (golden_copy / "new.txt").write_text("new\n")
    other = tmp_path / "b.zip"
    zipper.build_sha256(golden_copy, other)
    output = _diff(zipper, base_zip, other)
    assert f"only in {base_zip}: pkg/Zeta.py (76 bytes)" in output
    assert f"only in {other}: new.txt (4 bytes)" in output
    assert "handler.py: content differs: crc32 44d9c2f1, 573 bytes vs crc32" in output
    assert "bin/bootstrap" not in output


def test_mode_timestamp_method_and_level(zipper, golden_copy, base_zip, tmp_path):
    (golden_copy / "handler.py").chmod(0o755)
    moded = tmp_path / "mode.zip"
    zipper.build_sha256(golden_copy, moded)
    assert "handler.py: mode: 100644 vs 100755" in _diff(zipper, base_zip, moded)
    (golden_copy / "handler.py").chmod(0o644)

    timed = tmp_path / "time.zip"
    zipper.build_sha256(golden_copy, timed, "--timestamp", "1700000000")
    assert "handler.py: timestamp: 1980-01-01 00:00:00 vs 2023-11-14 22:13:20" in _diff(
        zipper, base_zip, timed
    )

    stored = tmp_path / "store.zip"
    zipper.build_sha256(golden_copy, stored, "--store")
    output = _diff(zipper, base_zip, stored)
    assert "handler.py: compression method: deflated vs stored" in output
    assert "pkg/data/blob.bin" not in output  # stored in both

    level1 = tmp_path / "level1.zip"
    zipper.build_sha256(golden_copy, level1, "--level", "1")
    assert "(same content, another compressor or level)" in _diff(zipper, base_zip, level1)


def test_info_zip_differences_are_named(zipper, golden_copy, base_zip, require_tool, tmp_path):
    info = tmp_path / "info.zip"
    subprocess.run([require_tool("zip"), "-q", "-r", str(info), "."], cwd=golden_copy, check=True)
    output = _diff(zipper, base_zip, info)
    assert f"only in {info}: pkg/ (directory entry)" in output
    assert (
        "handler.py: central extra fields: none vs 0x5455 UT extended timestamp, "
        "0x7875 ux Unix uid/gid" in output
    )
    assert "handler.py: local extra fields: none vs 0x5455" in output
    assert "handler.py: general purpose flags: 0x0800 vs 0x0000" in output
    assert "handler.py: version made by: Unix 2.0 vs Unix 3.0" in output
    assert "entry order differs" in output  # zip -r walks in directory order, not byte order


def test_order_comment_and_data_descriptor(zipper, tmp_path):
    def make(path: Path, names, comment=b"") -> Path:
        with zipfile.ZipFile(path, "w") as archive:
            for name in names:
                archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), name.encode())
            archive.comment = comment
        return path

    a = make(tmp_path / "a.zip", ["x.txt", "y.txt"])
    b = make(tmp_path / "b.zip", ["y.txt", "x.txt"], comment=b"hello")
    output = _diff(zipper, a, b)
    assert f"entry order differs: shared entry #1 is 'x.txt' in {a} but 'y.txt' in {b}" in output
    assert "archive comment: b'' vs b'hello'" in output

    with open(tmp_path / "stream.zip", "wb") as raw:  # unseekable-style output: data descriptors

        class Unseekable:
            def write(self, data):
                return raw.write(data)

            def flush(self):
                raw.flush()

        with zipfile.ZipFile(Unseekable(), "w") as archive:
            for name in ["x.txt", "y.txt"]:
                archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), name.encode())
    output = _diff(zipper, a, tmp_path / "stream.zip")
    assert "x.txt: data descriptor: absent vs present" in output
    assert "x.txt: general purpose flags: 0x0000 vs 0x0008" in output


def test_entry_comment_internal_and_dos_attributes(zipper, tmp_path):
    def make(path: Path, **fields) -> Path:
        info = zipfile.ZipInfo("x.txt", (1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        for name, value in fields.items():
            setattr(info, name, value)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(info, b"x")
        return path

    a = make(tmp_path / "a.zip")
    b = make(
        tmp_path / "b.zip", comment=b"note", internal_attr=1, external_attr=(0o100644 << 16) | 0x20
    )
    output = _diff(zipper, a, b)
    assert "x.txt: entry comment: b'' vs b'note'" in output
    assert "x.txt: internal attributes: 0x0000 vs 0x0001" in output
    assert "x.txt: MS-DOS attribute bits: 0x0000 vs 0x0020" in output
    assert "x.txt: mode" not in output


def test_diff_of_corrupt_archive_is_an_error(zipper, base_zip, tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(base_zip.read_bytes()[:100])
    result = zipper.run("diff", base_zip, broken, expect=2)
    assert result.stderr.startswith("lambda-zip: error: ") and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_hash_matches_hashlib_and_base64(zipper, base_zip):
    digest = hashlib.sha256(base_zip.read_bytes()).digest()
    line = zipper.run("hash", base_zip).stdout
    assert line == f"{digest.hex()}  {base64.b64encode(digest).decode()}  {base_zip}\n"
    document = json.loads(zipper.run("hash", base_zip, "--json").stdout)
    assert document == {
        "path": str(base_zip),
        "sha256_hex": digest.hex(),
        "sha256_base64": base64.b64encode(digest).decode(),
    }
    assert base64.b64decode(document["sha256_base64"]) == digest


def test_build_prints_one_line_and_writes_summary_json(zipper, golden_copy, tmp_path):
    out = tmp_path / "out.zip"
    summary_path = tmp_path / "summary.json"
    result = zipper.run("build", golden_copy, "-o", out, "--summary-json", summary_path)
    digest = hashlib.sha256(out.read_bytes()).digest()
    assert result.stdout == f"{out}  {out.stat().st_size} bytes  sha256:{digest.hex()}\n"
    document = json.loads(summary_path.read_text())
    assert document["sha256_base64"] == base64.b64encode(digest).decode()
    assert document["zipped_size"] == out.stat().st_size


@pytest.mark.parametrize("command", [[], ["build"], ["repack"], ["diff"], ["hash"]])
def test_help_for_each_subcommand(zipper, command):
    result = zipper.run(*command, "--help")
    assert result.stdout.startswith("usage: lambda-zip")


def test_only_the_verb_named_gets_arguments_yet_help_and_typos_see_every_verb(zipper):
    configured: list[object] = []
    probed = (*cli.VERBS, cli.Verb("probe", configured.append, help="records its parser"))
    cli.new_parser(probed, ["hash", "x.zip"])
    assert configured == []
    for argv in (["probe"], ["--help"], ["-h", "probe"], ["prbe"]):
        cli.new_parser(probed, argv)
    assert len(configured) == 4
    verbs = ["build", "build-parts", "repack", "merge", "diff", "hash"]
    listed = zipper.run("--help").stdout
    assert re.findall(r"^    ([a-z-]+)", listed, re.MULTILINE) == verbs
    assert "--max-ratio R" in zipper.run("repack", "--help").stdout
    # Options come before the verb only as `-h`: the whole list then, as before.
    assert "build-parts" in zipper.run("-h", "build").stdout
    typo = zipper.run("bulid", "x", expect=2).stderr
    assert "invalid choice: 'bulid'" in typo and all(f"'{verb}'" in typo for verb in verbs)
    # A verb's options are its own: another verb's are refused.
    refused = zipper.run("hash", "x.zip", "--max-ratio", "3", expect=2).stderr
    assert "unrecognized arguments: --max-ratio 3" in refused


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "x", "-o", "y.zip", "--level", "13"], "compression level 13 is out of range"),
        (
            ["build", "x", "-o", "y.zip", "--timestamp", "yesterday"],
            "--timestamp must be an integer",
        ),
        (["build", "x", "-o", "y.zip", "--workers", "0"], "--workers must be at least 1"),
        (["build", "x", "-o", "y.zip", "--exclude", "/abs"], "patterns are relative POSIX paths"),
        (["hash", "missing.zip"], "missing.zip: No such file or directory"),
    ],
)
def test_user_errors_exit_2_without_traceback(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("a")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lambda-zip: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "y.zip").exists()


def test_usage_errors_exit_2(zipper):
    result = zipper.run("build", "--level", "6", "--store", "-o", "x.zip", "dir", expect=2)
    assert "not allowed with argument" in result.stderr
