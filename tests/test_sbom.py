"""The CycloneDX SBOM of a real archive: real wheels from PyPI, the real lockfile, the real library.

The wheels are the ones 3rdparty/python/default.lock pins for python3.12 on x86_64, downloaded
once into .cache/sbom-wheels/ (checked against the lockfile's hashes) and unzipped flat, as the
Pants rules stage them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from lambda_rules.platforms import lambda_platform
from lambda_rules.sbom import generate_sbom, serial_number
from lambda_rules.sbom_identity import PLACEHOLDER_SHA256, SbomError, complete_sbom
from lambda_rules.zipper.build import build_zip
from tests.conftest import file_sha256_hex, pyenv_python

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCKFILE = REPO_ROOT / "3rdparty" / "python" / "default.lock"
RUNTIME, ARCHITECTURE = "python3.12", "x86_64"
DISTRIBUTIONS = (
    "annotated-types",
    "orjson",
    "pydantic",
    "pydantic-core",
    "typing-extensions",
    "typing-inspection",
)
# The namespace lambda_rules.sbom documents, restated: changing it changes every SBOM.
SERIAL_NAMESPACE = uuid.UUID("9183e47e-6105-57bc-b226-22db4e04b716")
CYCLONEDX_PIN = "cyclonedx-python-lib==10.3.0"


def _locked() -> dict[str, dict]:
    """project name -> its locked requirement, read independently of lambda_rules.sbom."""
    text = LOCKFILE.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    resolve = json.loads(body)["locked_resolves"][0]
    return {r["project_name"]: r for r in resolve["locked_requirements"]}


LOCKED = _locked()


@pytest.fixture(scope="session")
def wheels() -> dict[str, Path]:
    """Project name -> the wheel pex would pick for the platform, cached under .cache/."""
    pins = [f"{name}=={LOCKED[name]['version']}" for name in DISTRIBUTIONS]
    key = hashlib.sha256("\n".join([RUNTIME, ARCHITECTURE, *pins]).encode()).hexdigest()[:16]
    cache = REPO_ROOT / ".cache" / "sbom-wheels" / key
    if not (cache / ".complete").exists():
        shutil.rmtree(cache, ignore_errors=True)
        platforms = lambda_platform(RUNTIME, ARCHITECTURE).platform_tags()
        command = [sys.executable, "-m", "pip", "download", "--isolated", "--quiet"]
        command += ["--disable-pip-version-check", "--only-binary=:all:", "--no-deps"]
        command += [f"--platform={tag}" for tag in platforms]
        command += ["--python-version=3.12", "--implementation=cp"]
        command += ["--abi=cp312", "--abi=abi3", "--abi=none", "-d", str(cache), *pins]
        subprocess.run(command, check=True)
        (cache / ".complete").touch()
    found = {}
    for wheel in sorted(cache.glob("*.whl")):
        name = wheel.name.split("-")[0].replace("_", "-").lower()
        found[name] = wheel
    assert sorted(found) == sorted(DISTRIBUTIONS)
    return found


@pytest.fixture(scope="session")
def locked_hashes(wheels) -> dict[str, str]:
    """Each project's wheel sha256 as the lockfile records it, checked against the download."""
    result = {}
    for name, wheel in wheels.items():
        by_file = {a["url"].rsplit("/", 1)[-1]: a["hash"] for a in LOCKED[name]["artifacts"]}
        assert by_file[wheel.name] == file_sha256_hex(wheel), (
            f"{wheel.name} is not the locked wheel"
        )
        result[name] = by_file[wheel.name]
    return result


def _stage(wheels: dict[str, Path], names, root: Path, prefix: str = "") -> Path:
    """Unzip the wheels flat under root/prefix, as the rules lay out distributions."""
    for name in names:
        with zipfile.ZipFile(wheels[name]) as wheel:
            wheel.extractall(root / prefix)
    return root


@pytest.fixture(scope="session")
def archive(wheels, tmp_path_factory) -> Path:
    """The README example: a handler plus pydantic and orjson with their requirements."""
    staged = _stage(wheels, DISTRIBUTIONS, tmp_path_factory.mktemp("staged"))
    (staged / "app.py").write_text(
        "import orjson, pydantic\n\ndef handler(event, context):\n    pass\n"
    )
    out = tmp_path_factory.mktemp("dist") / "lambda.zip"
    build_zip(staged, out)
    return out


