"""`lambda-zip verify` and `[lambda-zip].verify`: every entry of an archive accounted for from its
lockfile's wheels (real PyPI wheels, fetched and checked against the lock) and its sources,
tampering caught and named, hostile archives refused as `repack` refuses them, nothing from the
archive ever executed."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.zipper.conftest import RawEntry, write_raw_zip

pytestmark = pytest.mark.e2e

LOCK = REPO_ROOT / "3rdparty/python/default.lock"
REQUIREMENTS = REPO_ROOT / "3rdparty/python/requirements.txt"
PYC = "*.cpython-312.pyc"


def lambda_zip(cli, *args, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cli(9)), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def package(cli, out: Path, cache: Path, *extra: str) -> Path:
    result = lambda_zip(cli, "package", "--runtime", "python3.12", "--lockfile", LOCK,
                        "--cache-dir", cache, "-o", out, *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def function_args(*extra: str) -> list[str]:
    return ["fn/app.py", "--source-root", "fn", "--handler", "app.handler", "-r", REQUIREMENTS,
            "--name", "fn:lambda", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def built(cli, tmp_path_factory) -> dict[str, Path]:
    """Fresh artifacts: the README example, the same with .pyc, a layer, a function on it."""
    root, cache = tmp_path_factory.mktemp("built"), tmp_path_factory.mktemp("cache")
    return {
        "function": package(cli, root / "fn/lambda.zip", cache, *function_args()),
        "bytecode": package(cli, root / "pyc/lambda.zip", cache,
                            *function_args("--compile-bytecode")),
        "layer": package(cli, root / "layer/deps.zip", cache, "--kind", "layer",
                         "--requirement", "pydantic==2.12.5", "--name", "layers:deps"),
        "layered": package(cli, root / "layered/lambda.zip", cache,
                           *function_args("--layer", f"layers:deps={root / 'layer/deps.zip'}")),
    }  # fmt: skip


def verify(cli, archive: Path, *extra) -> subprocess.CompletedProcess[str]:
    return lambda_zip(cli, "verify", archive, "--lockfile", LOCK, *extra)


def function_sources() -> list[str]:
    return ["--source-root", "fn", "fn/app.py"]


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("function", function_sources()),
        ("bytecode", function_sources()),
        ("layer", []),
        ("layered", [*function_sources(), "--layer", "layers:deps={layer}"]),
    ],
)
def test_fresh_artifacts_verify(cli, built, kind, extra):
    extra = [e.format(layer=built["layer"]) for e in extra]
    result = verify(cli, built[kind], *extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"verified {built[kind]}: "), result.stdout
    assert "every one accounted for" in result.stdout
    if kind == "bytecode":
        assert re.search(r"[1-9][\d,]* \.pyc", result.stdout), result.stdout
    if kind == "layered":
        assert f"verified {built['layer']}" in result.stdout


def tampered(cli, original: Path, out: Path, change) -> Path:
    """The archive's files with `change` applied, zipped canonically again (valid CRCs and
    central directory, the same form `package` writes), beside a copy of its manifest and SBOM."""
    tree = out.parent / (out.stem + "-tree")
    with zipfile.ZipFile(original) as zf:
        zf.extractall(tree)
    change(tree)
    out.parent.mkdir(parents=True, exist_ok=True)
    build = lambda_zip(cli, "build", tree, "-o", out, "--include", PYC)
    assert build.returncode == 0, build.stderr
    for suffix in (".json", ".cdx.json"):
        shutil.copy2(original.with_name(original.stem + suffix), out.with_name(out.stem + suffix))
    return out


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def edit_record_to_match(tree: Path) -> None:
    """typing_extensions.py changed, and its RECORD line rewritten to the new hash and size."""
    module = tree / "typing_extensions.py"
    module.write_bytes(module.read_bytes() + b"\nBACKDOOR = True\n")
    (record,) = tree.glob("typing_extensions-*.dist-info/RECORD")
    digest = hashlib.sha256(module.read_bytes()).digest()
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    lines = [
        f"typing_extensions.py,sha256={encoded},{module.stat().st_size}"
        if line.startswith("typing_extensions.py,")
        else line
        for line in record.read_text().splitlines()
    ]
    record.write_text("\n".join(lines) + "\n")


def swap_pyc(tree: Path) -> None:
    """app.py's .pyc replaced by the .pyc of another first-party-looking module."""
    (pyc,) = tree.glob("__pycache__/app.cpython-312.pyc")
    (other,) = tree.glob("annotated_types/__pycache__/__init__.cpython-312.pyc")
    pyc.write_bytes(other.read_bytes())


