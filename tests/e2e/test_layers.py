"""`lambda_layer`, `layers` and `exclude_distributions` end to end, in fresh clones.

Every scenario lives in one clone (a fresh clone and its first Pants run cost about a minute);
the reproducibility test builds the same targets in a second clone at another path.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from lambda_rules.facts import UNZIPPED_LIMIT_BYTES
from tests.conftest import Clone, file_sha256_hex, make_clone, pyenv_python

pytestmark = pytest.mark.e2e

EVENT = {"order_id": "o-1", "quantity": 3, "unit_price_cents": 250}
EXPECTED_RESPONSE = {"statusCode": 200, "body": '{"order_id":"o-1","total_cents":750}'}

# The acceptance scenario: the layer holds pydantic (and what it needs) plus a first-party module
# the function imports; the function adds orjson and its handler.
LAYERED_BUILD = """
python_sources(name="model", sources=["orders_model.py"])
python_sources(name="src", sources=["app.py"])

lambda_layer(
    name="deps",
    runtime="python3.12",
    dependencies=[":model", "3rdparty/python:reqs#pydantic"],
)

lambda_function(
    name="fn",
    handler="app.py:handler",
    runtime="python3.12",
    layers=[":deps"],
)
"""
ORDERS_MODEL = """
from pydantic import BaseModel, Field


class Order(BaseModel):
    order_id: str
    quantity: int = Field(gt=0)
    unit_price_cents: int = Field(ge=0)
"""
LAYERED_APP = """
import orjson

from orders_model import Order


def handler(event, context):
    order = Order.model_validate(event)
    body = {"order_id": order.order_id, "total_cents": order.quantity * order.unit_price_cents}
    return {"statusCode": 200, "body": orjson.dumps(body).decode()}
"""

# 131 MiB each: either alone is within Lambda's 250 MB, together they are not.
BLOB_BYTES = 131 * 1024 * 1024

ERRORS_BUILD = """
python_sources(name="src", sources=["app.py"])
files(name="blob-a", sources=["blob_a.bin"])
files(name="blob-b", sources=["blob_b.bin"])

lambda_layer(name="py311", runtime="python3.11", dependencies=["3rdparty/python:reqs#pydantic"])
lambda_function(
    name="runtime-mismatch", handler="app.py:handler", runtime="python3.12", layers=[":py311"]
)

lambda_layer(
    name="arm",
    runtime="python3.12",
    architecture="arm64",
    dependencies=["3rdparty/python:reqs#pydantic"],
)
lambda_function(
    name="arch-mismatch", handler="app.py:handler", runtime="python3.12", layers=[":arm"]
)

# typing-extensions 4.15.0 (e2e-fixtures) against the 4.16.0 pydantic needs (python-default).
lambda_layer(
    name="old-te",
    runtime="python3.12",
    resolve="e2e-fixtures",
    dependencies=["tests/e2e/fixtures:reqs#typing-extensions"],
)
lambda_function(
    name="version-clash", handler="app.py:handler", runtime="python3.12", layers=[":old-te"]
)

lambda_function(
    name="unknown-exclusion",
    handler="app.py:handler",
    runtime="python3.12",
    exclude_distributions=["pydantc"],
)
lambda_layer(
    name="unknown-layer-exclusion",
    runtime="python3.12",
    dependencies=["3rdparty/python:reqs#pydantic"],
    exclude_distributions=["boto3"],
)

lambda_layer(name="big-layer", runtime="python3.12", dependencies=[":blob-a"])
lambda_function(
    name="too-big",
    handler="app.py:handler",
    runtime="python3.12",
    dependencies=[":blob-b"],
    layers=[":big-layer"],
)
"""
ERRORS_APP = LAYERED_APP.replace("from orders_model import Order", ORDERS_MODEL)

# boto3 and requests come from the e2e-fixtures resolve; both need urllib3.
EXCLUDE_BUILD = """
python_sources(name="src", resolve="e2e-fixtures")

