"""The same bytes from any lock: the README example packaged by `lambda-zip package` from the
repository's pex lock, from a `uv.lock` and a `pylock.toml` that uv makes here with the same pins,
and from the `pylock.toml`s that `pex3 lock export` and `export-subset` write, gives one zip,
manifest and SBOM, and the golden sha256. Two runs at once on one empty cache both succeed with
those bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lambda_rules import lock_formats, locks
from lambda_rules.platforms import lambda_platform
from tests.conftest import REPO_ROOT, pyenv_python
from tests.e2e.test_package import EXAMPLE_GOLDEN_SHA256

REQUIREMENTS = ("orjson==3.11.5", "pydantic==2.12.5")
LOCK = REPO_ROOT / "3rdparty/python/default.lock"
OUTPUTS = ("lambda.zip", "lambda.json", "lambda.cdx.json")


def lambda_zip(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`lambda-zip` from this checkout, on the test interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "lambda_rules.lambda_zip.main", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )


def package_example(lock: Path, out: Path, cache: Path, **kwargs) -> subprocess.CompletedProcess:
    return lambda_zip(
        "package", "--runtime", "python3.12", "--handler", "app.handler",
        "--source-root", REPO_ROOT / "fn", REPO_ROOT / "fn/app.py",
        *(a for r in REQUIREMENTS for a in ("--requirement", r)),
        "--lockfile", lock, "--name", "fn:lambda", "-o", out / "lambda.zip", "--cache-dir", cache,
        **kwargs,
    )  # fmt: skip


def outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def uv(*args: str, cwd: Path) -> None:
    uv_binary = Path(sys.executable).parent / "uv"
    subprocess.run(
        [str(uv_binary), *args, "--quiet"],
        cwd=cwd,
        check=True,
        env={
            **os.environ,
            "UV_CACHE_DIR": str(cwd / "uv-cache"),
            "UV_NO_CONFIG": "1",
            # The runtime's CPython from pyenv: uv would otherwise download one from GitHub.
            "UV_PYTHON": str(pyenv_python(12)),
            "UV_PYTHON_DOWNLOADS": "never",
        },
    )


@pytest.fixture(scope="module")
def uv_locks(tmp_path_factory) -> dict[str, Path]:
    """A uv project pinned to what the pex lock chooses for python3.12 on x86_64: its uv.lock,
    and the pylock.toml uv exports from it."""
    project = tmp_path_factory.mktemp("uv-project")
    platform = lambda_platform("python3.12", "x86_64")
    chosen = locks.select_wheels(lock_formats.read_lock(LOCK), REQUIREMENTS, platform, what="pins")
    pins = ", ".join(f'"{w.name}=={w.version}"' for w in chosen)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "example"\nversion = "0"\nrequires-python = ">=3.12,<3.13"\n'
        f"dependencies = [{pins}]\n"
    )
    uv("lock", cwd=project)
    uv("export", "--format", "pylock.toml", "--no-emit-project", "-o", "pylock.toml", cwd=project)
    return {"uv.lock": project / "uv.lock", "pylock.toml": project / "pylock.toml"}


@pytest.fixture(scope="module")
def pex_pylocks(tmp_path_factory) -> dict[str, Path]:
    """The repository's lock as pex exports it to PEP 751: whole (`pex3 lock export`, every
    platform's wheels, markers for each environment), and its subset for python3.12 on x86_64
    (`pex3 lock export-subset`)."""
    directory = tmp_path_factory.mktemp("pex-export")
    pex, python = (
        subprocess.run(
            [str(REPO_ROOT / "pants"), flag], capture_output=True, text=True
        ).stdout.strip()
        for flag in ("--print-bootstrap-pex", "--print-bootstrap-python")
    )
    body = "\n".join(line for line in LOCK.read_text().splitlines() if not line.startswith("//"))
    (directory / "lock.json").write_text(body)
    platform = directory / "platform.json"
    platform.write_text(lambda_platform("python3.12", "x86_64").complete_platform_json())
    exports = {
        "pex3 lock export": ["export", str(directory / "lock.json")],
        "pex3 lock export-subset": ["export-subset", "--lock", str(directory / "lock.json"),
                                    *REQUIREMENTS],
    }  # fmt: skip
    written = {}
    for kind, args in exports.items():
        written[kind] = directory / f"{args[0]}.pylock.toml"
        subprocess.run(
            [python, pex, "lock", args[0], "--complete-platform", str(platform),
             "--format", "pep-751", "-o", str(written[kind]), *args[1:]],
            env={"PEX_SCRIPT": "pex3", "PATH": "/usr/bin:/bin",
                 "PEX_ROOT": str(directory / "pex"), "PIP_CONFIG_FILE": os.devnull},
            check=True,
        )  # fmt: skip
    return written


def test_the_same_bytes_from_every_kind_of_lock(tmp_path, uv_locks, pex_pylocks):
    cache = tmp_path / "cache"
    made = {}
    for kind, lock in {"pex": LOCK, **uv_locks, **pex_pylocks}.items():
        out = tmp_path / kind.replace(" ", "-")
        result = package_example(lock, out, cache)
        assert result.returncode == 0, result.stderr
        made[kind] = outputs(out)
    assert 'created-by = "uv"' in uv_locks["pylock.toml"].read_text()
    formats = {kind: lock_formats.read_lock(lock).format for kind, lock in uv_locks.items()}
    assert formats == {"uv.lock": "uv.lock", "pylock.toml": "pylock.toml"}
    for lock in pex_pylocks.values():
        assert 'created-by = "pex"' in lock.read_text()
        assert lock_formats.read_lock(lock).format == "pylock.toml"
    # The whole export holds other platforms' wheels too: the choice among them is ours.
    assert pex_pylocks["pex3 lock export"].read_text().count("aarch64") > 0
    for kind, files in made.items():
        assert files == made["pex"], kind
    zip_sha256 = hashlib.sha256(made["pex"]["lambda.zip"]).hexdigest()
    assert zip_sha256 == EXAMPLE_GOLDEN_SHA256


def test_two_runs_at_once_on_one_empty_cache_both_succeed(tmp_path):
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda i: package_example(LOCK, tmp_path / f"out{i}", cache), range(2))
        )
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert outputs(tmp_path / "out0") == outputs(tmp_path / "out1")
    zips = [(tmp_path / f"out{i}/lambda.zip").read_bytes() for i in range(2)]
    assert hashlib.sha256(zips[0]).hexdigest() == EXAMPLE_GOLDEN_SHA256 and zips[0] == zips[1]


def test_with_the_network_down_a_warm_cache_packages_and_a_cold_one_names_the_url(tmp_path):
    # A proxy nobody listens on: every download fails at once, as on a machine without network.
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    cold = package_example(LOCK, tmp_path / "cold", tmp_path / "empty", env=offline)
    assert cold.returncode != 0
    (line,) = cold.stderr.strip().splitlines()
    assert "https://files.pythonhosted.org/" in line and "cannot download" in line
    assert not (tmp_path / "cold").exists()

    warm = tmp_path / "warm-cache"
    assert package_example(LOCK, tmp_path / "first", warm).returncode == 0
    # Only the wheels stay: every choice, unit, part and SBOM is made again, offline.
    made = [path for path in warm.iterdir() if path.name != "wheels"]
    assert {path.name for path in made} >= {"parts", "resolutions", "units"}
    for path in made:
        shutil.rmtree(path)
    again = package_example(LOCK, tmp_path / "again", warm, env=offline)
    assert again.returncode == 0, again.stderr
    assert outputs(tmp_path / "again") == outputs(tmp_path / "first")


def test_a_warm_run_takes_its_choice_of_wheels_from_the_cache_until_the_lock_changes(tmp_path):
    lock, cache = tmp_path / "default.lock", tmp_path / "cache"
    shutil.copyfile(LOCK, lock)
    assert package_example(lock, tmp_path / "first", cache).returncode == 0
    # Warm: no lock parsed, so no requirement or marker either (`packaging` is not imported).
    warm = package_example(lock, tmp_path / "warm", cache, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert warm.returncode == 0, warm.stderr
    assert "packaging.markers" not in warm.stderr and "lambda_rules.locks" in warm.stderr
    assert outputs(tmp_path / "warm") == outputs(tmp_path / "first")
    # The same path with other bytes is chosen from again: here a pin whose sha256 the wheel
    # does not have, which the fetch then refuses, naming both digests.
    (orjson,) = (
        w
        for w in locks.select_wheels(
            lock_formats.read_lock(LOCK),
            REQUIREMENTS,
            lambda_platform("python3.12", "x86_64"),
            what="t",
        )
        if w.name == "orjson"
    )
    lock.write_text(LOCK.read_text().replace(orjson.sha256, "0" * 64))
    edited = package_example(lock, tmp_path / "edited", cache)
    assert edited.returncode != 0
    (line,) = edited.stderr.strip().splitlines()
    assert orjson.filename in line and "0" * 64 in line and orjson.sha256 in line, line
    assert not (tmp_path / "edited").exists()
