"""build: symlinks, special files and failures, which must never leave partial output."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lambda_rules.zipper.archive import ArchiveWriter
from lambda_rules.zipper.build import build_zip
from lambda_rules.zipper.cli import main
from lambda_rules.zipper.errors import InputTreeError
from lambda_rules.zipper.tree import SourceFile
from tests.conftest import interrupts_as_in_a_terminal, write_tree, zipper_refuses


def test_dangling_symlink_is_an_error_naming_it(tmp_path, capsys):
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    (tree / "pkg").mkdir()
    (tree / "pkg" / "gone.py").symlink_to("missing.py")
    err = zipper_refuses(tmp_path, capsys, "build", tree)
    assert f"{tree}/pkg/gone.py: symlink to 'missing.py' dangles" in err


def test_excluded_dangling_symlink_is_ignored(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    (tree / "stale.pyc").symlink_to("missing.pyc")
    summary = build_zip(tree, tmp_path / "out.zip")
    assert [e.name for e in summary.entries] == ["a.py"]


def test_symlink_escaping_the_root_is_an_error(tmp_path, capsys):
    write_tree(tmp_path, {"outside.txt": b"secret"})
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    (tree / "escape.txt").symlink_to(tmp_path / "outside.txt")
    err = zipper_refuses(tmp_path, capsys, "build", tree)
    assert f"{tree}/escape.txt: symlink resolves to {tmp_path}/outside.txt, outside {tree}" in err


def test_relative_symlink_climbing_out_is_an_error(tmp_path, capsys):
    write_tree(tmp_path, {"sibling/x.py": b"x"})
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    (tree / "up").symlink_to("../sibling")
    assert "up: symlink resolves to" in zipper_refuses(tmp_path, capsys, "build", tree)


def test_symlinks_inside_root_store_target_content_and_mode(tmp_path):
    tree = write_tree(tmp_path / "tree", {"real/run.sh": b"#!/bin/sh\n", "real/data.txt": b"data"})
    (tree / "real" / "run.sh").chmod(0o755)
    (tree / "alias.sh").symlink_to("real/run.sh")
    (tree / "linked_dir").symlink_to("real", target_is_directory=True)
    summary = build_zip(tree, tmp_path / "out.zip")
    assert [(e.name, e.mode) for e in summary.entries] == [
        ("alias.sh", 0o755),
        ("linked_dir/data.txt", 0o644),
        ("linked_dir/run.sh", 0o755),
        ("real/data.txt", 0o644),
        ("real/run.sh", 0o755),
    ]
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.read("linked_dir/data.txt") == b"data"
        assert archive.getinfo("alias.sh").external_attr >> 16 == 0o100755


def test_symlinked_root_is_followed(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    (tmp_path / "root-link").symlink_to(tree)
    assert (
        build_zip(tmp_path / "root-link", tmp_path / "a.zip").sha256_hex
        == build_zip(tree, tmp_path / "b.zip").sha256_hex
    )


def test_symlink_cycle_is_an_error(tmp_path, capsys):
    tree = write_tree(tmp_path / "tree", {"pkg/a.py": b"a"})
    (tree / "pkg" / "loop").symlink_to("..", target_is_directory=True)
    assert "pkg/loop: symlink to a directory that contains it (a cycle)" in zipper_refuses(
        tmp_path, capsys, "build", tree
    )


def test_fifo_is_an_error_naming_it(tmp_path, capsys):
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    os.mkfifo(tree / "pipe")
    err = zipper_refuses(tmp_path, capsys, "build", tree)
    assert f"{tree}/pipe: named pipe (FIFO) cannot be stored" in err
    (tmp_path / "out").rmdir()
    assert main(["build", str(tree), "-o", str(tmp_path / "ok.zip"), "--exclude", "pipe"]) == 0


def test_socket_is_an_error(tmp_path, capsys):
    import socket

    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tree / "sock"))
        assert "sock: socket cannot be stored" in zipper_refuses(tmp_path, capsys, "build", tree)
    finally:
        server.close()


def test_non_utf8_and_backslash_names_are_errors(tmp_path, capsys):
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    Path(os.fsdecode(bytes(tree) + b"/caf\xe9.txt")).write_bytes(b"latin-1 name")
    assert "file name is not valid UTF-8; rename it" in zipper_refuses(
        tmp_path, capsys, "build", tree
    )
    os.remove(os.fsdecode(bytes(tree) + b"/caf\xe9.txt"))
    (tree / "back\\slash.txt").write_bytes(b"x")
    assert "contains a backslash" in zipper_refuses(tmp_path, capsys, "build", tree)


def test_missing_or_empty_input_and_bad_output(tmp_path, capsys):
    assert "not a directory" in zipper_refuses(tmp_path, capsys, "build", tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "only" / "dirs").mkdir(parents=True)
    (empty / "only" / "x.pyc").write_bytes(b"")
    assert "nothing to zip" in zipper_refuses(tmp_path, capsys, "build", empty)
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    assert main(["build", str(tree), "-o", str(tmp_path / "no" / "such" / "dir.zip")]) == 2
    assert "output directory" in capsys.readouterr().err
    assert main(["build", str(tree), "-o", str(tree / "self.zip")]) == 2
    assert "output is inside the input directory" in capsys.readouterr().err
    assert not (tree / "self.zip").exists()


def test_unreadable_file_mid_way_leaves_nothing(tmp_path, monkeypatch):
    tree = write_tree(tmp_path / "tree", {f"f{i}.txt": b"x" * 100 for i in range(5)})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    original = SourceFile.read

    def read_fails_on_third(self):
        if self.name == "f2.txt":
            raise InputTreeError(f"{self.path}: cannot read it (Permission denied)")
        return original(self)

    monkeypatch.setattr(SourceFile, "read", read_fails_on_third)
    with pytest.raises(InputTreeError, match="f2.txt: cannot read it"):
        build_zip(tree, out_dir / "out.zip", workers=1)
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_keyboard_interrupt_mid_write_removes_temp_file(tmp_path, monkeypatch, workers):
    tree = write_tree(
        tmp_path / "tree", {f"f{i:03d}.txt": os.urandom(64) * 400 for i in range(300)}
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "out.zip").write_bytes(b"previous build")
    original = ArchiveWriter.add
    calls = []

    def add_then_interrupt(self, name, executable, entry):
        calls.append(name)
        if len(calls) == 100:
            assert any(p.name.endswith(".partial") for p in out_dir.iterdir())
            raise KeyboardInterrupt
        return original(self, name, executable, entry)

    monkeypatch.setattr(ArchiveWriter, "add", add_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_zip(tree, out_dir / "out.zip", workers=workers)
    assert os.listdir(out_dir) == ["out.zip"]
    assert (out_dir / "out.zip").read_bytes() == b"previous build"
    assert multiprocessing.active_children() == []


def test_sigint_to_the_cli_mid_build_leaves_nothing(tmp_path):
    # Slow on purpose (level 12, 24 MB) so the signal lands while the temp file is being written.
    tree = tmp_path / "tree"
    tree.mkdir()
    chunk = b"".join(b"%d lambda payload %d\n" % (i, i * i % 977) for i in range(40_000))
    for i in range(16):
        (tree / f"part{i:02d}.txt").write_bytes(chunk[i:] + chunk[:i])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lambda_rules.zipper",
            "build",
            str(tree),
            "-o",
            str(out_dir / "out.zip"),
            "--level",
            "12",
            "--workers",
            "2",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interrupts_as_in_a_terminal,
    )
    deadline = time.monotonic() + 30
    while not any(p.name.endswith(".partial") for p in out_dir.iterdir()):
        assert process.poll() is None, "build finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted; no output was written" in err and "Traceback" not in err
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize(
    "name, shown",
    [("a\nb.py", "'\\n'"), ("esc\x1b[2J.txt", "'\\x1b'"), ("nel\u0085.txt", "'\\x85'")],
)
def test_control_characters_in_file_names_are_errors(tmp_path, capsys, name, shown):
    relative = f"pkg/{name}"
    tree = write_tree(tmp_path / "tree", {"a.py": b"a", relative: b"x"})
    err = zipper_refuses(tmp_path, capsys, "build", tree)
    assert f"{tree}/{relative!r}: file name contains the control character {shown}" in err
    assert err.count("\n") == 1, "the control character must not reach the terminal raw"


def test_control_characters_in_directory_names_are_errors(tmp_path, capsys):
    tree = write_tree(tmp_path / "tree", {"a.py": b"a", "new\nline/b.py": b"b"})
    assert "'new\\nline/b.py': file name contains the control character '\\n'" in zipper_refuses(
        tmp_path, capsys, "build", tree
    )


def test_an_output_and_its_folder_are_fsynced_unless_it_is_a_scratch_file(tmp_path, monkeypatch):
    tree = write_tree(tmp_path / "tree", {"a.py": b"a"})
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    build_zip(tree, tmp_path / "out.zip")
    (written, folder) = synced
    assert written.startswith(f"{tmp_path}/.out.zip.") and written.endswith(".partial")
    assert folder == str(tmp_path)
    synced.clear()
    build_zip(tree, tmp_path / "scratch.zip", durable=False)
    assert synced == []
    assert (tmp_path / "scratch.zip").read_bytes() == (tmp_path / "out.zip").read_bytes()