lambda_function(
    name="boto-only",
    handler="boto_app.py:handler",
    runtime="python3.12",
    resolve="e2e-fixtures",
    exclude_distributions=["boto3"],
)
lambda_function(
    name="boto-and-requests",
    handler="both_app.py:handler",
    runtime="python3.12",
    resolve="e2e-fixtures",
    exclude_distributions=["Boto3"],
)
"""
BOTO_APP = """
import boto3


def handler(event, context):
    return {"boto3": boto3.__version__}
"""
BOTH_APP = """
import boto3
import requests


def handler(event, context):
    return {"boto3": boto3.__version__, "requests": requests.__version__}
"""

SOURCE_ROOTS = ["/layered", "/layer_errors", "/excl"]


def populate(clone: Clone) -> None:
    """Write every scenario into a clone."""
    toml = (clone.root / "pants.toml").read_text()
    roots = ", ".join(f'"{root}"' for root in SOURCE_ROOTS)
    assert '["/", "/fn"]' in toml
    clone.write("pants.toml", toml.replace('["/", "/fn"]', f'["/", "/fn", {roots}]'))
    clone.write("layered/BUILD", LAYERED_BUILD)
    clone.write("layered/orders_model.py", ORDERS_MODEL)
    clone.write("layered/app.py", LAYERED_APP)
    clone.write("layer_errors/BUILD", ERRORS_BUILD)
    clone.write("layer_errors/app.py", ERRORS_APP)
    for name in ("blob_a.bin", "blob_b.bin"):
        # Zeros, as a sparse file: cheap to write, to hash and to compress.
        with open(clone.root / "layer_errors" / name, "wb") as f:
            f.truncate(BLOB_BYTES)
    clone.write("excl/BUILD", EXCLUDE_BUILD)
    clone.write("excl/boto_app.py", BOTO_APP)
    clone.write("excl/both_app.py", BOTH_APP)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    clone = make_clone(tmp_path_factory.mktemp("layers") / "repo")
    populate(clone)
    yield clone
    clone.kill_pantsd()


def clear_dist(clone: Clone) -> None:
    shutil.rmtree(clone.root / "dist", ignore_errors=True)


def entries(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return zf.namelist()


def top_levels(names: list[str]) -> set[str]:
    return {name.split("/", 1)[0] for name in names}


def extract_read_only(archive: Path, destination: Path) -> Path:
    destination.mkdir(parents=True)
    subprocess.run(["unzip", "-q", str(archive), "-d", str(destination)], check=True)
    subprocess.run(["chmod", "-R", "a-w", str(destination)], check=True)
    return destination


PROGRAM = """
import json, sys
task_root, layer_site_packages, layer_python, event = sys.argv[1:]
# The Lambda Python runtime's order: the function's root, then the layers' directories.
sys.path[:0] = [task_root, layer_site_packages, layer_python]
from app import handler
import orjson, orders_model, pydantic, pydantic_core
print(json.dumps({
    "response": handler(json.loads(event), None),
    "files": {m.__name__: m.__file__ for m in (orjson, orders_model, pydantic, pydantic_core)},
}))
"""


def test_function_on_a_layer_leaves_out_what_the_layer_holds_and_runs_with_it(clone, tmp_path):
    clear_dist(clone)
    clone.pants("package", "layered:deps", "layered:fn", pantsd=True)
    dist = clone.root / "dist"
    layer_zip, function_zip = dist / "layered/deps.zip", dist / "layered/fn.zip"
    layer_digest, function_digest = file_sha256_hex(layer_zip), file_sha256_hex(function_zip)
    layer_base64 = base64.b64encode(bytes.fromhex(layer_digest)).decode()
    # (An SBOM, `<name>.cdx.json`, may be written beside each manifest.)
    assert [f for f in clone.dist_files() if not f.endswith(".cdx.json")] == sorted(
        [
            "layered/deps.zip",
            "layered/deps.json",
            f"layered/deps.cas/deps-{layer_digest[:16]}.zip",
            "layered/fn.zip",
            "layered/fn.json",
            f"layered/fn.cas/fn-{function_digest[:16]}.zip",
        ]
    )

    # The layer: everything under python/, its manifest says what it is and what it holds.
    layer_entries = entries(layer_zip)
    assert layer_entries and all(name.startswith("python/") for name in layer_entries)
    assert "python/orders_model.py" in layer_entries
    assert "python/pydantic/__init__.py" in layer_entries
    assert any(name.startswith("python/pydantic_core/_pydantic_core.") for name in layer_entries)
    layer_manifest = json.loads((dist / "layered/deps.json").read_text())
    assert layer_manifest["kind"] == "layer"
    assert layer_manifest["runtime"] == "python3.12"
    assert layer_manifest["architecture"] == "x86_64"
    assert layer_manifest["sha256"] == layer_digest
    assert layer_manifest["filebase64sha256"] == layer_base64
    with zipfile.ZipFile(layer_zip) as zf:
        assert layer_manifest["unzipped_size"] == sum(i.file_size for i in zf.infolist())
    layer_distributions = {d["name"]: d["version"] for d in layer_manifest["distributions"]}
    assert layer_distributions["pydantic"] == "2.12.5"
    assert layer_distributions["pydantic-core"] == "2.41.5"
    assert "orjson" not in layer_distributions

    # The function: no pydantic, pydantic_core (nor anything else the layer holds), no copy of
    # the layer's first-party module; its own code and orjson.
    function_entries = entries(function_zip)
    tops = top_levels(function_entries)
    assert "app.py" in function_entries
    assert "orjson" in tops and any(t.startswith("orjson-") for t in tops)
    assert "orders_model.py" not in function_entries
    for top in tops:
        assert not top.startswith(
            ("pydantic", "typing_extensions", "annotated_types", "typing_inspection")
        ), top
    function_manifest = json.loads((dist / "layered/fn.json").read_text())
    assert function_manifest["kind"] == "function"
    assert function_manifest["handler"] == "app.handler"
    assert function_manifest["sha256"] == function_digest
    assert function_manifest["layers"] == [
        {
            "address": "layered:deps",
            "sha256": layer_digest,
            "filebase64sha256": layer_base64,
        }
    ]
    bundled = {d["name"] for d in function_manifest["distributions"]}
    assert "orjson" in bundled and "pydantic" not in bundled and "pydantic-core" not in bundled
    # The function's SBOM lists what it bundles, not what its layer holds, and references the
    # layer by the layer's own SBOM identity (its address and sha256).
    function_sbom = json.loads((dist / "layered/fn.cdx.json").read_text())
    components = {c["name"]: c for c in function_sbom["components"]}
    assert set(components) == {"orjson", "layered:deps"}
    assert components["layered:deps"]["version"] == layer_digest
    layer_sbom = json.loads((dist / "layered/deps.cdx.json").read_text())
    assert {"pydantic", "pydantic-core"} <= {c["name"] for c in layer_sbom["components"]}

    # Lambda's layout: the function at /var/task, the layer at /opt, both read-only.
    task_root = extract_read_only(function_zip, tmp_path / "task")
    opt = extract_read_only(layer_zip, tmp_path / "opt")
    result = subprocess.run(
        [
            str(pyenv_python(12)), "-I", "-S", "-c", PROGRAM, str(task_root),
            str(opt / "python/lib/python3.12/site-packages"), str(opt / "python"),
            json.dumps(EVENT),
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["response"] == EXPECTED_RESPONSE
    files = output["files"]
    assert files["orjson"].startswith(str(task_root) + "/")
    for module in ("orders_model", "pydantic", "pydantic_core"):
        assert files[module].startswith(str(opt / "python") + "/"), files


def failing_package(clone: Clone, target: str) -> str:
    clear_dist(clone)
    result = clone.pants("package", target, pantsd=True, check=False)
    assert result.returncode != 0, result.stderr
    assert clone.dist_files() == [], "a failed build must leave nothing in dist/"
    return result.stderr


@pytest.mark.parametrize(
    "target, expected",
    [
        (
            "layer_errors:version-clash",
            ["layer_errors:version-clash", "layer_errors:old-te", "typing-extensions", "4.16.0",
             "4.15.0"],
        ),
        (
            "layer_errors:runtime-mismatch",
            ["layer_errors:runtime-mismatch", "layer_errors:py311", "python3.11", "python3.12"],
        ),
        (
            "layer_errors:arch-mismatch",
            ["layer_errors:arch-mismatch", "layer_errors:arm", "arm64", "x86_64"],
        ),
        (
            "layer_errors:unknown-exclusion",
            ["layer_errors:unknown-exclusion", "exclude_distributions", "`pydantc`",
             "did you mean `pydantic`"],
        ),
        (
            "layer_errors:unknown-layer-exclusion",
            ["layer_errors:unknown-layer-exclusion", "exclude_distributions", "`boto3`"],
        ),
        (
            "layer_errors:too-big",
            ["layer_errors:too-big", "layer_errors:big-layer", f"{UNZIPPED_LIMIT_BYTES:,}",
             f"{BLOB_BYTES:,} bytes"],
        ),
    ],
)  # fmt: skip
def test_bad_layer_inputs_fail_clearly_and_leave_nothing(clone, target, expected):
    stderr = failing_package(clone, target)
    for fragment in expected:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"


BOTO3_FILES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six")


def _has(tops: set[str], package: str) -> bool:
    """Whether the top-level entries hold a package's code or its .dist-info."""
    return any(
        t in (package, f"{package}.py") or t.lower().startswith(f"{package.lower()}-") for t in tops
    )