@pytest.fixture(scope="session")
def document(archive) -> str:
    return generate_sbom(
        archive, LOCKFILE, name="fn:lambda", platform=lambda_platform(RUNTIME, ARCHITECTURE)
    )


def _components(text: str) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(text)["components"]}


def _dependencies(text: str) -> dict[str, list[str]]:
    return {d["ref"]: d.get("dependsOn", []) for d in json.loads(text)["dependencies"]}


def _purl(name: str) -> str:
    return f"pkg:pypi/{name}@{LOCKED[name]['version']}"


def _cli(*args, env=None, cwd=None, umask=0o022) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    environment.update({"PYTHONPATH": str(REPO_ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "lambda_rules", "sbom", *map(str, args)],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(umask),
    )


def _template_args(out: Path) -> list:
    """`sbom --template`'s options: no archive (the parts come first) and no name."""
    return ["--lockfile", LOCKFILE, "--runtime", RUNTIME, "-o", out]


def _sbom_args(archive: Path, out: Path, *extra) -> list:
    return [
        archive,
        "--lockfile",
        LOCKFILE,
        "--name",
        "fn:lambda",
        "--runtime",
        RUNTIME,
        "-o",
        out,
        *extra,
    ]


def test_validates_against_the_strict_cyclonedx_schema(document):
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    parsed = json.loads(document)
    assert (parsed["bomFormat"], parsed["specVersion"], parsed["version"]) == (
        "CycloneDX",
        "1.6",
        1,
    )
    assert document.endswith("}\n") and not document.endswith("\n\n")


def test_lists_each_bundled_distribution_with_locked_version_and_wheel_hash(
    document, locked_hashes
):
    components = _components(document)
    assert sorted(components) == sorted(DISTRIBUTIONS)
    for name in DISTRIBUTIONS:
        component = components[name]
        assert component["type"] == "library"
        assert component["version"] == LOCKED[name]["version"]
        assert component["purl"] == component["bom-ref"] == _purl(name)
        assert component["hashes"] == [{"alg": "SHA-256", "content": locked_hashes[name]}]
        (distribution,) = component["externalReferences"]
        assert distribution["type"] == "distribution"
        assert distribution["url"] in {a["url"] for a in LOCKED[name]["artifacts"]}


def test_licenses_as_the_metadata_declares_them(document):
    licenses = {name: c.get("licenses") for name, c in _components(document).items()}

    def spdx_id(value: str) -> list:
        return [{"license": {"acknowledgement": "declared", "id": value}}]

    assert licenses["pydantic"] == licenses["pydantic-core"] == spdx_id("MIT")
    assert licenses["typing-inspection"] == spdx_id("MIT")
    assert licenses["typing-extensions"] == spdx_id("PSF-2.0")
    # License-Expression (PEP 639) wins over orjson's two license classifiers.
    assert licenses["orjson"] == [
        {"acknowledgement": "declared", "expression": "Apache-2.0 OR MIT"}
    ]
    # annotated-types states its license only as a trove classifier.
    assert licenses["annotated-types"] == [
        {"license": {"acknowledgement": "declared", "name": "MIT License"}}
    ]


def test_dependencies_follow_requires_dist_on_the_lambda_platform(document):
    dependencies = _dependencies(document)
    assert dependencies[_purl("pydantic")] == sorted(
        _purl(n)
        for n in ("annotated-types", "pydantic-core", "typing-extensions", "typing-inspection")
    )
    assert dependencies[_purl("pydantic-core")] == [_purl("typing-extensions")]
    assert dependencies[_purl("typing-inspection")] == [_purl("typing-extensions")]
    # `typing-extensions; python_version < "3.9"` does not apply to python3.12.
    assert dependencies[_purl("annotated-types")] == []
    assert dependencies[_purl("orjson")] == dependencies[_purl("typing-extensions")] == []
    # The root depends on what nothing else bundled requires: the function's own requirements.
    assert dependencies["fn:lambda"] == [_purl("orjson"), _purl("pydantic")]


def test_root_component_serial_number_and_no_clock(document, archive):
    parsed = json.loads(document)
    archive_sha256 = file_sha256_hex(archive)
    root = parsed["metadata"]["component"]
    assert (root["type"], root["name"], root["bom-ref"]) == (
        "application",
        "fn:lambda",
        "fn:lambda",
    )
    assert root["version"] == archive_sha256
    assert root["hashes"] == [{"alg": "SHA-256", "content": archive_sha256}]
    expected = uuid.uuid5(SERIAL_NAMESPACE, archive_sha256)
    assert parsed["serialNumber"] == f"urn:uuid:{expected}" == serial_number(archive_sha256).urn
    assert expected.version == 5
    assert "timestamp" not in parsed["metadata"]
    (tool,) = parsed["metadata"]["tools"]["components"]
    assert (tool["name"], tool["version"]) == ("cyclonedx-python-lib", CYCLONEDX_PIN.split("==")[1])


def test_template_from_the_staged_distributions_is_the_template_from_their_parts(wheels, tmp_path):
    """The Pants rules write the template from the units' METADATA and WHEEL, laid out as in
    the archive, while the units compress: the same bytes as from the compressed parts, for a
    function and for a layer (distributions under python/)."""
    for prefix, kind in (("", "function"), ("python/", "layer")):
        staged = _stage(wheels, DISTRIBUTIONS, tmp_path / kind / "staged", prefix)
        parts = []
        for name in DISTRIBUTIONS:
            part = tmp_path / kind / "parts" / f"{name}.zip"
            part.parent.mkdir(exist_ok=True)
            unit = _stage(wheels, [name], tmp_path / kind / "units" / name, prefix)
            build_zip(unit, part)
            parts.append(part)
        # What the rule hands the process: only the metadata files, in one tree.
        metadata = tmp_path / kind / "metadata"
        for path in staged.glob("**/*.dist-info/*"):
            if path.name in ("METADATA", "WHEEL"):
                target = metadata / path.relative_to(staged)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
        templates = []
        for sources in (parts, [metadata], [staged]):
            out = tmp_path / kind / f"template-{len(templates)}.json"
            result = _cli("--template", *sources, "--kind", kind, *_template_args(out))
            assert result.returncode == 0, result.stderr
            templates.append(out.read_bytes())
        assert templates[0] == templates[1] == templates[2], kind
        assert all(f'"name": "{name}"'.encode() in templates[0] for name in DISTRIBUTIONS)

    orjson_metadata = next(metadata.glob("**/orjson-*.dist-info")) / "METADATA"
    saved = orjson_metadata.read_bytes()
    orjson_metadata.unlink()
    result = _cli("--template", metadata, *_template_args(tmp_path / "broken.json"))
    assert result.returncode == 2 and "orjson-" in result.stderr
    assert "has no METADATA file" in result.stderr
    assert not (tmp_path / "broken.json").exists()
    # A metadata file too large to be one is refused before it is read (sparse: nothing written).
    orjson_metadata.write_bytes(saved)
    with (next(metadata.glob("**/pydantic-2*.dist-info")) / "WHEEL").open("r+b") as wheel:
        wheel.truncate(16 * 1024 * 1024 + 1)
    result = _cli("--template", metadata, *_template_args(tmp_path / "huge.json"))
    assert result.returncode == 2 and "WHEEL declares 16777217 bytes" in result.stderr
    assert "too large for a metadata file" in result.stderr
    assert not (tmp_path / "huge.json").exists()


def test_template_from_the_parts_completes_to_the_sbom_of_the_merged_archive(
    wheels, document, archive, tmp_path
):
    """What the Pants rules do: the SBOM is written from the distribution parts alone (so a
    first-party edit reuses it), and the merged archive's digest is filled in afterwards."""
    parts = []
    for name in DISTRIBUTIONS:
        part = tmp_path / "parts" / f"{name}.zip"
        part.parent.mkdir(exist_ok=True)
        build_zip(_stage(wheels, [name], tmp_path / "units" / name), part)
        parts.append(part)
    first_party = tmp_path / "first-party"
    first_party.mkdir()
    (first_party / "app.py").write_text(
        "import orjson, pydantic\n\ndef handler(event, context):\n    pass\n"
    )
    merged = tmp_path / "merged.zip"
    merge = [sys.executable, "-m", "lambda_rules.zipper", "merge", *parts]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [*merge, "--tree", first_party, "-o", merged]
    subprocess.run(command, check=True, capture_output=True, env=environment)
    assert merged.read_bytes() == archive.read_bytes()

    template_file = tmp_path / "template.cdx.json"
    result = _cli("--template", *parts, *_template_args(template_file))
    assert result.returncode == 0, result.stderr
    template = template_file.read_text(encoding="utf-8")
    assert file_sha256_hex(archive) not in template and template.count(PLACEHOLDER_SHA256) == 2
    assert "fn:lambda" not in template
    assert complete_sbom(template, file_sha256_hex(merged), "fn:lambda") == document
    # One template serves any function on these distributions. The library sorts dependency
    # entries by bom-ref: names sorting before and after the purls, a non-ASCII one and one
    # that needs escaping, each as the library writes it for that name directly.
    platform = lambda_platform(RUNTIME, ARCHITECTURE)
    for name in ("a:first", "pkg:pypi/zzz", "zzz:last", "fn:lambdé", 'odd:"quoted"\\name'):
        direct = generate_sbom(merged, LOCKFILE, name=name, platform=platform)
        assert complete_sbom(template, file_sha256_hex(merged), name) == direct, name

    with pytest.raises(SbomError, match="not an SBOM template"):
        complete_sbom(document, file_sha256_hex(merged), "fn:lambda")
    with pytest.raises(SbomError, match="not a lowercase hex SHA-256"):
        complete_sbom(template, file_sha256_hex(merged).upper(), "fn:lambda")
    with pytest.raises(SbomError, match="also the bom-ref of one of its components"):
        complete_sbom(template, file_sha256_hex(merged), _purl("orjson"))
    with pytest.raises(SbomError, match="needs a name"):
        complete_sbom(template, file_sha256_hex(merged), "")
    for archives in (parts, []):
        wrong = _cli(*archives, *_sbom_args(parts[0], tmp_path / "x.json")[1:])
        assert wrong.returncode == 2 and "the parts of one with --template" in wrong.stderr
    named = _cli("--template", *parts, *_sbom_args(parts[0], tmp_path / "named.json")[1:])
    assert named.returncode == 2 and "drop --name" in named.stderr
    assert not (tmp_path / "named.json").exists()
    unnamed = _cli(archive, *_template_args(tmp_path / "unnamed.json"))
    assert unnamed.returncode == 2 and "sbom needs --name" in unnamed.stderr
    # A layer of first-party code only has no distribution parts: an SBOM with no components.
    empty = _cli("--template", *_template_args(tmp_path / "empty.json"))
    assert empty.returncode == 0, empty.stderr
    empty_template = (tmp_path / "empty.json").read_text(encoding="utf-8")
    assert "components" not in json.loads(
        complete_sbom(empty_template, file_sha256_hex(merged), "fn:x")
    )


def test_timestamp_only_from_source_date_epoch_or_option(archive, tmp_path):
    def timestamp(*extra, env=None):
        out = tmp_path / "out.cdx.json"
        result = _cli(*_sbom_args(archive, out, *extra), env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(out.read_text())["metadata"].get("timestamp")

    assert timestamp() is None
    assert timestamp(env={"SOURCE_DATE_EPOCH": "1700000000"}) == "2023-11-14T22:13:20+00:00"
    both = timestamp("--timestamp", "0", env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert both == "1970-01-01T00:00:00+00:00"


def test_byte_identical_across_hash_seed_cwd_umask_tz_and_locale(document, archive, tmp_path):
    first_cwd, second_cwd = tmp_path / "one", tmp_path / "two" / "deeper"
    first_cwd.mkdir()
    second_cwd.mkdir(parents=True)
    shutil.copy(archive, second_cwd / "fn.zip")
    first = _cli(
        *_sbom_args(archive, first_cwd / "a.cdx.json"),
        env={"PYTHONHASHSEED": "0", "TZ": "UTC", "LC_ALL": "C"},
        cwd=first_cwd,
        umask=0o022,
    )
    second = _cli(
        *_sbom_args(Path("fn.zip"), Path("b.cdx.json")),
        env={"PYTHONHASHSEED": "4242", "TZ": "Pacific/Chatham", "LC_ALL": "C.UTF-8"},
        cwd=second_cwd,
        umask=0o077,
    )
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    a, b = first_cwd / "a.cdx.json", second_cwd / "b.cdx.json"
    assert a.read_bytes() == b.read_bytes() == document.encode("utf-8")
    assert a.stat().st_mode & 0o777 == b.stat().st_mode & 0o777 == 0o644


def test_byte_identical_under_cpython_3_12_with_current_dependencies(document, archive, tmp_path):
    """The test venv runs CPython 3.9 with Pants' old `packaging`; a fresh 3.12 tool venv agrees."""
    python = _sbom_venv(12)
    out = tmp_path / "out.cdx.json"
    result = subprocess.run(
        [python, "-m", "lambda_rules", "sbom", *map(str, _sbom_args(archive, out))],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "random"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == document.encode("utf-8")


def _sbom_venv(minor: int) -> str:
    """A venv of pyenv's CPython 3.<minor> with sbom-requirements.txt, cached under .cache/."""
    requirements = REPO_ROOT / "3rdparty" / "python" / "sbom-requirements.txt"
    venv = REPO_ROOT / ".cache" / "sbom-venvs" / f"cpython-3.{minor}"
    python = venv / "bin" / "python"
    ready = venv / "requirements.txt"
    wanted = requirements.read_text() + "packaging\ndeflate==0.8.1\n"
    if not ready.exists() or ready.read_text() != wanted:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(pyenv_python(minor)), "-m", "venv", str(venv)], check=True)
        (venv / "wanted.txt").write_text(wanted)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--isolated",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(venv / "wanted.txt"),
            ],
            check=True,
        )
        ready.write_text(wanted)
    return str(python)


