"""Helpers shared by the test suites: the repository, the runtimes' CPythons, Pants clones."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pytest

from lambda_rules import facts, fetch
from lambda_rules.scripts import interpreters

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)
def pyenv_python(minor: int) -> Path:
    """CPython 3.<minor>, found as the local invoker finds a runtime's (pyenv's highest 3.<minor>.N
    first, every candidate checked). The tests need the real interpreter: they fail without it."""
    try:
        return interpreters.find_interpreter(facts.RUNTIMES[f"python3.{minor}"])
    except interpreters.InterpreterNotFoundError as e:
        pytest.fail(str(e))


def interrupts_as_in_a_terminal() -> None:
    """`preexec_fn` of a command a test interrupts: SIGINT at its default, as Ctrl-C finds it in
    a terminal. A suite run as a background job (`./test &`) hands its children SIGINT ignored,
    and Python then leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def file_sha256_hex(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in chunks. Plain hashlib on purpose: the tests check the
    digests lambda_rules computes (lambda_rules.zipper.summary.file_sha256) against this one."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write {relative path: content} under `root` (str content as UTF-8) and return `root`."""
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return root


def zipper_refuses(tmp_path: Path, capsys, command: str, *args: str | os.PathLike[str]) -> str:
    """Run `lambda-zip <command> <args> -o <tmp_path>/out/out.zip` in-process, check that it is
    refused (exit 2, a `lambda-zip: error:` message, no traceback) and leaves no output and no
    temporary file behind, and return its stderr."""
    # Imported here: bench/common.py imports this module, and its harness stays small.
    from lambda_rules.zipper.cli import main

    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    code = main([command, *map(str, args), "-o", str(out_dir / "out.zip")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("lambda-zip: error: ") and "Traceback" not in err, err
    assert os.listdir(out_dir) == [], f"a refused {command} must leave no output and no temp file"
    return err


def repository_files() -> list[str]:
    """What a clone of the current working tree holds: tracked and untracked, not ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return sorted(p for p in out.decode().split("\0") if p and (REPO_ROOT / p).exists())


@dataclass
class Clone:
    """A fresh copy of the repository at its own path, with its own Pants workdir and pantsd."""

    root: Path

    def pants(
        self,
        *args: str,
        umask: int = 0o022,
        pantsd: bool = False,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        command = ["./pants", f"--{'' if pantsd else 'no-'}pantsd", *args]
        result = subprocess.run(
            command,
            cwd=self.root,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=lambda: os.umask(umask),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({result.returncode}) in {self.root}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def write(self, relpath: str, text: str) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def dist_files(self) -> list[str]:
        dist = self.root / "dist"
        if not dist.exists():
            return []
        return sorted(str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file())

    def kill_pantsd(self) -> None:
        for pid_file in (self.root / ".pids").glob("*/pantsd/pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), 9)
            except (ProcessLookupError, ValueError):
                pass


def make_clone(destination: Path, *, reverse_order: bool = False) -> Clone:
    """Copy the working tree file by file (optionally in reverse order) and `git init` it."""
    destination.mkdir(parents=True)
    files = repository_files()
    for relpath in reversed(files) if reverse_order else files:
        target = destination / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relpath, target)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return Clone(destination)


@pytest.fixture
def clone_factory(tmp_path_factory):
    clones: list[Clone] = []

    def factory(name: str = "clone", **kwargs) -> Clone:
        clone = make_clone(tmp_path_factory.mktemp(name) / "repo", **kwargs)
        clones.append(clone)
        return clone

    yield factory
    for clone in clones:
        clone.kill_pantsd()


@pytest.fixture(scope="session")
def plugin_wheel(tmp_path_factory) -> Path:
    """The lambda-rules wheel, as `pip wheel .` builds it from this working tree."""
    # Built from a copy of what the wheel is made of: setuptools builds in the source tree, and its
    # leftover build/ could carry a module deleted since into the wheel, and litters the checkout.
    source = tmp_path_factory.mktemp("source")
    shutil.copy2(REPO_ROOT / "pyproject.toml", source)
    shutil.copytree(
        REPO_ROOT / "lambda_rules",
        source / "lambda_rules",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--isolated",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
        ]
        + [str(source)],
        check=True,
    )
    (wheel,) = wheels.glob("lambda_rules-*.whl")
    return wheel


@pytest.fixture(scope="session")
def cli(plugin_wheel, tmp_path_factory):
    """`lambda-zip` installed with its `package` extra into a venv of CPython 3.<minor>."""
    venvs: dict[int, Path] = {}

    def install(minor: int) -> Path:
        if minor not in venvs:
            venv = tmp_path_factory.mktemp(f"cli-{minor}") / "venv"
            subprocess.run([str(pyenv_python(minor)), "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin/pip"), "install", "--isolated", "--quiet",
                 "--disable-pip-version-check", f"{plugin_wheel}[package]"],
                check=True,
            )  # fmt: skip
            venvs[minor] = venv / "bin" / "lambda-zip"
        return venvs[minor]

    return install


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> fetch.WheelCache:
    """One wheel cache for the session's tests that fetch locked wheels (each from PyPI once)."""
    return fetch.WheelCache(tmp_path_factory.mktemp("wheels"))
