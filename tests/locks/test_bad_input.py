"""Bad locks and bad wheels: each refused by `lambda-zip package` with one line on stderr that
names the file, URL or key, a non-zero exit, and nothing written."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tests.locks.test_any_lock import lambda_zip


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def tiny_wheel(
    directory: Path, *, extra: dict[str, bytes] | None = None, lie: bool = False
) -> Path:
    """tiny 1.0, a pure wheel; `extra` entries are added (and listed in RECORD); with `lie`, RECORD
    states a wrong hash for the module."""
    files = {
        "tiny/__init__.py": b"VALUE = 1\n",
        "tiny-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n",
        "tiny-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        **(extra or {}),
    }
    rows = [
        f"{name},{record_hash(b'altered' if lie and name.endswith('.py') else data)},{len(data)}"
        for name, data in files.items()
    ]
    rows.append("tiny-1.0.dist-info/RECORD,,")
    files["tiny-1.0.dist-info/RECORD"] = ("\n".join(rows) + "\n").encode()
    path = directory / "tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


def pylock(directory: Path, wheel: Path, sha256: str | None = None, url: str | None = None) -> Path:
    """A pylock.toml pinning `wheel`, at its file:// URL unless `url` says where it is served."""
    digest = sha256 or hashlib.sha256(wheel.read_bytes()).hexdigest()
    path = directory / "pylock.toml"
    path.write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "tiny"\n'
        f'version = "1.0"\nwheels = [{{ url = "{url or wheel.as_uri()}", hashes = {{ sha256 = '
        f'"{digest}" }} }}]\n'
    )
    return path


def refused(tmp_path: Path, lock: Path, *expected: str) -> str:
    out = tmp_path / "out"
    result = lambda_zip(
        "package", "--kind", "layer", "--runtime", "python3.12", "--requirement", "tiny==1.0",
        "--lockfile", lock, "-o", out / "layer.zip", "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]
    assert not out.exists()
    return lines[0]


def test_a_wheel_whose_sha256_is_not_the_locks(tmp_path):
    wheel = tiny_wheel(tmp_path)
    actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
    refused(tmp_path, pylock(tmp_path, wheel, "0" * 64), wheel.as_uri(), actual, "0" * 64)
    # Nothing of the rejected download stays in the cache: only the choice of wheels from the
    # lock, which is the lock's (its digest included) whatever the wheel's bytes.
    cache = tmp_path / "cache"
    kept = [p.relative_to(cache) for p in cache.rglob("*") if p.is_file()]
    assert {p.parts[0] for p in kept} == {"selections"}, kept


def test_a_wheel_whose_record_lies(tmp_path):
    wheel = tiny_wheel(tmp_path, lie=True)
    refused(tmp_path, pylock(tmp_path, wheel), wheel.as_uri(), "tiny/__init__.py", "RECORD")


def test_a_wheel_with_an_entry_that_escapes_its_root(tmp_path):
    wheel = tiny_wheel(tmp_path, extra={"../x": b"escaped"})
    refused(tmp_path, pylock(tmp_path, wheel), wheel.as_uri(), "'../x'", "escapes")


def test_a_file_that_is_not_a_zip(tmp_path):
    wheel = tmp_path / "tiny-1.0-py3-none-any.whl"
    wheel.write_bytes(b"<html>an index's error page</html>")
    refused(tmp_path, pylock(tmp_path, wheel), wheel.as_uri(), "not a zip")


PEX_TINY = json.dumps({"project_name": "tiny", "version": "1.0", "artifacts": []})


@pytest.mark.parametrize(
    "name, text, key",
    [
        ("lock.json", '{"locked_resolves": [{"locked_requirements": 3}]}', "locked_requirements"),
        ("pylock.toml", 'lock-version = "1.0"\npackages = [{ version = "1.0" }]\n', "name"),
        ("uv.lock", 'version = 1\n[[package]]\nname = "tiny"\nwheels = [{ url = "x" }]\n', "hash"),
        # Each of the next would have escaped as a Python error, or been read character by
        # character, before the reader checked the value's type.
        ("lock.json", '{"locked_resolves": [{"locked_requirements": [' + PEX_TINY[:-1]
         + ', "requires_dists": "bc"}]}]}', "locked_requirements[0].requires_dists"),
        ("lock.json", '{"locked_resolves": [1, 2]}', "locked_resolves[0]"),
        ("pylock.toml", 'lock-version = "1.0"\npackages = [1]\n', "packages[0]"),
        ("pylock.toml", 'lock-version = "2.0"\npackages = []\n', "lock-version"),
        ("uv.lock", 'version = 1\n[[package]]\nname = "tiny"\noptional-dependencies = 3\n',
         "package[0].optional-dependencies"),
        ("uv.lock", 'version = 1\n[[package]]\nname = "tiny"\n'
         'dependencies = [{ name = "a", extra = "socks" }]\n', "dependencies[0].extra"),
    ],
)  # fmt: skip
def test_a_malformed_lock_names_its_format_and_key(tmp_path, name, text, key):
    lock = tmp_path / name
    lock.write_text(text)
    fmt = {"lock.json": "pex lock", "pylock.toml": "pylock.toml", "uv.lock": "uv.lock"}[name]
    line = refused(tmp_path, lock, str(lock), f"malformed {fmt}", key)
    assert "`" in line
