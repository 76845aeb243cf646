"""`./pants package` end to end, in fresh clones, against real PyPI wheels and real interpreters."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from lambda_rules.facts import RUNTIMES
from tests.conftest import REPO_ROOT, file_sha256_hex, pyenv_python

pytestmark = pytest.mark.e2e

EVENT = {"order_id": "o-1", "quantity": 3, "unit_price_cents": 250}
EXPECTED_RESPONSE = {"statusCode": 200, "body": '{"order_id":"o-1","total_cents":750}'}

ELF_MACHINES = {62: "x86_64", 183: "aarch64"}

# The example's package, end to end: fn/, the lockfile, pex's flat layout and the zipper. A change
# here must be deliberate (a new requirement, a changed fn/app.py, a new zipper format).
EXAMPLE_GOLDEN_SHA256 = "bccf7943bb72e0ed74d3182561869026f043e22756fffbcc33956ab808f5cca9"
# What goes beside it: the manifest (sizes, digests, distributions) and the CycloneDX SBOM.
EXAMPLE_GOLDEN_OUTPUTS = {
    "fn/lambda.zip": EXAMPLE_GOLDEN_SHA256,
    "fn/lambda.json": "f449855a6496c2ccb9182ff8aa5a91658e0cee4ae3d47444d3b894393ba5e7c1",
    "fn/lambda.cdx.json": "4b5ab6756a1923c7eff2fbeacbc9391305134cdc2b011d1c9acce5d1b22c58f3",
}


def elf_machine(data: bytes) -> str:
    assert data[:4] == b"\x7fELF", "not an ELF file"
    little_endian = data[5] == 1
    machine = int.from_bytes(data[18:20], "little" if little_endian else "big")
    return ELF_MACHINES.get(machine, str(machine))


def glibc_versions_needed(so_path: Path) -> set[tuple[int, int]]:
    """The GLIBC_x.y symbol versions an extension module needs, read by binutils' readelf."""
    out = subprocess.run(
        ["readelf", "--version-info", "--wide", str(so_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {(int(a), int(b)) for a, b in re.findall(r"GLIBC_(\d+)\.(\d+)", out)}


def wheel_platform_tags(extracted: Path) -> list[str]:
    tags = []
    for wheel_file in extracted.glob("*.dist-info/WHEEL"):
        tags += re.findall(r"^Tag: (\S+)$", wheel_file.read_text(), flags=re.M)
    return tags


def extract_read_only(archive: Path, destination: Path) -> Path:
    subprocess.run(["unzip", "-q", str(archive), "-d", str(destination)], check=True)
    subprocess.run(["chmod", "-R", "a-w", str(destination)], check=True)
    return destination


def call_handler(python: Path, code_dir: Path, module: str = "app") -> dict:
    """Import the handler from `code_dir` only, as Lambda does, in an isolated interpreter."""
    program = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        f"from {module} import handler; "
        "print(json.dumps(handler(json.loads(sys.argv[2]), None)))"
    )
    result = subprocess.run(
        [str(python), "-I", "-S", "-c", program, str(code_dir), json.dumps(EVENT)],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_package_is_byte_identical_across_clones_umask_mtimes_cache_and_pantsd(
    clone_factory, tmp_path
):
    first = clone_factory("first")
    second = clone_factory("second-at-another-path", reverse_order=True)
    for path in second.root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            os.utime(path, (1_234_567_890, 1_234_567_890))

    out_first = first.pants("package", "//fn:lambda", umask=0o022, pantsd=True)
    # Its own named caches too: the units are laid out again, under the other umask, rather than
    # taken from the unit cache the first clone filled.
    second.pants(
        "--no-local-cache",
        f"--named-caches-dir={tmp_path / 'named-caches'}",
        "package",
        "//fn:lambda",
        umask=0o077,
        pantsd=False,
    )

    expected = ["fn/lambda.cdx.json", "fn/lambda.json", "fn/lambda.zip"]
    archive_first = first.root / "dist/fn/lambda.zip"
    digest = file_sha256_hex(archive_first)
    assert {
        relpath: file_sha256_hex(first.root / "dist" / relpath)
        for relpath in EXAMPLE_GOLDEN_OUTPUTS
    } == EXAMPLE_GOLDEN_OUTPUTS
    content_addressed = f"fn/lambda.cas/lambda-{digest[:16]}.zip"
    assert first.dist_files() == sorted([*expected, content_addressed])
    assert second.dist_files() == first.dist_files()
    for relpath in first.dist_files():
        assert (first.root / "dist" / relpath).read_bytes() == (
            second.root / "dist" / relpath
        ).read_bytes(), relpath

    manifest = json.loads((first.root / "dist/fn/lambda.json").read_text())
    assert manifest["sha256"] == digest
    assert manifest["filebase64sha256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert manifest["zipped_size"] == archive_first.stat().st_size
    assert manifest["runtime"] == "python3.12" and manifest["architecture"] == "x86_64"
    assert manifest["handler"] == "app.handler"
    names = {d["name"] for d in manifest["distributions"]}
    assert {"orjson", "pydantic", "pydantic-core", "typing-extensions"} <= names
    with zipfile.ZipFile(archive_first) as zf:
        entries = zf.namelist()
        assert manifest["entry_count"] == len(entries)
        assert manifest["unzipped_size"] == sum(i.file_size for i in zf.infolist())
    assert "app.py" in entries
    assert not [e for e in entries if e.startswith(("pip/", "setuptools/", "bin/", "fn/"))]
    assert not [e for e in entries if "__pycache__" in e or e.endswith(".pyc")]

    assert_sbom_matches_lockfile(first.root / "dist/fn/lambda.cdx.json", manifest)

    # One line per artifact with its path, size and sha256.
    log = out_first.stderr
    assert (
        "dist/fn/lambda.zip" in log
        and digest in log
        and f"{manifest['zipped_size']:,} bytes" in log
    )

    assert call_handler(pyenv_python(12), extract_read_only(archive_first, tmp_path / "x")) == (
        EXPECTED_RESPONSE
    )


SBOM_DISTRIBUTIONS = {
    "pydantic",
    "pydantic-core",
    "orjson",
    "typing-extensions",
    "annotated-types",
    "typing-inspection",
}


def locked_wheels() -> dict[tuple[str, str], set[str]]:
    """(project, version) -> the sha256 of every wheel the example's lockfile records."""
    text = (REPO_ROOT / "3rdparty/python/default.lock").read_text()
    document = json.loads(
        "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    )
    return {
        (r["project_name"], r["version"]): {a["hash"] for a in r["artifacts"]}
        for resolve in document["locked_resolves"]
        for r in resolve["locked_requirements"]
    }


def assert_sbom_matches_lockfile(sbom_path: Path, manifest: dict) -> None:
    text = sbom_path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert manifest["sbom"] == {"file": "lambda.cdx.json", "sha256": file_sha256_hex(sbom_path)}
    sbom = json.loads(text)
    root = sbom["metadata"]["component"]
    assert root["hashes"] == [{"alg": "SHA-256", "content": manifest["sha256"]}]
    components = {c["name"]: c for c in sbom["components"]}
    assert set(components) == SBOM_DISTRIBUTIONS
    locked = locked_wheels()
    for name, component in components.items():
        assert component["purl"] == f"pkg:pypi/{name}@{component['version']}"
        (wheel_hash,) = [h["content"] for h in component["hashes"] if h["alg"] == "SHA-256"]
        assert wheel_hash in locked[(name, component["version"])], name
    assert {d["name"]: d["version"] for d in manifest["distributions"]} == {
        name: c["version"] for name, c in components.items()
    }


MATRIX_BUILD = """
lambda_function(
    name="matrix",
    handler="app.py:handler",
    runtime=parametrize("python3.9", "python3.11", "python3.12", "python3.13", "python3.14"),
    architecture=parametrize("x86_64", "arm64"),
)
"""


def test_runtimes_and_architectures_get_wheels_that_run_there(clone_factory, tmp_path):
    clone = clone_factory()
    clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + MATRIX_BUILD)
    clone.pants("package", "fn:matrix")

    built = sorted(
        p
        for p in (clone.root / "dist/fn").glob("matrix@*.json")
        if not p.name.endswith(".cdx.json")
    )
    assert len(built) == 10
    for manifest_path in built:
        manifest = json.loads(manifest_path.read_text())
        runtime = RUNTIMES[manifest["runtime"]]
        machine = {"x86_64": "x86_64", "arm64": "aarch64"}[manifest["architecture"]]
        archive = manifest_path.with_name(manifest["artifact"])
        extracted = extract_read_only(archive, tmp_path / manifest_path.stem)

        shared_objects = list(extracted.rglob("*.so"))
        assert shared_objects, f"{archive.name}: the example needs native wheels"
        for so in shared_objects:
            assert elf_machine(so.read_bytes()[:64]) == machine, so
            needed = glibc_versions_needed(so)
            assert max(needed, default=(2, 0)) <= runtime.glibc, (so, sorted(needed))
        cp = "cp{}{}".format(*runtime.python_version)
        for tag in wheel_platform_tags(extracted):
            python_tag, abi_tag, platform_tag = tag.split("-")
            if platform_tag != "any":
                assert platform_tag.endswith(machine), tag
                glibc = re.match(r"manylinux_(\d+)_(\d+)_", platform_tag)
                if glibc:
                    assert (int(glibc[1]), int(glibc[2])) <= runtime.glibc, tag
                assert abi_tag == "abi3" or python_tag == cp, (archive.name, tag)

        minor = runtime.python_version[1]
        if machine == "x86_64" and minor <= 13:
            assert call_handler(pyenv_python(minor), extracted) == EXPECTED_RESPONSE
