"""lambda_rules.scripts.interpreters against the real pyenv CPythons 3.9-3.13: the one discovery
finds each runtime's interpreter, passes over what is not CPython X.Y, and says what to do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lambda_rules import facts
from lambda_rules.scripts.interpreters import InterpreterNotFoundError, find_interpreter

MINORS = (9, 10, 11, 12, 13)


def pyenv_root() -> Path:
    out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout
    return Path(out.strip())


def runtime(minor: int) -> facts.Runtime:
    return facts.RUNTIMES[f"python3.{minor}"]


def reported_version(python: Path) -> str:
    """What the interpreter itself says it is: `cpython 3.12.1`."""
    program = "import platform, sys; print(sys.implementation.name, platform.python_version())"
    return subprocess.run(
        [str(python), "-I", "-S", "-c", program], capture_output=True, text=True, check=True
    ).stdout.strip()


def fake_pyenv(root: Path, links: dict[str, Path]) -> Path:
    """A pyenv root in the test's directory whose `versions/V/bin/<name>` are symlinks to real
    interpreters ({"3.12.99/python3.12": target}). Only links are made: nothing is chmodded."""
    for relpath, target in links.items():
        version, name = relpath.split("/")
        binary = root / "versions" / version / "bin" / name
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.symlink_to(target)
    return root


@pytest.mark.parametrize("minor", MINORS)
def test_finds_pyenvs_highest_release_of_each_runtime(minor):
    root = pyenv_root()
    found = find_interpreter(runtime(minor), pyenv_root=root, search_path=())
    releases = sorted(
        (int(p.name.split(".")[2]), p)
        for p in (root / "versions").glob(f"3.{minor}.*")
        if p.name.split(".")[2].isdigit()
    )
    assert found == releases[-1][1] / "bin" / f"python3.{minor}"
    assert reported_version(found).startswith(f"cpython 3.{minor}.")


def test_pyenv_root_comes_from_the_environment(tmp_path, monkeypatch):
    real = find_interpreter(runtime(12), pyenv_root=pyenv_root(), search_path=())
    fake = fake_pyenv(tmp_path / "pyenv", {"3.12.7/python3.12": real})
    monkeypatch.setenv("PYENV_ROOT", str(fake))
    assert find_interpreter(runtime(12), search_path=()) == fake / "versions/3.12.7/bin/python3.12"


def test_a_candidate_of_the_wrong_version_is_passed_over(tmp_path):
    real = {minor: find_interpreter(runtime(minor), pyenv_root=pyenv_root()) for minor in (11, 12)}
    root = fake_pyenv(
        tmp_path / "pyenv",
        {
            "3.12.99/python3.12": real[11],  # the highest release, but really CPython 3.11
            "3.12.10/python3.12": real[12],
            "3.12.9/python3.12": real[12],
            "3.12.11t/python3.12": real[11],  # not a release pyenv names 3.12.N
            "3.12-dev/python3.12": real[11],
        },
    )
    assert (
        find_interpreter(runtime(12), pyenv_root=root, search_path=())
        == root / "versions/3.12.10/bin/python3.12"
    )


def test_an_interpreter_that_does_not_run_is_passed_over(tmp_path):
    broken = tmp_path / "broken" / "python3.12"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)  # a regular file the test made: never a symlink
    good = tmp_path / "good"
    good.mkdir()
    (good / "python3.12").symlink_to(find_interpreter(runtime(12), pyenv_root=pyenv_root()))
    found = find_interpreter(
        runtime(12), pyenv_root=tmp_path / "no-pyenv", search_path=[broken.parent, good]
    )
    assert found == good / "python3.12"


def test_search_path_after_pyenv_and_never_path(tmp_path, monkeypatch):
    real = find_interpreter(runtime(13), pyenv_root=pyenv_root())
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "python3.13").symlink_to(real)
    empty_pyenv = tmp_path / "no-pyenv"
    assert (
        find_interpreter(runtime(13), pyenv_root=empty_pyenv, search_path=[directory])
        == directory / "python3.13"
    )
    # pyenv first: a fixed directory is only a fallback.
    pyenv = fake_pyenv(tmp_path / "pyenv", {"3.13.0/python3.13": real})
    assert (
        find_interpreter(runtime(13), pyenv_root=pyenv, search_path=[directory])
        == pyenv / "versions/3.13.0/bin/python3.13"
    )
    # $PATH is not searched, so a run does not depend on the shell it starts from.
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(InterpreterNotFoundError):
        find_interpreter(runtime(13), pyenv_root=empty_pyenv, search_path=())


def test_nothing_found_says_where_it_looked_and_what_to_do(tmp_path):
    real_311 = find_interpreter(runtime(11), pyenv_root=pyenv_root())
    root = fake_pyenv(tmp_path / "pyenv", {"3.14.2/python3.14": real_311})
    directory = tmp_path / "bin"
    directory.mkdir()
    with pytest.raises(InterpreterNotFoundError) as excinfo:
        find_interpreter(runtime(14), pyenv_root=root, search_path=[directory, "/nonexistent"])
    assert isinstance(excinfo.value, LookupError)
    message = str(excinfo.value)
    assert message.startswith("no CPython 3.14 for the python3.14 runtime")
    assert f"under pyenv ({root}/versions/3.14.*/bin)" in message
    assert f"in {directory}, /nonexistent (never $PATH)" in message
    assert f"passed over {root}/versions/3.14.2/bin/python3.14 (CPython 3.11)" in message
    assert "`pyenv install 3.14`" in message

    with pytest.raises(InterpreterNotFoundError) as excinfo:
        find_interpreter(runtime(14), pyenv_root=tmp_path / "none", search_path=())
    assert "and in no directories (never $PATH). Install it" in str(excinfo.value)
