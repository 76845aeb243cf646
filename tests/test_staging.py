from __future__ import annotations

import pytest

from lambda_rules import manifest, staging


@pytest.mark.parametrize(
    "path",
    [
        "pip/__init__.py",
        "pip-24.0.dist-info/RECORD",
        "setuptools/dist.py",
        "setuptools-70.0.0.dist-info/METADATA",
        "pkg_resources/__init__.py",
        "_distutils_hack/__init__.py",
        "distutils-precedence.pth",
        "wheel/cli.py",
        "bin/normalizer",
        "orjson/__pycache__/x.cpython-312.pyc",
        "stray.pyc",
    ],
)
def test_build_tooling_scripts_and_bytecode_are_left_out(path):
    assert not staging.is_bundled_distribution_path(path)


@pytest.mark.parametrize(
    "path", ["pydantic/main.py", "pipx_helper/x.py", "wheelie/a.py", "orjson/orjson.abi3.so"]
)
def test_ordinary_distribution_files_are_kept(path):
    assert staging.is_bundled_distribution_path(path)


def test_distributions_come_from_dist_info_directories():
    paths = [
        "pydantic-2.12.5.dist-info/METADATA",
        "pydantic-2.12.5.dist-info/RECORD",
        "orjson-3.11.5.dist-info/METADATA",
        "orjson/__init__.py",
    ]
    assert staging.distributions(paths) == (
        staging.Distribution("orjson", "3.11.5"),
        staging.Distribution("pydantic", "2.12.5"),
    )


def test_collisions_and_case_collisions():
    assert staging.path_collisions(["a.py", "six.py"], ["six.py", "b.py"]) == ["six.py"]
    assert staging.case_collisions(["A.py", "a.py", "b.py"]) == [("A.py", "a.py")]


@pytest.mark.parametrize(
    "source, found",
    [
        ("def handler(e, c): pass", True),
        ("async def handler(e, c): pass", True),
        ("from impl import run as handler", True),
        ("handler = make()", True),
        ("class handler: pass", True),
        ("def other(): pass\nif True:\n    def handler(): pass", False),
        ("def handle(e, c): pass", False),
    ],
)
def test_handler_static_check(source, found):
    assert staging.module_defines(source.encode(), "handler", filename="app.py") is found


def test_handler_syntax_error_names_the_file():
    with pytest.raises(staging.StagingError, match=r"app\.py is not valid Python"):
        staging.module_defines(b"def handler(:", "handler", filename="app.py")


def test_content_addressed_name_and_manifest():
    assert manifest.content_addressed_name("fn/lambda.zip", "ab" * 32) == "fn/lambda-abababababababab.zip"
    assert manifest.manifest_name("fn/lambda.zip") == "fn/lambda.json"
    # A dot in a directory name is not an extension.
    assert manifest.manifest_name("fn.v2/lambda") == "fn.v2/lambda.json"
    assert manifest.content_addressed_name("fn.v2/lambda", "ab" * 32) == "fn.v2/lambda-abababababababab.zip"
    document = manifest.LambdaManifest(
        artifact="lambda.zip",
        content_addressed_artifact="lambda-abababababababab.zip",
        sha256_hex="ab" * 32,
        sha256_base64="q6ur",
        zipped_size=10,
        unzipped_size=20,
        entry_count=2,
        runtime="python3.12",
        architecture="arm64",
        handler="app.handler",
        distributions=[staging.Distribution("orjson", "3.11.5")],
    ).to_json()
    assert '"filebase64sha256": "q6ur"' in document
    assert '"distributions": [\n    {\n      "name": "orjson",' in document


def test_size_limits():
    assert manifest.size_warnings(50 * 1024 * 1024) == []
    assert "S3" in manifest.size_warnings(50 * 1024 * 1024 + 1)[0]
    manifest.check_unzipped_size(250 * 1024 * 1024, what="//fn:lambda")
    with pytest.raises(manifest.PackageTooLargeError, match=r"//fn:lambda: .*262,144,001 bytes"):
        manifest.check_unzipped_size(250 * 1024 * 1024 + 1, what="//fn:lambda")
