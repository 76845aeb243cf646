"""What a lock means, read as its format's installers read it: extras compared by PEP 685, two
requirements on one distribution both holding, PEP 751 markers deciding over its informational
`dependencies`, a lock refused for a Python it was not made for, a pex lock's per-platform
resolves, and uv's local wheels (a `[tool.uv.sources]` path, a `--find-links` folder)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambda_rules import fetch, lock_formats, locks
from lambda_rules.platforms import lambda_platform
from tests.locks.test_bad_input import tiny_wheel

X86 = lambda_platform("python3.12", "x86_64")
ARM = lambda_platform("python3.12", "arm64")
DIGEST = "0" * 64


def chosen(text: str, name: str, requirements: list[str], platform=X86) -> list[str]:
    lock = lock_formats.parse_lock(text, name)
    return [w.filename for w in locks.select_wheels(lock, requirements, platform, what="t")]


def uv_package(name: str, version: str = "1.0", body: str = "") -> str:
    url = f"https://example.invalid/{name}-{version}-py3-none-any.whl"
    return (
        f'\n[[package]]\nname = "{name}"\nversion = "{version}"\n'
        f'wheels = [{{ url = "{url}", hash = "sha256:{DIGEST}" }}]\n{body}'
    )


def pex_package(name: str, version: str, requires: list[str] = (), tag: str = "py3-none-any"):
    url = f"https://example.invalid/{name}-{version}-{tag}.whl"
    return {
        "project_name": name,
        "version": version,
        "artifacts": [{"url": url, "algorithm": "sha256", "hash": DIGEST}],
        "requires_dists": list(requires),
    }


def pex_lock(*resolves: tuple[object, list[dict]], requires_python=()) -> str:
    return json.dumps(
        {
            "locked_resolves": [
                {"platform_tag": tag, "locked_requirements": packages} for tag, packages in resolves
            ],
            "requires_python": list(requires_python),
        }
    )


UV_EXTRA = (
    "version = 1\n"
    + uv_package("foo", body='\n[package.optional-dependencies]\nmy-extra = [{ name = "bar" }]\n')
    + uv_package("bar")
)


@pytest.mark.parametrize("requirement", ["foo[my-extra]", "foo[my_extra]", "foo[My.Extra]"])
def test_a_uv_locks_extra_is_found_however_the_requirement_spells_it(requirement):
    assert chosen(UV_EXTRA, "uv.lock", [requirement]) == [
        "bar-1.0-py3-none-any.whl",
        "foo-1.0-py3-none-any.whl",
    ]


@pytest.mark.parametrize("written", ['extra == "socks"', "extra == 'my_socks'"])
def test_a_pex_locks_extra_marker_holds_for_any_spelling_of_the_extra(written):
    """Metadata writes an extra normalised (`socks`) or as setuptools did (`my_socks`)."""
    extra = written.split("'")[1] if "'" in written else "socks"
    text = pex_lock(
        (
            None,
            [
                pex_package("requests", "2.0", [f"pysocks; {written}"]),
                pex_package("pysocks", "1.7"),
            ],
        )
    )
    for spelling in (extra, extra.upper(), extra.replace("_", "-")):
        assert chosen(text, "lock.json", [f"requests[{spelling}]"]) == [
            "pysocks-1.7-py3-none-any.whl",
            "requests-2.0-py3-none-any.whl",
        ], spelling


def test_an_extra_is_found_as_the_marker_spells_it():
    """setuptools kept dots in extras (apache-airflow's `extra == "cncf.kubernetes"`)."""
    text = pex_lock(
        (
            None,
            [
                pex_package("airflow", "2.7", ['provider; extra == "cncf.kubernetes"']),
                pex_package("provider", "7.8"),
            ],
        )
    )
    for spelling in ("cncf.kubernetes", "cncf-kubernetes", "CNCF_Kubernetes"):
        assert chosen(text, "lock.json", [f"airflow[{spelling}]"]) == [
            "airflow-2.7-py3-none-any.whl",
            "provider-7.8-py3-none-any.whl",
        ], spelling
    assert chosen(text, "lock.json", ["airflow[other]"]) == ["airflow-2.7-py3-none-any.whl"]


def test_a_requirement_whose_marker_is_false_here_does_not_narrow_the_version():
    text = "version = 1\n" + uv_package("numpy", "2.2.0")
    requirements = ["numpy<2; python_version < '3.10'", "numpy>=2; python_version >= '3.10'"]
    for order in (requirements, requirements[::-1]):
        assert chosen(text, "uv.lock", order) == ["numpy-2.2.0-py3-none-any.whl"]


def test_two_requirements_on_one_distribution_must_both_hold():
    text = "version = 1\n" + uv_package(
        "foo", "2.0", body="\n[package.optional-dependencies]\nx = []\n"
    )
    assert chosen(text, "uv.lock", ["foo>=2", "foo[x]"]) == ["foo-2.0-py3-none-any.whl"]
    for requirements in (["foo==1.0", "foo[x]"], ["foo<2", "foo>=2"]):
        with pytest.raises(locks.LockError, match="does not hold foo"):
            chosen(text, "uv.lock", requirements)


def test_a_pylock_package_whose_marker_is_false_here_is_left_out_though_a_dependency_names_it():
    """PEP 751: `dependencies` carry no markers; colorama's own marker (Windows) decides."""
    text = (
        'lock-version = "1.0"\ncreated-by = "test"\n'
        '[[packages]]\nname = "click"\nversion = "8.1"\ndependencies = [{ name = "colorama" }]\n'
        'wheels = [{ url = "https://example.invalid/click-8.1-py3-none-any.whl", '
        f'hashes = {{ sha256 = "{DIGEST}" }} }}]\n'
        '[[packages]]\nname = "colorama"\nversion = "0.4.6"\nmarker = "sys_platform == \'win32\'"\n'
        "dependencies = []\n"
        'wheels = [{ url = "https://example.invalid/colorama-0.4.6-py3-none-any.whl", '
        f'hashes = {{ sha256 = "{DIGEST}" }} }}]\n'
    )
    assert chosen(text, "pylock.toml", ["click"]) == ["click-8.1-py3-none-any.whl"]
    # Asked for by name, it is still an error: the lock says it is not installed here.
    with pytest.raises(locks.LockError, match="does not hold colorama"):
        chosen(text, "pylock.toml", ["colorama"])


PYLOCK_FOO = (
    '[[packages]]\nname = "foo"\nversion = "1.0"\nwheels = [{ url = '
    f'"https://example.invalid/foo-1.0-py3-none-any.whl", hashes = {{ sha256 = "{DIGEST}" }} }}]\n'
)
FOR_PYTHON_313 = {
    "uv.lock": 'version = 1\nrequires-python = ">=3.13"\n' + uv_package("foo"),
    "pylock.toml": 'lock-version = "1.0"\nrequires-python = ">=3.13"\n' + PYLOCK_FOO,
    "lock.json": pex_lock((None, [pex_package("foo", "1.0")]), requires_python=["CPython==3.13.*"]),
}


@pytest.mark.parametrize("name", sorted(FOR_PYTHON_313))
def test_a_lock_made_for_other_pythons_is_refused(name):
    text = FOR_PYTHON_313[name]
    with pytest.raises(locks.LockError, match=r"^t: the lock .* is for Python .*, not python3\.12"):
        chosen(text, name, ["foo"])
    python313 = lambda_platform("python3.13", "x86_64")
    assert chosen(text, name, ["foo"], python313) == ["foo-1.0-py3-none-any.whl"]


def test_a_pex_lock_for_another_implementation_is_refused():
    text = pex_lock((None, [pex_package("foo", "1.0")]), requires_python=["PyPy>=3"])
    with pytest.raises(locks.LockError, match=r"is for Python PyPy>=3, not python3\.12"):
        chosen(text, "lock.json", ["foo"])


def test_a_pex_lock_of_one_resolve_per_platform_is_read_per_platform():
    x86 = "cp312-cp312-manylinux_2_17_x86_64"
    arm = "cp312-cp312-manylinux_2_17_aarch64"
    text = pex_lock(
        (x86.split("-"), [pex_package("foo", "2.0", tag=x86)]),
        (arm.split("-"), [pex_package("foo", "1.0", tag=arm)]),
    )
    assert chosen(text, "lock.json", ["foo"], X86) == [f"foo-2.0-{x86}.whl"]
    assert chosen(text, "lock.json", ["foo"], ARM) == [f"foo-1.0-{arm}.whl"]
    mac = pex_lock(
        (["cp312", "cp312", "macosx_11_0_arm64"], [pex_package("foo", "1.0")]),
        (["cp312", "cp312", "win_amd64"], [pex_package("foo", "1.0")]),
    )
    with pytest.raises(locks.LockError, match="holds resolves for .*macosx_11_0_arm64.* none for"):
        chosen(mac, "lock.json", ["foo"])


def uv_lock(project: Path, *args: str) -> Path:
    subprocess.run(
        [str(Path(sys.executable).parent / "uv"), "lock", "--quiet", "--no-index", *args],
        cwd=project,
        check=True,
        env={**os.environ, "UV_CACHE_DIR": str(project / ".uv-cache")},
    )
    return project / "uv.lock"


def local_wheel_project(tmp_path: Path, uv_settings: str = "") -> tuple[Path, Path]:
    """A project on tiny, a wheel of its own named in `[tool.uv.sources]`: uv writes only its
    file name and hash in uv.lock, and an `archive` in pylock.toml."""
    project = tmp_path / "project"
    (project / "wheels").mkdir(parents=True)
    wheel = tiny_wheel(project / "wheels")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "fn"\nversion = "0"\nrequires-python = ">=3.9"\n'
        f'dependencies = ["tiny"]\n[tool.uv]\npackage = false\n{uv_settings}'
        '[tool.uv.sources]\ntiny = { path = "wheels/tiny-1.0-py3-none-any.whl" }\n'
    )
    uv_lock(project)
    subprocess.run(
        [str(Path(sys.executable).parent / "uv"), "export", "--quiet", "--no-index"]
        + ["--format", "pylock.toml", "--output-file", "pylock.toml"],
        cwd=project,
        check=True,
        env={**os.environ, "UV_CACHE_DIR": str(project / ".uv-cache")},
    )
    return project, wheel