def test_layer_sbom_and_a_function_that_references_it(wheels, locked_hashes, tmp_path):
    # The layer bundles typing-extensions under python/, as Lambda layers lay code out.
    layer_root = _stage(wheels, ["typing-extensions"], tmp_path / "layer", "python")
    layer_zip = tmp_path / "layer.zip"
    build_zip(layer_root, layer_zip)
    layer_out = tmp_path / "layer.cdx.json"
    result = _cli(
        layer_zip,
        "--lockfile",
        LOCKFILE,
        "--name",
        "layers:deps",
        "--kind",
        "layer",
        "--runtime",
        RUNTIME,
        "-o",
        layer_out,
    )
    assert result.returncode == 0, result.stderr
    layer_sbom = json.loads(layer_out.read_text())
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(layer_out.read_text()) is None
    assert layer_sbom["metadata"]["component"]["type"] == "library"
    assert sorted(_components(layer_out.read_text())) == ["typing-extensions"]

    # The function excludes what the layer provides: it is not listed as bundled.
    bundled = [n for n in DISTRIBUTIONS if n != "typing-extensions"]
    function_zip = tmp_path / "fn.zip"
    build_zip(_stage(wheels, bundled, tmp_path / "fn"), function_zip)
    by_archive, by_hash = tmp_path / "by-archive.cdx.json", tmp_path / "by-hash.cdx.json"
    layer_sha256 = file_sha256_hex(layer_zip)
    result = _cli(
        *_sbom_args(function_zip, by_archive, "--layer-archive", f"layers:deps={layer_zip}")
    )
    assert result.returncode == 0, result.stderr
    result = _cli(*_sbom_args(function_zip, by_hash, "--layer", f"layers:deps={layer_sha256}"))
    assert result.returncode == 0, result.stderr

    text = by_archive.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    components = _components(text)
    assert sorted(components) == sorted([*bundled, "layers:deps"])
    layer = components["layers:deps"]
    # Named, versioned and referenced as the layer's own SBOM names its root, plus a BOM-Link to it.
    layer_root = layer_sbom["metadata"]["component"]
    for key in ("type", "name", "version", "bom-ref", "hashes"):
        assert layer[key] == layer_root[key]
    assert (layer["version"], layer["bom-ref"]) == (layer_sha256, "layers:deps")
    assert layer["hashes"] == [{"alg": "SHA-256", "content": layer_sha256}]
    (link,) = layer["externalReferences"]
    layer_serial = layer_sbom["serialNumber"][len("urn:uuid:") :]
    assert link == {"type": "bom", "url": f"urn:cdx:{layer_serial}/1#layers%3Adeps"}
    dependencies = _dependencies(text)
    assert "layers:deps" in dependencies["fn:lambda"]
    # Requirements on what the layer bundles become edges to the layer, when its contents are known.
    assert "layers:deps" in dependencies[_purl("pydantic")]
    assert dependencies[_purl("typing-inspection")] == ["layers:deps"]
    # By hash alone the layer is referenced, but what it bundles is unknown, so no edges reach it.
    by_hash_dependencies = _dependencies(by_hash.read_text())
    assert "layers:deps" in by_hash_dependencies["fn:lambda"]
    assert by_hash_dependencies[_purl("typing-inspection")] == []
    assert _components(by_hash.read_text())["layers:deps"] == layer


