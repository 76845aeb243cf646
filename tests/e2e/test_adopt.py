"""Another repository adopts the plugin: a wheel built from this one, installed by Pants from
`[python-repos].find_links`, with no resolve or lockfile for the zipper of its own."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT, Clone, file_sha256_hex
from tests.e2e.test_package import EXAMPLE_GOLDEN_SHA256

pytestmark = pytest.mark.e2e

ADOPTER_PANTS_TOML = """
[GLOBAL]
pants_version = "2.17.1"
plugins = ["lambda-rules==0.1.0"]
backend_packages = ["pants.backend.python", "lambda_rules"]

[python-repos]
find_links = ["file://{wheels}"]

[source]
root_patterns = ["/functions/*"]

[python]
enable_resolves = true
# Wider than the lockfile, which is made for python3.12 only: the runtime decides.
interpreter_constraints = ["CPython>=3.9,<3.15"]

[python.resolves]
python-default = "python.lock"

[python-infer]
use_rust_parser = true

[subprocess-environment]
env_vars = ["PIP_CONFIG_FILE=/dev/null"]
"""

ADOPTER_FUNCTION_BUILD = """
python_sources()

lambda_function(name="lambda", handler="app.py:handler", runtime="python3.12")
"""


def lockfile_for_python312_only() -> str:
    """This repository's lockfile, declared valid for CPython 3.12 alone (it is: it holds wheels
    for 3.9 to 3.14), as a lockfile generated for one Lambda version would be."""
    text = (REPO_ROOT / "3rdparty/python/default.lock").read_text()
    narrowed = text.replace('"CPython<3.15,>=3.9"', '"CPython==3.12.*"')
    assert narrowed != text
    return narrowed


def test_new_repository_installs_the_plugin_wheel_and_packages_the_same_bytes(
    plugin_wheel, tmp_path
):
    root = tmp_path / "adopter"
    root.mkdir()
    adopter = Clone(root)
    shutil.copy2(REPO_ROOT / "pants", root / "pants")
    adopter.write("pants.toml", ADOPTER_PANTS_TOML.format(wheels=plugin_wheel.parent))
    adopter.write("requirements.txt", (REPO_ROOT / "3rdparty/python/requirements.txt").read_text())
    adopter.write("BUILD", 'python_requirements(name="reqs")\n')
    adopter.write("python.lock", lockfile_for_python312_only())
    adopter.write("functions/orders/BUILD", ADOPTER_FUNCTION_BUILD)
    adopter.write("functions/orders/app.py", (REPO_ROOT / "fn/app.py").read_text())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)

    try:
        adopter.pants("package", "functions/orders:lambda")
    finally:
        adopter.kill_pantsd()

    archive = root / "dist/functions.orders/lambda.zip"
    assert file_sha256_hex(archive) == EXAMPLE_GOLDEN_SHA256
    assert not list(root.glob("**/lambda-zip.lock")), "the adopter declares no zipper lockfile"
