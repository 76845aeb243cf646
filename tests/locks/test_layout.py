"""A wheel is laid out as pip lays it out: for every wheel the repository's and the bench locks
choose for python3.12 on x86_64, the files `wheel_units.lay_out` gives equal those of
`pip install --no-deps --target` of the same wheel, names and bytes. The exceptions: what a
package never holds (`units.is_bundled_distribution_path`: console scripts, `__pycache__`), and
the files pip writes as the installer (`_INSTALLER_FILES`). pip is the runtime's own CPython's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lambda_rules import fetch, lock_formats, locks, units, wheel_units
from lambda_rules.platforms import lambda_platform
from tests.conftest import REPO_ROOT, pyenv_python
from tests.locks.test_selection import LOCKS, requirements_of

# What pip writes as the installer: RECORD rewritten, INSTALLER, REQUESTED and, for a wheel file,
# direct_url.json (PEP 610). We keep RECORD as the wheel ships it and add none of them.
_INSTALLER_FILES = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def installer_file(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _INSTALLER_FILES


def pip_kept(path: str) -> bool:
    return units.is_bundled_distribution_path(path) and not installer_file(path)


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_the_layout_is_pips(tmp_path, wheel_cache, name):
    lock_path, requirements_path = LOCKS[name]
    platform = lambda_platform("python3.12", "x86_64")
    chosen = locks.select_wheels(
        lock_formats.read_lock(REPO_ROOT / lock_path), requirements_of(requirements_path), platform,
        what=name,
    )  # fmt: skip
    wheels = wheel_cache.fetch_all(fetch.Wanted(w.url, w.sha256) for w in chosen)
    target = tmp_path / "pip"
    subprocess.run(
        [str(pyenv_python(12)), "-m", "pip", "install", "--isolated", "--quiet", "--no-deps",
         "--no-compile", "--disable-pip-version-check", "--target", str(target),
         "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         "--platform", "manylinux2014_x86_64", *map(str, wheels.values())],
        check=True,
    )  # fmt: skip
    installed = tree(target)
    # What the comparison leaves out, stated apart from the staging rule it borrows: for these
    # locks, pip's installer files and console scripts, nothing else.
    left_out = {path for path in installed if not pip_kept(path)}
    assert all(path.startswith("bin/") or installer_file(path) for path in left_out), left_out
    theirs = {path: data for path, data in installed.items() if pip_kept(path)}
    ours: dict[str, bytes] = {}
    for wheel in chosen:
        laid_out = wheel_units.lay_out(wheels[wheel.sha256], shown=wheel.url)
        ours.update(
            (path, content) for path, (_, content) in laid_out.files.items() if pip_kept(path)
        )
    assert sorted(ours) == sorted(theirs)
    assert [p for p in ours if ours[p] != theirs[p]] == []
    assert len(ours) > 100