def _assert_refused(result: subprocess.CompletedProcess, out: Path, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("lambda-zip: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == [], "no output, not even a temp file"


def test_missing_lockfile(archive, tmp_path):
    out = tmp_path / "out" / "x.cdx.json"
    out.parent.mkdir()
    args = _sbom_args(archive, out)
    args[args.index(LOCKFILE)] = tmp_path / "missing.lock"
    _assert_refused(_cli(*args), out, "missing.lock", "No such file")


def test_distribution_not_in_the_lockfile(wheels, tmp_path):
    staged = _stage(wheels, ["orjson"], tmp_path / "staged")
    dist_info = staged / "leftpad-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: leftpad\nVersion: 1.0\n")
    (dist_info / "WHEEL").write_text("Wheel-Version: 1.0\nTag: py3-none-any\n")
    build_zip(staged, tmp_path / "fn.zip")
    out = tmp_path / "out" / "x.cdx.json"
    out.parent.mkdir()
    _assert_refused(
        _cli(*_sbom_args(tmp_path / "fn.zip", out)), out, "leftpad 1.0", "not in the lockfile"
    )


def test_distribution_whose_wheel_tags_match_no_locked_artifact(wheels, tmp_path):
    staged = _stage(wheels, ["orjson"], tmp_path / "staged")
    wheel_file = staged / "orjson-3.11.5.dist-info" / "WHEEL"
    wheel_file.write_text(
        "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp312-cp312-win_amd64\n"
    )
    build_zip(staged, tmp_path / "fn.zip")
    out = tmp_path / "out" / "x.cdx.json"
    out.parent.mkdir()
    _assert_refused(
        _cli(*_sbom_args(tmp_path / "fn.zip", out)), out, "orjson 3.11.5", "cp312-cp312-win_amd64"
    )


def test_unknown_runtime_and_bad_layer(archive, tmp_path):
    out = tmp_path / "out" / "x.cdx.json"
    out.parent.mkdir()
    args = _sbom_args(archive, out)
    args[args.index(RUNTIME)] = "python2.7"
    _assert_refused(_cli(*args), out, "python2.7")
    _assert_refused(_cli(*_sbom_args(archive, out, "--layer", "deps=abc")), out, "deps", "SHA-256")
    _assert_refused(_cli(*_sbom_args(archive, out, "--layer", "deps")), out, "NAME=VALUE")


def test_zipper_works_without_cyclonedx_and_sbom_says_what_is_missing(archive, tmp_path):
    # `None` in sys.modules makes the import fail exactly as an absent package does.
    code = (
        "import sys; sys.modules['cyclonedx'] = None; "
        "from lambda_rules.lambda_zip.main import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.py").write_text("A = 1\n")
    built = subprocess.run(
        [sys.executable, "-c", code, "build", tmp_path / "tree", "-o", tmp_path / "a.zip"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    out = tmp_path / "out" / "x.cdx.json"
    out.parent.mkdir()
    refused = subprocess.run(
        [sys.executable, "-c", code, "sbom", *map(str, _sbom_args(archive, out))],
        env=env,
        capture_output=True,
        text=True,
    )
    _assert_refused(refused, out, "cyclonedx", "sbom-requirements.txt")
