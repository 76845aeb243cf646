"""Distributions as shared, cached units: a second function on the same requirements compresses
no distribution again, and every assembled archive equals a one-shot build of its contents."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import Clone

pytestmark = pytest.mark.e2e

SECOND_FUNCTION_BUILD = """
lambda_function(
    name="other",
    handler="other.py:handler",
    runtime="python3.12",
)
"""
SECOND_HANDLER = '''"""A second function on the example's requirements, with a different handler."""

import orjson
import pydantic


def handler(event, context):
    return {"body": orjson.dumps({"pydantic": pydantic.VERSION}).decode()}
'''

WORKUNIT_LOGGER = "pants.backend.experimental.tools.workunit_logger"


def processes(clone: Clone, logdir: Path) -> list[dict]:
    """Every process of the last run, from Pants' own workunit log: description and source."""
    (log,) = logdir.glob("*.json")
    return [
        {"description": json.loads(w["metadata"]["definition"])["description"], **w["metadata"]}
        for w in json.loads(log.read_text())
        if w["name"] == "process" and "definition" in w.get("metadata", {})
    ]


# Pants looks for bash in every new session (uncacheable); every other process is ours.
PANTS_OWN_PROCESSES = ("Searching for `bash`", "Test binary ")
# The tool's own requirements, installed from its lock by our wheel step (no pex).
TOOL_INSTALL = r"Install \d+ wheels of the lambda-zip tool"


def package_logging_processes(clone: Clone, target: str, logdir: Path) -> list[dict]:
    logdir.mkdir()
    clone.pants(
        # The clone's own store, empty at first: what earlier builds on this machine cached
        # must not hide a compression from the first build.
        f"--local-store-dir={clone.root.parent / 'local-store'}",
        f"--backend-packages=+['{WORKUNIT_LOGGER}']",
        "--workunit-logger-enabled",
        f"--workunit-logger-logdir={logdir}",
        "package",
        target,
    )
    return processes(clone, logdir)


def rebuilt_in_one_go(archive: Path, tmp_path: Path) -> bytes:
    """`lambda-zip build` over the archive's own extracted contents."""
    extracted = tmp_path / f"{archive.stem}-extracted"
    subprocess.run(["unzip", "-q", str(archive), "-d", str(extracted)], check=True)
    out = tmp_path / f"{archive.stem}-rebuilt.zip"
    subprocess.run(
        [sys.executable, "-m", "lambda_rules.zipper", "build", str(extracted), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def test_second_function_compresses_no_distribution_again(clone_factory, tmp_path):
    clone = clone_factory()
    clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + SECOND_FUNCTION_BUILD)
    clone.write("fn/other.py", SECOND_HANDLER)

    first = package_logging_processes(clone, "//fn:lambda", tmp_path / "first")
    distributions = [p for p in first if p["description"].startswith("Compress ")]
    # One unit per distribution of the example (pydantic, pydantic-core, orjson, ...), the five
    # small ones compressed by one process (a part each); the first-party code is zipped by the
    # "Zip" process itself.
    assert len(distributions) == 2, [p["description"] for p in distributions]
    assert sorted(p["description"].split(" for ")[0] for p in distributions) == [
        "Compress 5 small distributions: annotated-types 0.7.0",
        "Compress pydantic-core 2.41.5",
    ]
    assert all(p["source"] == "Ran" for p in distributions)

    second = package_logging_processes(clone, "//fn:other", tmp_path / "second")
    ran = [p["description"] for p in second if p["source"] == "Ran"]
    compressed_second = [p for p in second if p["description"].startswith("Compress ")]
    assert {p["description"] for p in compressed_second} == {
        p["description"] for p in distributions
    }
    assert [d for d in ran if d.startswith("Compress ")] == []
    # The SBOM template names neither the function nor its code: the first function's serves.
    sbom_templates = [p for p in second if p["description"].startswith("Write SBOM template")]
    assert len(sbom_templates) == 1 and sbom_templates[0]["source"] != "Ran", sbom_templates

    for name in ("lambda", "other"):
        archive = clone.root / f"dist/fn/{name}.zip"
        assert archive.read_bytes() == rebuilt_in_one_go(archive, tmp_path), name
    # Old content-addressed copies do not pile up: `package` clears the target's directory.
    # A first-party edit runs one process: "Zip". The SBOM of the distributions is reused.
    clone.write("fn/other.py", SECOND_HANDLER + "# edited\n")
    edited = package_logging_processes(clone, "//fn:other", tmp_path / "edited")
    assert [
        p["description"]
        for p in edited
        if p["source"] == "Ran" and not p["description"].startswith(PANTS_OWN_PROCESSES)
    ] == ["Zip fn:other (python3.12 on x86_64 (Amazon Linux 2023, glibc 2.34))"]
    assert any(p["description"].startswith("Write SBOM template") for p in edited)
    copies = list((clone.root / "dist/fn/other.cas").iterdir())
    assert [c.read_bytes() for c in copies] == [(clone.root / "dist/fn/other.zip").read_bytes()]
    with_other = json.loads((clone.root / "dist/fn/other.json").read_text())
    assert with_other["handler"] == "other.handler"
    assert (
        with_other["distributions"]
        == json.loads((clone.root / "dist/fn/lambda.json").read_text())["distributions"]
    )


def test_independent_builds_run_the_same_processes(clone_factory, tmp_path):
    """Two clones at different paths, each with its own empty store, build everything themselves,
    the zipper tool and its bytecode included: each of our processes is the same action in both
    (argv, environment, input digests), so either machine could serve the other from a remote
    cache. The tool's bytecode is compiled with a fixed hash seed; with a random one its set
    constants, and so every downstream input digest, would differ between the two. And a cold
    build runs no process but ours: pex neither resolves, downloads nor installs anything."""
    ours = (
        "Unpack ",
        "Compile the lambda-zip tool",
        "Compress ",
        "Zip ",
        "Write SBOM template",
    )
    actions = []
    for name in ("first", "second"):
        clone = clone_factory(name)
        logged = package_logging_processes(clone, "//fn:lambda", tmp_path / name)
        others = [
            p["description"]
            for p in logged
            if not p["description"].startswith((*ours, *PANTS_OWN_PROCESSES))
        ]
        assert len(others) == 1 and re.fullmatch(TOOL_INSTALL, others[0]), others
        ran = {
            p["description"]: json.loads(p["definition"])
            for p in logged
            if p["description"].startswith(ours) and p["source"] == "Ran"
        }
        kinds = {d.split(" ")[0] for d in ran}
        assert kinds == {"Unpack", "Compile", "Compress", "Zip", "Write"}, ran
        actions.append(ran)
    assert actions[0] == actions[1]


ORJSON_FUNCTIONS_BUILD = """
lambda_function(name="orjson_only", handler="only.py:handler", runtime="python3.12")
lambda_function(
    name="orjson_arm", handler="only.py:handler", runtime="python3.12", architecture="arm64"
)
"""
ORJSON_HANDLER = "import orjson\n\n\ndef handler(event, context):\n    return orjson.dumps(event)\n"
# Every download through a proxy that is not there: a wheel that must be fetched fails.
NO_NETWORK = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def entries(archive: Path, prefix: str) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as opened:
        return {
            i.filename: opened.read(i) for i in opened.infolist() if i.filename.startswith(prefix)
        }


def test_a_wheel_laid_out_once_is_not_fetched_for_another_set_of_wheels(clone_factory, tmp_path):
    """A target on other requirements than any before takes the units of wheels that some target
    laid out on this machine from the named cache (`unit_cache`): with orjson's wheel gone from
    the wheel cache and no network, the orjson-only function still packages, with the same
    orjson files; a wheel no target laid out (arm64) must be fetched, and fails naming its URL."""
    clone = clone_factory()
    clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + ORJSON_FUNCTIONS_BUILD)
    clone.write("fn/only.py", ORJSON_HANDLER)
    named = tmp_path / "named-caches"
    caches = (f"--named-caches-dir={named}", f"--local-store-dir={tmp_path / 'store'}")
    clone.pants(*caches, "package", "//fn:lambda")
    (wheel,) = (named / "lambda_rules/wheels").rglob("orjson-*x86_64*.whl")
    wheel.unlink()

    clone.pants(*caches, "package", "//fn:orjson_only", env=NO_NETWORK)
    dist = clone.root / "dist/fn"
    only = entries(dist / "orjson_only.zip", "orjson")
    assert only and only == entries(dist / "lambda.zip", "orjson")
    assert not list((named / "lambda_rules/wheels").rglob("orjson-*x86_64*.whl"))

    failed = clone.pants(*caches, "package", "//fn:orjson_arm", env=NO_NETWORK, check=False)
    assert failed.returncode != 0
    assert "fn:orjson_arm" in failed.stderr and "orjson-3.11.5-" in failed.stderr, failed.stderr
    assert "aarch64" in failed.stderr, failed.stderr
    assert not (dist / "orjson_arm.zip").exists()
