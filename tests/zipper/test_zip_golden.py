"""The golden archive, and every perturbation of the host that must not change it."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from lambda_rules.zipper.build import build_zip
from lambda_rules.zipper.pipeline import BATCH_BYTES, BATCH_ENTRIES

GOLDEN_SHA256 = "7206fd9496c4f8333aa7af4f4b364dfb6dc477c684461d8112d5cabd55782339"
"""`lambda-zip build tests/zipper/golden_tree` at the default level. Changing it is a format
change."""

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_checkout_of_golden_tree_zips_to_golden_sha256(zipper, golden_tree, tmp_path):
    # Straight from the git checkout: its mtimes and umask are whatever git left.
    assert zipper.build_sha256(golden_tree, tmp_path / "out.zip") == GOLDEN_SHA256


def test_copy_of_golden_tree_zips_to_golden_sha256(zipper, golden_copy, tmp_path):
    assert zipper.build_sha256(golden_copy, tmp_path / "out.zip") == GOLDEN_SHA256


def test_touched_mtimes(zipper, golden_copy, tmp_path):
    for index, path in enumerate(sorted(golden_copy.rglob("*"))):
        os.utime(path, (1_000_000_000 + index * 7919, 2_000_000_001 + index * 104729))
    assert zipper.build_sha256(golden_copy, tmp_path / "out.zip") == GOLDEN_SHA256


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000], ids=lambda m: f"umask{m:03o}")
def test_umask_of_creating_and_zipping_process(zipper, make_golden_copy, tmp_path, umask):
    tree = make_golden_copy(tmp_path / "tree", umask=umask)
    out = tmp_path / "out.zip"
    assert zipper.build_sha256(tree, out, umask=umask) == GOLDEN_SHA256
    assert out.stat().st_mode & 0o777 == 0o644


def test_permission_bits_other_than_any_exec_bit_are_ignored(zipper, golden_copy, tmp_path):
    modes = [0o600, 0o644, 0o444, 0o664, 0o640]
    for index, path in enumerate(sorted(p for p in golden_copy.rglob("*") if p.is_file())):
        if path.name == "bootstrap":
            path.chmod(0o700)  # one execute bit is enough
        else:
            path.chmod(modes[index % len(modes)])
    for directory in (p for p in golden_copy.rglob("*") if p.is_dir()):
        directory.chmod(0o700)
    assert zipper.build_sha256(golden_copy, tmp_path / "out.zip") == GOLDEN_SHA256


@pytest.mark.parametrize("mode", [0o755, 0o744, 0o654, 0o645], ids=lambda m: f"mode{m:03o}")
def test_any_single_exec_bit_makes_an_entry_executable(zipper, golden_copy, tmp_path, mode):
    (golden_copy / "handler.py").chmod(mode | 0o400)
    differs = zipper.build_sha256(golden_copy, tmp_path / "out.zip")
    assert differs != GOLDEN_SHA256
    (golden_copy / "handler.py").chmod(0o644)
    (golden_copy / "bin" / "bootstrap").chmod(mode | 0o400)
    assert zipper.build_sha256(golden_copy, tmp_path / "out2.zip") == GOLDEN_SHA256


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_file_creation_order(zipper, make_golden_copy, tmp_path, order):
    def arrange(files):
        files = sorted(files)
        if order == "reversed":
            return list(reversed(files))
        random.Random(1234).shuffle(files)
        return files

    tree = make_golden_copy(tmp_path / "tree", order=arrange)
    assert zipper.build_sha256(tree, tmp_path / "out.zip") == GOLDEN_SHA256


def test_absolute_path_and_working_directory(zipper, make_golden_copy, tmp_path):
    deep = make_golden_copy(tmp_path / "some" / "much" / "deeper" / "staging root")
    assert zipper.build_sha256(deep, tmp_path / "a.zip", cwd=tmp_path) == GOLDEN_SHA256
    # A relative DIR, from another working directory, through a symlinked parent.
    (tmp_path / "alias").symlink_to(tmp_path / "some" / "much")
    relative = Path("alias") / "deeper" / "staging root"
    assert zipper.build_sha256(relative, tmp_path / "b.zip", cwd=tmp_path) == GOLDEN_SHA256


@pytest.mark.parametrize(
    "env",
    [
        {"TZ": "UTC", "LC_ALL": "C"},
        {"TZ": "Pacific/Kiritimati", "LC_ALL": "C.UTF-8"},
        {"TZ": "America/St_Johns", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        {"TZ": "Asia/Kathmandu", "LC_ALL": "C", "PYTHONIOENCODING": "latin-1"},
    ],
)
def test_timezone_and_locale(zipper, golden_copy, tmp_path, env):
    assert zipper.build_sha256(golden_copy, tmp_path / "out.zip", env=env) == GOLDEN_SHA256


def test_timezone_does_not_shift_an_explicit_timestamp(zipper, golden_copy, tmp_path):
    shas = {
        zipper.build_sha256(
            golden_copy, tmp_path / f"{i}.zip", "--timestamp", "1700000000", env={"TZ": tz}
        )
        for i, tz in enumerate(["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
    }
    assert len(shas) == 1 and GOLDEN_SHA256 not in shas


@pytest.mark.parametrize("workers", ["1", "2", "3", "7"])
def test_worker_count(zipper, golden_copy, tmp_path, workers):
    assert (
        zipper.build_sha256(golden_copy, tmp_path / "out.zip", "--workers", workers)
        == GOLDEN_SHA256
    )


def test_bytecode_and_pycache_are_left_out_by_default(zipper, golden_copy, tmp_path):
    (golden_copy / "pkg" / "__pycache__").mkdir()
    (golden_copy / "pkg" / "__pycache__" / "Zeta.cpython-39.pyc").write_bytes(b"\x61\x0d\x0d\x0a")
    (golden_copy / "handler.pyc").write_bytes(b"stale")
    (golden_copy / "pkg" / "sub" / "old.pyo").write_bytes(b"stale")
    assert zipper.build_sha256(golden_copy, tmp_path / "out.zip") == GOLDEN_SHA256
    readmitted = zipper.build_sha256(golden_copy, tmp_path / "in.zip", "--include", "*.pyc")
    assert readmitted != GOLDEN_SHA256


def test_empty_directories_are_not_stored(zipper, golden_copy, tmp_path):
    (golden_copy / "empty" / "nested").mkdir(parents=True)
    assert zipper.build_sha256(golden_copy, tmp_path / "out.zip") == GOLDEN_SHA256


def test_source_date_epoch_and_timestamp_option(zipper, golden_copy, tmp_path):
    from_env = zipper.build_sha256(
        golden_copy, tmp_path / "env.zip", env={"SOURCE_DATE_EPOCH": "1700000000"}
    )
    from_option = zipper.build_sha256(
        golden_copy, tmp_path / "opt.zip", "--timestamp", "1700000000"
    )
    option_wins = zipper.build_sha256(
        golden_copy,
        tmp_path / "both.zip",
        "--timestamp",
        "1700000000",
        env={"SOURCE_DATE_EPOCH": "5"},
    )
    assert from_env == from_option == option_wins != GOLDEN_SHA256
    # Epochs before 1980 clamp to the DOS epoch; odd seconds round down.
    assert (
        zipper.build_sha256(golden_copy, tmp_path / "old.zip", "--timestamp", "0") == GOLDEN_SHA256
    )
    odd = zipper.build_sha256(golden_copy, tmp_path / "odd.zip", "--timestamp", "1700000001")
    assert odd == from_option


def _cached_venv(version: str) -> str:
    """A venv of pyenv's CPython `version` with deflate==0.8.1, cached under .cache/."""
    pyenv_root = (
        os.environ.get("PYENV_ROOT")
        or subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        or os.path.expanduser("~/.pyenv")
    )
    major_minor = ".".join(version.split(".")[:2])
    base_python = Path(pyenv_root) / "versions" / version / "bin" / f"python{major_minor}"
    if not base_python.exists():
        pytest.fail(
            f"CPython {version} not found at {base_python}; "
            f"install it with `pyenv install {version}`"
        )
    venv = REPO_ROOT / ".cache" / "zipper-venvs" / f"cpython-{version}"
    python = venv / "bin" / "python"
    ready = venv / ".deflate-0.8.1-installed"
    if not ready.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(base_python), "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "deflate==0.8.1",
            ],
            check=True,
        )
        ready.touch()
    return str(python)


