"""The parity matrix: each case built by `pants package` and by `lambda-zip package` gives an
identical zip, manifest and SBOM.

- a layer with distributions and first-party code (`deps`);
- a function deployed with that layer and `compile_bytecode`, sharing a first-party file with it;
- a function whose first-party file has the same path and content as a file of one of the
  layer's distributions (typing_extensions.py);
- `exclude_distributions`; arm64; python3.9 (Amazon Linux 2); python3.14;
- a layer with `compile_bytecode`.
"""

from __future__ import annotations

import zipfile

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.test_package_cli import OUTPUTS, run

pytestmark = pytest.mark.e2e

LOCK = "3rdparty/python/default.lock"
REQUIREMENTS = "3rdparty/python/requirements.txt"
PYDANTIC = "pydantic==2.12.5"

BUILD = """
python_sources(name="src", sources=["app.py"])
python_source(name="shared", source="shared.py")
python_source(name="te", source="typing_extensions.py")

lambda_function(name="lambda", handler="app.py:handler", runtime="python3.12")
lambda_layer(
    name="deps", runtime="python3.12",
    dependencies=["3rdparty/python:reqs#pydantic", ":shared"],
)
lambda_layer(
    name="deps_pyc", runtime="python3.12", compile_bytecode=True,
    dependencies=["3rdparty/python:reqs#pydantic", ":shared"],
)
lambda_function(
    name="layered", handler="app.py:handler", runtime="python3.12", layers=[":deps"],
    compile_bytecode=True, dependencies=[":shared"],
)
lambda_function(
    name="same_as_layer_file", handler="app.py:handler", runtime="python3.12",
    layers=[":deps"], dependencies=[":te"],
)
lambda_function(
    name="excluded", handler="app.py:handler", runtime="python3.12",
    exclude_distributions=["orjson"],
)
lambda_function(name="arm", handler="app.py:handler", runtime="python3.12", architecture="arm64")
lambda_function(name="py39", handler="app.py:handler", runtime="python3.9")
lambda_function(name="py314", handler="app.py:handler", runtime="python3.14")
"""

# Each case's `lambda-zip package` flags beside `--name fn:<name> -o cli/fn/<name>.zip`.
FUNCTION = ["--handler", "app.handler", "-r", REQUIREMENTS, "fn/app.py"]
CASES = {
    "deps": ["--kind", "layer", "--requirement", PYDANTIC, "fn/shared.py"],
    "deps_pyc": ["--kind", "layer", "--requirement", PYDANTIC, "--compile-bytecode",
                 "fn/shared.py"],
    "layered": [*FUNCTION, "fn/shared.py", "--compile-bytecode", "--layer",
                "fn:deps=cli/fn/deps.zip"],
    "same_as_layer_file": [*FUNCTION, "fn/typing_extensions.py", "--layer",
                           "fn:deps=cli/fn/deps.zip"],
    "excluded": [*FUNCTION, "--exclude-distribution", "orjson"],
    "arm": [*FUNCTION, "--architecture", "arm64"],
    "py39": [*FUNCTION, "--runtime", "python3.9"],
    "py314": [*FUNCTION, "--runtime", "python3.14"],
}  # fmt: skip


def typing_extensions_source() -> bytes:
    """typing_extensions.py exactly as the locked wheel ships it."""
    from lambda_rules import fetch, lock_formats, locks
    from lambda_rules.platforms import lambda_platform

    (wheel,) = [
        w
        for w in locks.select_wheels(
            lock_formats.read_lock(REPO_ROOT / LOCK),
            [PYDANTIC],
            lambda_platform("python3.12", "x86_64"),
            what="parity",
        )
        if w.name == "typing-extensions"
    ]
    cache = fetch.WheelCache(REPO_ROOT / ".cache/test-wheels")
    with zipfile.ZipFile(cache.fetch(fetch.Wanted(wheel.url, wheel.sha256))) as opened:
        return opened.read("typing_extensions.py")


def test_pants_and_lambda_zip_give_the_same_bytes_for_every_case(clone_factory, cli):
    clone = clone_factory("parity")
    clone.write("fn/BUILD", BUILD)
    clone.write("fn/shared.py", "GREETING = 'shared by the layer and a function'\n")
    (clone.root / "fn/typing_extensions.py").write_bytes(typing_extensions_source())
    clone.pants("package", *(f"//fn:{name}" for name in CASES))
    lambda_zip = cli(9)
    for name, flags in CASES.items():
        runtime = [] if "--runtime" in flags else ["--runtime", "python3.12"]
        run([lambda_zip, "package", *runtime, *flags, "--lockfile", LOCK, "--source-root", "fn",
             "--name", f"fn:{name}", "-o", f"cli/fn/{name}.zip",
             "--cache-dir", clone.root / "cli-cache"], clone.root)  # fmt: skip
    differing = [
        pattern.format(name)
        for name in CASES
        for pattern in OUTPUTS
        if (clone.root / "cli/fn" / pattern.format(name)).read_bytes()
        != (clone.root / "dist/fn" / pattern.format(name)).read_bytes()
    ]
    assert differing == []
    with zipfile.ZipFile(clone.root / "dist/fn/same_as_layer_file.zip") as opened:
        names = opened.namelist()
    # The first-party copy is the function's own (the layer's file is a distribution's, not
    # first-party), and typing-extensions itself comes from the layer.
    assert "typing_extensions.py" in names
    assert not any(n.startswith("typing_extensions-") for n in names)
    with zipfile.ZipFile(clone.root / "dist/fn/layered.zip") as opened:
        assert "shared.py" not in opened.namelist()  # the layer holds it, same content