@pytest.mark.parametrize(
    "kind, change, named",
    [
        ("function", lambda t: flip_a_byte(t / "pydantic/main.py"),
         "pydantic/main.py (pydantic 2.12.5): altered"),
        ("function", lambda t: (t / "evil.py").write_text("import os\n"),
         "evil.py: unexplained"),
        ("function", lambda t: (t / "orjson/__init__.py").unlink(),
         "orjson/__init__.py (orjson 3.11.5): missing"),
        ("bytecode", swap_pyc, "__pycache__/app.cpython-312.pyc (bytecode of first-party app.py)"),
        ("function", lambda t: (t / "app.py").write_text("def handler(e, c):\n    return 0\n"),
         "app.py (first-party source): altered"),
        ("function", edit_record_to_match,
         "typing_extensions.py (typing-extensions 4.16.0): altered"),
    ],
    ids=["distribution-byte", "file-added", "file-removed", "pyc", "first-party", "record"],
)  # fmt: skip
def test_tampering_is_caught_and_named(cli, built, tmp_path, kind, change, named):
    archive = tampered(cli, built[kind], tmp_path / "out/lambda.zip", change)
    result = verify(cli, archive, *function_sources())
    assert result.returncode == 1, result.stdout + result.stderr
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    if named.startswith("typing_extensions.py"):
        # The edited RECORD is not believed: its expected content is derived from the wheel.
        record = "typing_extensions-4.16.0.dist-info/RECORD"
        assert f"{record} (typing-extensions 4.16.0, written by the installer): altered" in (
            result.stderr
        )


def test_verify_never_executes_code_from_the_archive(cli, built, tmp_path):
    marker = tmp_path / "executed"
    payload = f"open({str(marker)!r}, 'w').write('ran')\n"

    def plant(tree: Path) -> None:
        (tree / "app.py").write_text(payload + (tree / "app.py").read_text())
        (tree / "sitecustomize.py").write_text(payload)
        (tree / "zz_evil.pth").write_text(f"import os; {payload}")
        (tree / "orjson/__init__.py").write_text(payload)

    archive = tampered(cli, built["function"], tmp_path / "out/lambda.zip", plant)
    result = verify(cli, archive, *function_sources())
    assert result.returncode == 1, result.stderr
    assert "sitecustomize.py: unexplained" in result.stderr
    assert not marker.exists(), "verify executed code from the archive"


HOSTILE = {
    "bomb": [RawEntry("bomb.bin", data=b"\0" * (4 << 20))],
    "traversal": [RawEntry("../../etc/cron.d/x", data=b"* * * * * root true\n")],
    "duplicate": [RawEntry("a.py", data=b"1"), RawEntry("./a.py", data=b"2")],
}


@pytest.mark.parametrize("name", [*HOSTILE, "overlap"])
def test_hostile_archives_get_the_same_refusal_as_repack(cli, tmp_path, name):
    archive = tmp_path / "hostile.zip"
    if name == "overlap":
        data = b"bbbb"
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x0800, 0, 0, 0x21,
                            zlib.crc32(data), 4, 4, 5, 0) + b"b.txt" + data  # fmt: skip
        write_raw_zip(
            archive,
            [RawEntry("a.txt", data=local, method=0), RawEntry("b.txt", data=data, method=0)],
            local_offsets=[0, 30 + len("a.txt")],
        )
    else:
        write_raw_zip(archive, HOSTILE[name])
    refused = verify(cli, archive)
    repacked = lambda_zip(cli, "repack", archive, "-o", tmp_path / "out.zip")
    assert refused.returncode == repacked.returncode == 2, refused.stderr
    assert refused.stderr == repacked.stderr and refused.stderr.startswith("lambda-zip: error:")
    assert "Traceback" not in refused.stderr


PANTS_TARGETS = """
lambda_function(
    name="lambda_pyc", handler="app.py:handler", runtime="python3.12", compile_bytecode=True
)
lambda_layer(name="deps", runtime="python3.12", dependencies=["3rdparty/python:reqs#pydantic"])
lambda_function(
    name="layered", handler="app.py:handler", runtime="python3.12", layers=[":deps"]
)
"""


def test_pants_verifies_each_package_it_builds(clone_factory):
    clone = clone_factory("pants-verify")
    clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + PANTS_TARGETS)
    result = clone.pants("--lambda-zip-verify", "package", "fn::")
    for address in ("fn:lambda", "fn:lambda_pyc", "fn:deps", "fn:layered"):
        assert re.search(rf"{address}: verified dist/fn/\S+\.zip: [\d,]+ entries, every one", (
            result.stderr
        )), result.stderr  # fmt: skip
    assert re.search(r"fn:lambda_pyc: verified .*[1-9][\d,]* \.pyc", result.stderr)