@pytest.mark.parametrize("version", ["3.9.18", "3.12.1"])
def test_same_bytes_under_cpython_versions(zipper_for, golden_copy, tmp_path, version):
    python = _cached_venv(version)
    interpreter = zipper_for(python)
    reported = interpreter.run("--help").stdout
    assert "build" in reported
    version_line = subprocess.run([python, "--version"], capture_output=True, text=True).stdout
    assert version in version_line
    assert (
        interpreter.build_sha256(golden_copy, tmp_path / "out.zip", "--workers", "2")
        == GOLDEN_SHA256
    )


def test_worker_count_across_many_batches(tmp_path):
    """Hundreds of small files and a few large ones span many batches; order must not depend on
    workers."""
    tree = tmp_path / "tree"
    for i in range(2 * BATCH_ENTRIES + 50):
        path = tree / f"m{i % 7}" / f"file{i:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"VALUE = %d\n" % i * (i % 50 + 1))
    for i in range(3):
        (tree / f"big{i}.bin").write_bytes(
            bytes(range(256)) * (BATCH_BYTES // 256 + 1) + bytes([i])
        )
    summaries = [build_zip(tree, tmp_path / f"w{w}.zip", workers=w) for w in (1, 2, 5)]
    assert len({s.sha256_hex for s in summaries}) == 1
    assert summaries[0].entry_count == 2 * BATCH_ENTRIES + 53