def test_excluding_boto3_drops_what_only_it_needs(clone):
    clear_dist(clone)
    clone.pants("package", "excl:boto-only", "excl:boto-and-requests", pantsd=True)
    dist = clone.root / "dist"

    alone = top_levels(entries(dist / "excl/boto-only.zip"))
    assert "boto_app.py" in alone
    for package in (*BOTO3_FILES, "python_dateutil", "urllib3"):
        assert not _has(alone, package), (package, sorted(alone))
    manifest = json.loads((dist / "excl/boto-only.json").read_text())
    assert manifest["distributions"] == []

    # requests needs urllib3 too: it stays, with what requests needs.
    both = top_levels(entries(dist / "excl/boto-and-requests.zip"))
    assert "both_app.py" in both
    for package in (*BOTO3_FILES, "python_dateutil"):
        assert not _has(both, package), (package, sorted(both))
    for package in ("requests", "urllib3", "certifi", "idna", "charset_normalizer"):
        assert _has(both, package), (package, sorted(both))
    names = {
        d["name"]
        for d in json.loads((dist / "excl/boto-and-requests.json").read_text())["distributions"]
    }
    assert names == {"requests", "urllib3", "certifi", "idna", "charset-normalizer"}


def test_layer_and_function_are_byte_identical_across_clones_umask_and_mtimes(clone, clone_factory):
    targets = ("layered:deps", "layered:fn", "excl:boto-and-requests")
    clear_dist(clone)
    clone.pants("package", *targets, umask=0o022, pantsd=True)

    other = clone_factory("layers-other-path", reverse_order=True)
    populate(other)
    for path in other.root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            os.utime(path, (1_234_567_890, 1_234_567_890))
    # Its own named caches: every unit laid out again, under the other umask.
    named = f"--named-caches-dir={other.root.parent / 'named-caches'}"
    other.pants("--no-local-cache", named, "package", *targets, umask=0o077, pantsd=False)

    assert other.dist_files() == clone.dist_files()
    assert "layered/deps.zip" in clone.dist_files() and "layered/fn.zip" in clone.dist_files()
    for relpath in clone.dist_files():
        assert (clone.root / "dist" / relpath).read_bytes() == (
            other.root / "dist" / relpath
        ).read_bytes(), relpath
    for manifest in ("layered/deps.json", "layered/fn.json"):
        assert str(clone.root) not in (clone.root / "dist" / manifest).read_text()
