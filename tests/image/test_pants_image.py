"""`lambda_image` under Pants: the same layout, manifest and SBOM as `lambda-zip image` from any
clone, `pants run` from the image's own layers, a function over 250 MB, and bases that cannot
serve."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lambda_rules import facts
from tests.conftest import REPO_ROOT, Clone
from tests.image.base_image import write_base
from tests.locks.test_any_lock import lambda_zip

pytestmark = pytest.mark.e2e

IMAGE_BUILD = '\nlambda_image(name="image", handler="app.py:handler", runtime="python3.12")\n'
OUTPUTS = ("image.json", "image.cdx.json")
SKLEARN = REPO_ROOT / "tests/image/fixtures"
EVENT = {"order_id": "A-1", "quantity": 3, "unit_price_cents": 250}


def pinned(layout: Path) -> str:
    """The base's layout with its one manifest's digest: how `[lambda-base-images]` names it."""
    (manifest,) = json.loads((layout / "index.json").read_text())["manifests"]
    return f"{layout}@{manifest['digest']}"


def with_base(clone: Clone, reference: str, arm64: str | None = None) -> None:
    arm64_line = "" if arm64 is None else f'"python3.12/arm64" = "{arm64}"\n'
    with open(clone.root / "pants.toml", "a") as config:
        config.write(
            f'\n[lambda-base-images.layouts]\n"python3.12/x86_64" = "{reference}"\n{arm64_line}'
        )


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# A second image with every input a function has: bytecode, an exclusion, arm64 (on its base).
OPTIONS_BUILD = """
lambda_image(
    name="image_pyc", handler="app.py:handler", runtime="python3.12", architecture="arm64",
    compile_bytecode=True, exclude_distributions=["orjson"],
)
"""
OPTIONS_FLAGS = (
    "--architecture", "arm64", "--compile-bytecode", "--exclude-distribution", "orjson"
)  # fmt: skip


def test_two_clones_and_lambda_zip_write_the_same_image(clone_factory, tmp_path):
    base = pinned(write_base(tmp_path / "base"))
    arm64 = pinned(write_base(tmp_path / "arm64", ("arm64",)))
    first, second = clone_factory("image-a"), clone_factory("image-b-deeper", reverse_order=True)
    for clone in (first, second):
        text = (clone.root / "fn/BUILD").read_text()
        clone.write("fn/BUILD", text + IMAGE_BUILD + OPTIONS_BUILD)
        with_base(clone, base, arm64)
    os.utime(second.root / "fn/app.py", (1_000_000_000, 1_000_000_000))
    first.pants("package", "//fn:image", "//fn:image_pyc")
    second.pants("package", "//fn:image", "//fn:image_pyc", umask=0o077)
    for name, flags, layout in (("image", (), base), ("image_pyc", OPTIONS_FLAGS, arm64)):
        cli = lambda_zip(
            "image", first.root / "fn/app.py", "--source-root", first.root / "fn",
            "--handler", "app.handler", "--runtime", "python3.12", *flags,
            "-r", first.root / "3rdparty/python/requirements.txt",
            "--lockfile", first.root / "3rdparty/python/default.lock", "--name", f"fn:{name}",
            "--base", layout, "-o", tmp_path / "cli" / name, "--cache-dir", tmp_path / "cache",
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
    built = [files_of(root) for root in (first.root / "dist/fn", second.root / "dist/fn")]
    assert built[0] == built[1]
    assert files_of(tmp_path / "cli") == built[0]
    document = json.loads(built[0]["image.json"])
    assert document["kind"] == "image" and len(document["layers"]) == 2
    options = json.loads(built[0]["image_pyc.json"])
    assert options["architecture"] == "arm64" and options["bytecode_compiled_by"]
    assert "orjson" not in {d["name"] for d in options["distributions"]}


def test_pants_runs_and_verifies_the_image(clone_factory, tmp_path):
    clone = clone_factory("image-run")
    clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + IMAGE_BUILD)
    with_base(clone, pinned(write_base(tmp_path / "base")))
    clone.write("event.json", json.dumps(EVENT))
    result = clone.pants("run", "//fn:image", "--", "event.json")
    response = json.loads(result.stdout)
    assert json.loads(response["body"]) == {"order_id": "A-1", "total_cents": 750}, response
    # `[lambda-zip].verify` checks an image as it checks a zip, in a process never cached.
    verified = clone.pants("--lambda-zip-verify", "package", "//fn:image")
    assert "fn:image: verified dist/fn/image" in verified.stderr, verified.stderr


def _sklearn_project(clone: Clone) -> None:
    """A resolve of numpy, pandas, scipy and scikit-learn, and a function on it as a zip and as
    an image."""
    config = clone.root / "pants.toml"
    text = config.read_text()
    for old, new in (
        ("root_patterns = [", 'root_patterns = ["/sk", '),
        ("[python.resolves]\n", '[python.resolves]\nsklearn = "sk/sklearn.lock"\n'),
        (
            "[python.resolves_to_interpreter_constraints]\n",
            '[python.resolves_to_interpreter_constraints]\nsklearn = ["CPython==3.12.*"]\n',
        ),
    ):
        text = text.replace(old, new)
    config.write_text(text)
    (clone.root / "sk").mkdir()
    for name in ("app.py", "requirements.txt", "sklearn.lock"):
        shutil.copyfile(SKLEARN / name, clone.root / "sk" / name)
    clone.write(
        "sk/BUILD",
        'python_requirements(name="reqs", resolve="sklearn")\n'
        'python_sources(name="src", resolve="sklearn")\n'
        'lambda_function(name="zip", handler="app.py:handler", runtime="python3.12", '
        'resolve="sklearn")\n'
        'lambda_image(name="image", handler="app.py:handler", runtime="python3.12", '
        'resolve="sklearn")\n',
    )


def test_a_function_over_250_mb_runs_as_an_image_and_is_refused_as_a_zip(clone_factory, tmp_path):
    clone = clone_factory("image-sklearn")
    _sklearn_project(clone)
    with_base(clone, pinned(write_base(tmp_path / "base")))
    refused = clone.pants("package", "//sk:zip", check=False)
    assert refused.returncode != 0
    assert "sk:zip: the unzipped package is" in refused.stderr
    assert "a `lambda_image` target" in refused.stderr
    assert not (clone.root / "dist/sk/zip.zip").exists()
    clone.write("event.json", '{"x": 2.5}')
    result = clone.pants("run", "//sk:image", "--", "event.json")
    assert json.loads(result.stdout) == {"x": 2.5, "class": 1}
    clone.pants("package", "//sk:image")
    document = json.loads((clone.root / "dist/sk/image.json").read_text())
    unpacked = sum(layer["unpacked_size"] for layer in document["layers"])
    assert unpacked > facts.UNZIPPED_LIMIT_BYTES
    holds = [layer["holds"] for layer in document["layers"]]
    # Each large distribution in a layer of its own (shared by every function that holds it),
    # the small ones together, the code on top.
    for name in ("numpy", "pandas", "scipy", "scikit-learn"):
        assert sum(h.startswith(f"distributions {name} ") for h in holds) == 1, holds
    assert holds[-1] == "sk:image code"


def test_a_base_that_cannot_serve_fails_the_target_and_writes_nothing(clone_factory, tmp_path):
    clone = clone_factory("image-bad-base")
    clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + IMAGE_BUILD)
    amd64 = write_base(tmp_path / "amd64")
    cases = {
        None: "no base image for python3.12/x86_64: set `[lambda-base-images].layouts`",
        f"{amd64}@sha256:{'0' * 64}": "not the pinned sha256:" + "0" * 64,
        pinned(write_base(tmp_path / "arm64", ("arm64",))): "not linux/amd64",
        str(amd64): "pin it by digest",
    }
    for reference, expected in cases.items():
        flags = (
            []
            if reference is None
            else [f"--lambda-base-images-layouts={{'python3.12/x86_64': '{reference}'}}"]
        )
        result = clone.pants(*flags, "package", "//fn:image", check=False, pantsd=True)
        assert result.returncode != 0
        assert expected in result.stderr and "fn:image" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not (clone.root / "dist/fn").exists()