def test_uvs_locks_of_a_local_wheel_are_read_and_fetched(tmp_path):
    project, wheel = local_wheel_project(tmp_path)
    for name in ("uv.lock", "pylock.toml"):
        lock = lock_formats.read_lock(project / name)
        (locked,) = locks.select_wheels(lock, ["tiny"], X86, what="t")
        assert locked.url == wheel.resolve().as_uri(), name
        assert locked.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
        cache = fetch.WheelCache(tmp_path / "cache")
        fetched = cache.fetch(fetch.Wanted(locked.url, locked.sha256))
        assert fetched.read_bytes() == wheel.read_bytes()


def test_a_lock_made_for_other_environments_is_refused(tmp_path):
    settings = "environments = [\"sys_platform == 'darwin'\"]\n"
    project, _ = local_wheel_project(tmp_path, settings)
    for name in ("uv.lock", "pylock.toml"):
        lock = lock_formats.read_lock(project / name)
        with pytest.raises(locks.LockError, match="is for the environments sys_platform == "):
            locks.select_wheels(lock, ["tiny"], X86, what="t")


def test_a_uv_lock_of_a_find_links_folder_is_refused_for_want_of_hashes(tmp_path):
    project = tmp_path / "project"
    (project / "wheels").mkdir(parents=True)
    tiny_wheel(project / "wheels")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "fn"\nversion = "0"\nrequires-python = ">=3.9"\n'
        'dependencies = ["tiny"]\n[tool.uv]\npackage = false\n'
    )
    path = uv_lock(project, "--find-links", "wheels")
    with pytest.raises(locks.LockError) as raised:
        lock_formats.read_lock(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: malformed uv.lock: key `package[1].wheels[0].hash`")
    assert "tiny-1.0-py3-none-any.whl has no sha256" in message
    assert "--find-links" in message
