from __future__ import annotations

import pytest

from lambda_rules import manifest, staging, units


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
    assert not units.is_bundled_distribution_path(path)


@pytest.mark.parametrize(
    "path", ["pydantic/main.py", "pipx_helper/x.py", "wheelie/a.py", "orjson/orjson.abi3.so"]
)
def test_ordinary_distribution_files_are_kept(path):
    assert units.is_bundled_distribution_path(path)


def test_distributions_come_from_dist_info_directories():
    paths = [
        "pydantic-2.12.5.dist-info/METADATA",
        "pydantic-2.12.5.dist-info/RECORD",
        "orjson-3.11.5.dist-info/METADATA",
        "orjson/__init__.py",
    ]
    assert units.distributions(paths) == (
        units.Distribution("orjson", "3.11.5"),
        units.Distribution("pydantic", "2.12.5"),
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
        ("def other(): pass\nif True:\n    def handler(): pass", True),
        ("def handle(e, c): pass", False),
    ],
)
def test_handler_static_check(source, found):
    assert staging.module_may_define(source.encode(), "handler", filename="app.py") is found


def test_handler_module_this_interpreter_cannot_parse_is_accepted():
    # A python3.12 runtime compiles what the 3.9 parser refuses; only the runtime can judge it.
    assert staging.module_may_define(b"def handler(:", "handler", filename="app.py")


def test_content_addressed_name_and_manifest():
    paths = manifest.ArtifactPaths.for_output("fn/lambda.zip", "ab" * 32)
    assert paths.content_addressed == "fn/lambda.cas/lambda-abababababababab.zip"
    assert paths.content_addressed_directory == "fn/lambda.cas"
    assert paths.manifest == "fn/lambda.json"
    assert paths.sbom == "fn/lambda.cdx.json"
    assert (
        paths.relative_to_manifest(paths.content_addressed)
        == "lambda.cas/lambda-abababababababab.zip"
    )
    assert paths.relative_to_manifest(paths.archive) == "lambda.zip"
    top_level = manifest.ArtifactPaths.for_output("lambda.zip", "ab" * 32)
    assert top_level.relative_to_manifest(top_level.archive) == "lambda.zip"
    # A dot in a directory name is not an extension.
    dotted = manifest.ArtifactPaths.for_output("fn.v2/lambda", "ab" * 32)
    assert dotted.manifest == "fn.v2/lambda.json"
    assert dotted.content_addressed == "fn.v2/lambda.cas/lambda-abababababababab.zip"
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
        distributions=[units.Distribution("orjson", "3.11.5")],
        sbom="lambda.cdx.json",
        sbom_sha256="cd" * 32,
    ).to_json()
    assert '"filebase64sha256": "q6ur"' in document
    assert '"distributions": [\n    {\n      "name": "orjson",' in document


def test_size_limits():
    assert manifest.size_warnings(50 * 1024 * 1024) == []
    assert "S3" in manifest.size_warnings(50 * 1024 * 1024 + 1)[0]
    manifest.check_unzipped_size(250 * 1024 * 1024, what="//fn:lambda")
    with pytest.raises(manifest.PackageTooLargeError, match=r"//fn:lambda: .*262,144,001 bytes"):
        manifest.check_unzipped_size(250 * 1024 * 1024 + 1, what="//fn:lambda")


def test_distribution_names_are_canonical():
    paths = [
        "python_dateutil-2.9.0.post0.dist-info/METADATA",
        "PyYAML-6.0.2.dist-info/METADATA",
        "zope.interface-7.0.dist-info/METADATA",
        "typing_extensions-4.12.2.dist-info/RECORD",
    ]
    assert [d.name for d in units.distributions(paths)] == [
        "python-dateutil",
        "pyyaml",
        "typing-extensions",
        "zope-interface",
    ]


@pytest.mark.parametrize(
    "source",
    [
        "try:\n    from fast import handler\nexcept ImportError:\n    pass",
        "try:\n    import fast\nexcept ImportError:\n    def handler(e, c): pass",
        "try:\n    import fast\nexcept ImportError:\n    pass\nelse:\n    handler = fast.handler",
        "try:\n    pass\nfinally:\n    def handler(e, c): pass",
        "if X:\n    pass\nelse:\n    def handler(e, c): pass",
        "if TYPE_CHECKING:\n    pass\nelif X:\n    if Y:\n        handler = make()",
        "with lock:\n    def handler(e, c): pass",
        "for handler in candidates:\n    break",
        "while True:\n    handler = make()\n    break",
        "handler, other = make()",
        "(a, (handler, b)) = make()",
        "[a, *handler] = make()",
        "for a, (handler, b) in items: pass",
        "(handler := make())",
        "[y for x in xs if (handler := x)]",
        "@register(handler := make())\ndef other(): pass",
        "handler: Handler = make()",
        "handler += suffix",
        "del handler",
        "import handler.impl",
        "from impl import *",
        "def setup():\n    global handler\n    handler = make()\nsetup()",
        "def __getattr__(name):\n    return make(name)",
        "globals()['handler'] = make()",
        "globals().update(handlers)",
        "vars()['handler'] = make()",
        "import sys\nsetattr(sys.modules[__name__], 'handler', make())",
        "import sys\nsys.modules[__name__].handler = make()",
        "from sys import modules",
        "exec('def handler(e, c): pass')",
        "import builtins\nbuiltins.handler = make()",
        "try:\n    pass\nexcept Exception as handler:\n    pass",
        # Syntax newer than the 3.9 parser Pants runs on: the runtime may accept it.
        "match event:\n    case {'handler': handler}:\n        pass",
        "type Handler = int\ndef handler(e, c): pass",
        "def handler[T](e: T, c): pass",
        "source\0with a null byte",
        "x = " + "-" * 100_000 + "1",
    ],
)
def test_handler_defined_on_any_path_or_dynamically_is_accepted(source):
    assert staging.module_may_define(source.encode(), "handler", filename="app.py")


@pytest.mark.parametrize(
    "source",
    [
        "def other():\n    handler = make()",
        "class App:\n    def handler(self, e, c): pass",
        "[handler for handler in xs]",
        "f = lambda handler: handler",
        "def other(handler=1): pass",
        "import handlers\nfrom impl import handle as other",
        "def other():\n    global handle\n    handle = make()",
        "handler_v2 = make()\nif X:\n    Handler = make()",
    ],
)
def test_handler_certainly_missing_is_refused(source):
    assert not staging.module_may_define(source.encode(), "handler", filename="app.py")
