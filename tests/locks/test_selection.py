"""Locked wheels are chosen as pex chooses them: for the repository's lock and the bench locks,
every runtime and both architectures, the same distributions and the same wheel files as pex's
own resolve of the same lock (tests/locks/pex_selection.py, run inside the pinned pex)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lambda_rules import facts, lock_formats, locks
from lambda_rules.platforms import lambda_platform
from tests.conftest import REPO_ROOT

LOCKS = {
    "example": ("3rdparty/python/default.lock", "3rdparty/python/requirements.txt"),
    "api": ("bench/api/api.lock", "bench/api/requirements.txt"),
    "heavy": ("bench/heavy/heavy.lock", "bench/heavy/requirements.txt"),
}
PLATFORMS = [(r, a) for r in facts.RUNTIMES for a in facts.ARCHITECTURES]


def requirements_of(path: str) -> list[str]:
    lines = (REPO_ROOT / path).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def pex_choices(tmp_path: Path, lock: str, requirements: list[str]) -> dict[str, dict[str, str]]:
    """What pex chooses on every platform: distribution -> wheel file, or {"error": ...}."""
    pex = subprocess.run(
        [str(REPO_ROOT / "pants"), "--print-bootstrap-pex"], capture_output=True, text=True
    ).stdout.strip()
    python = subprocess.run(
        [str(REPO_ROOT / "pants"), "--print-bootstrap-python"], capture_output=True, text=True
    ).stdout.strip()
    body = "\n".join(
        line for line in (REPO_ROOT / lock).read_text().splitlines() if not line.startswith("//")
    )
    (tmp_path / "lock.json").write_text(body)
    platforms = {
        f"{r} {a}": json.loads(lambda_platform(r, a).complete_platform_json()) for r, a in PLATFORMS
    }
    (tmp_path / "platforms.json").write_text(json.dumps(platforms))
    result = subprocess.run(
        [python, pex, str(REPO_ROOT / "tests/locks/pex_selection.py"),
         str(tmp_path / "lock.json"), str(tmp_path / "platforms.json"), *requirements],
        env={"PEX_INTERPRETER": "1", "PATH": "/usr/bin:/bin", "PEX_ROOT": str(tmp_path / "pex")},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_the_wheels_chosen_are_the_ones_pex_chooses(tmp_path, name):
    lock_path, requirements_path = LOCKS[name]
    requirements = requirements_of(requirements_path)
    theirs = pex_choices(tmp_path, lock_path, requirements)
    lock = lock_formats.read_lock(REPO_ROOT / lock_path)
    compared = 0
    for runtime, architecture in PLATFORMS:
        expected = theirs[f"{runtime} {architecture}"]
        platform = lambda_platform(runtime, architecture)
        if "error" in expected:
            with pytest.raises(locks.LockError, match=f"^{name}: "):
                locks.select_wheels(lock, requirements, platform, what=name)
            continue
        ours = locks.select_wheels(lock, requirements, platform, what=name)
        assert {w.name: w.filename for w in ours} == expected, (runtime, architecture)
        compared += 1
    # The bench locks are made for python3.12 only: on the other runtimes both refuse. Both
    # architectures of at least one runtime must be compared, or this test compares nothing.
    assert compared >= 2


def test_a_cycle_in_the_locks_graph_ends(tmp_path):
    """Real locks hold cycles (a plugin and its host requiring each other): each distribution is
    expanded once, with each set of extras."""
    (tmp_path / "uv.lock").write_text(
        "version = 1\n"
        + "".join(
            f'\n[[package]]\nname = "{name}"\nversion = "1.0"\n'
            f'dependencies = [{{ name = "{other}" }}]\n'
            f'wheels = [{{ url = "https://example.invalid/{name}-1.0-py3-none-any.whl", '
            f'hash = "sha256:{name * 64}" }}]\n'
            for name, other in (("a", "b"), ("b", "a"))
        )
    )
    chosen = locks.select_wheels(
        lock_formats.read_lock(tmp_path / "uv.lock"),
        ["a"],
        lambda_platform("python3.12", "x86_64"),
        what="cycle",
    )
    assert [(w.name, w.filename) for w in chosen] == [
        ("a", "a-1.0-py3-none-any.whl"),
        ("b", "b-1.0-py3-none-any.whl"),
    ]


def test_a_pex_locks_dependencies_read_as_packaging_reads_them_whole():
    """`requires_dists` entries are split at the marker's `;` so each marker is parsed once: every
    entry of the repository's and bench locks, a URL with a `;` in it, and extras under a marker
    give what `packaging` makes of the whole entry (extras normalised, as PEP 685 compares them)."""
    entries = [
        "tricky @ https://example.invalid/t;v=1/tricky-1.0-py3-none-any.whl ; os_name == 'posix'",
        "Some.Name[B,a] >=1,<2 ; extra == 'X' and python_version >= \"3.9\"",
        "plain",
    ]
    for lock_path, _ in LOCKS.values():
        body = "\n".join(
            line
            for line in (REPO_ROOT / lock_path).read_text().splitlines()
            if not line.startswith("//")
        )
        for resolve in json.loads(body)["locked_resolves"]:
            for locked in resolve["locked_requirements"]:
                entries += locked.get("requires_dists", [])
    locked = {"project_name": "p", "version": "1", "artifacts": [], "requires_dists": entries}
    document = {"locked_resolves": [{"locked_requirements": [locked]}]}
    (package,) = lock_formats.parse_lock(json.dumps(document), "lock.json").packages
    expected = []
    for entry in entries:
        whole = Requirement(entry)
        marker = str(whole.marker) if whole.marker else None
        extras = frozenset(canonicalize_name(extra) for extra in whole.extras)  # PEP 685
        expected.append((canonicalize_name(whole.name), extras, marker))
    assert [(d.name, d.extras, d.marker) for d in package.dependencies] == expected
    assert len(entries) > 100
