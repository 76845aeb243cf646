"""Every bad input: a clear error naming what is wrong, a non-zero exit, and nothing in dist/."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import Clone

pytestmark = pytest.mark.e2e

BAD_BUILD = """
python_sources(name="src", sources=["app.py", "typing_extensions.py"])

lambda_function(name="missing-file", handler="missing.py:handler", runtime="python3.12")
lambda_function(name="missing-module", handler="nowhere.app:handler", runtime="python3.12")
lambda_function(name="missing-function", handler="app.py:no_such_handler", runtime="python3.12")
lambda_function(
    name="collision",
    handler="app.py:handler",
    runtime="python3.12",
    dependencies=[":src", "3rdparty/python:reqs#pydantic"],
)
# CPython 3.14 is not installed here: bytecode for that runtime cannot be compiled.
lambda_function(
    name="pyc-no-interpreter", handler="app.py:handler", runtime="python3.14", compile_bytecode=True
)
lambda_function(
    name="same-path-a", handler="app.py:handler", runtime="python3.12", output_path="shared/fn.zip"
)
lambda_function(
    name="same-path-b", handler="app.py:handler", runtime="python3.12", output_path="shared/fn.zip"
)
"""

# Targets of the e2e-fixtures resolve need first-party sources of that resolve.
BAD_FIXTURES_BUILD = """
python_sources(name="src", resolve="e2e-fixtures")
lambda_function(
    name="no-wheel",
    handler="app.py:handler",
    runtime="python3.13",
    resolve="e2e-fixtures",
    dependencies=["tests/e2e/fixtures:reqs#numpy"],
)
lambda_function(
    name="sdist-only",
    handler="app.py:handler",
    runtime="python3.12",
    architecture="arm64",
    resolve="e2e-fixtures",
    dependencies=["tests/e2e/fixtures:reqs#docopt"],
)
"""

# A field value Pants rejects makes every BUILD file unusable (dependency inference reads them
# all), so these exist only while their own test runs.
BAD_RUNTIME_BUILD = """
lambda_function(name="lambda", handler="app.py:handler", runtime="python3.8")
"""
BAD_ARCH_BUILD = """
lambda_function(name="lambda", handler="app.py:handler", runtime="python3.12", architecture="sparc")
"""

CASE_BUILD = """
python_sources(name="src")
resources(name="data", sources=["data/*.txt"])
lambda_function(
    name="lambda", handler="app.py:handler", runtime="python3.12", dependencies=[":data"]
)
"""

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    from tests.conftest import make_clone

    clone = make_clone(tmp_path_factory.mktemp("bad") / "repo")
    toml = (clone.root / "pants.toml").read_text()
    clone.write(
        "pants.toml", toml.replace('["/", "/fn"]', '["/", "/fn", "/bad", "/bad_fixtures", "/case"]')
    )
    clone.write("bad/BUILD", BAD_BUILD)
    clone.write("bad/app.py", HANDLER)
    clone.write("bad/typing_extensions.py", "# shadows the distribution\n")
    clone.write("bad_fixtures/BUILD", BAD_FIXTURES_BUILD)
    clone.write("bad_fixtures/app.py", HANDLER)
    clone.write("case/BUILD", CASE_BUILD)
    clone.write("case/app.py", HANDLER)
    clone.write("case/data/Readme.txt", "a\n")
    clone.write("case/data/README.txt", "b\n")
    yield clone
    clone.kill_pantsd()


def failing_package(clone: Clone, target: str) -> str:
    result = clone.pants("package", target, pantsd=True, check=False)
    assert result.returncode != 0, result.stderr
    assert clone.dist_files() == [], "a failed build must leave nothing in dist/"
    return result.stderr


@pytest.mark.parametrize(
    "target, expected",
    [
        ("bad:missing-file", ["bad:missing-file", "handler", "bad/missing.py"]),
        (
            "bad:missing-module",
            ["bad:missing-module", "`nowhere.app:handler`", "nowhere/app.py", "dependencies"],
        ),
        (
            "bad:missing-function",
            ["bad:missing-function", "`no_such_handler`", "`app.py` defines no top-level"],
        ),
        (
            "bad_fixtures:no-wheel",
            ["bad_fixtures:no-wheel", "numpy 1.26.4", "no wheel for python3.13 on x86_64"],
        ),
        (
            "bad_fixtures:sdist-only",
            [
                "bad_fixtures:sdist-only",
                "docopt 0.6.2",
                "no wheel for python3.12 on arm64",
                "docopt-0.6.2.tar.gz",
                "never built",
            ],
        ),
        ("bad:collision", ["bad:collision", "typing_extensions.py", "first-party", "distribution"]),
        (
            "bad:pyc-no-interpreter",
            [
                "bad:pyc-no-interpreter",
                "CPython 3.14",
                "pyenv install 3.14",
                "compile_bytecode=False",
            ],
        ),
        (
            "bad:same-path-a",
            ["bad:same-path-a and bad:same-path-b", "`shared/fn.zip`", "own `output_path`"],
        ),
    ],
)
def test_bad_input_fails_clearly_and_leaves_nothing(clone, target, expected):
    stderr = failing_package(clone, target)
    for fragment in expected:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"


@pytest.mark.parametrize(
    "build, expected",
    [
        (BAD_RUNTIME_BUILD, ["invalid:lambda", "'runtime'", "python3.8", "python3.12"]),
        (BAD_ARCH_BUILD, ["invalid:lambda", "'architecture'", "sparc", "arm64"]),
    ],
)
def test_invalid_field_values_fail_clearly_and_leave_nothing(clone, build, expected):
    clone.write("invalid/BUILD", build)
    clone.write("invalid/app.py", HANDLER)
    try:
        stderr = failing_package(clone, "invalid:lambda")
    finally:
        shutil.rmtree(clone.root / "invalid")
    for fragment in expected:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"


def test_a_tool_resolve_without_the_zippers_requirements_fails_clearly(clone):
    """`[lambda-zip].install_from_resolve` naming a resolve without deflate and installer (the
    example's): the tool cannot run, and the error says what is missing and where to add it."""
    result = clone.pants(
        "--lambda-zip-install-from-resolve=python-default",
        "package",
        "fn:lambda",
        pantsd=False,
        check=False,
    )
    assert result.returncode != 0, result.stderr
    assert "the lambda-zip tool's requirements lack deflate, installer" in result.stderr
    assert "install_from_resolve" in result.stderr
    assert clone.dist_files() == [], "a failed build must leave nothing in dist/"


def test_paths_differing_only_by_case_warn_but_build(clone):
    result = clone.pants("package", "case:lambda", pantsd=True)
    assert "data/README.txt, data/Readme.txt differ only by case" in result.stderr
    assert "case/lambda.zip" in clone.dist_files()
    for path in clone.root.joinpath("dist").rglob("*"):
        if path.is_file():
            path.unlink()
