"""Rule-level tests with Pants' RuleRunner: target validation, handler checks and staging.

Staging chooses from the real lockfile and fetches the real wheels; the tool's environment is
built by the real pex (the PEX that ./pants bootstraps).
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pytest
from pants.backend.python import target_types_rules
from pants.backend.python.target_types import (
    PythonRequirementTarget,
    PythonSourcesGeneratorTarget,
)
from pants.backend.python.util_rules.faas import (
    InferPythonFaaSHandlerDependency,
    PythonFaaSHandlerInferenceFieldSet,
)
from pants.core.target_types import ResourcesGeneratorTarget
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents, DigestEntries
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import InferredDependencies, InvalidFieldException
from pants.testutil.rule_runner import QueryRule, RuleRunner

from lambda_rules.plugin import package
from lambda_rules.plugin.field_sets import LambdaFunctionFieldSet
from lambda_rules.plugin.steps.stage import (
    UNIT_ARCHIVE,
    DistributionUnit,
    StagedLambda,
    StageLambdaRequest,
)
from lambda_rules.plugin.target_types import (
    LambdaFunctionDependencies,
    LambdaFunctionTarget,
    LambdaMemorySizeField,
    LambdaTimeoutField,
)
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def pex_cli_options() -> list[str]:
    bootstrap = Path(
        subprocess.run(
            ["./pants", "--print-bootstrap-dir"],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    env = dict(
        line.split("=", 1) for line in (bootstrap / "env").read_text().splitlines() if "=" in line
    )
    pex = next(bootstrap.glob("pex-*.pex"))
    version = "v" + pex.stem.split("-", 1)[1]
    known = f"{version}|linux_x86_64|{env['PEX_SHA256']}|{env['PEX_SIZE']}"
    options = [
        f"--pex-cli-version={version}",
        f"--pex-cli-url-template=file://{pex}",
        f"--pex-cli-known-versions=['{known}']",
        "--subprocess-environment-env-vars=['PIP_CONFIG_FILE=/dev/null']",
    ]
    if env.get("CA_CERTS"):
        options.append(f"--ca-certs-path={env['CA_CERTS']}")
    return options


@pytest.fixture
def rule_runner(pex_cli_options) -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *package.rules(),
            *target_types_rules.rules(),
            QueryRule(StagedLambda, [StageLambdaRequest]),
            QueryRule(InferredDependencies, [InferPythonFaaSHandlerDependency]),
            QueryRule(DigestEntries, [Digest]),
            QueryRule(DigestContents, [Digest]),
        ],
        target_types=[
            LambdaFunctionTarget,
            PythonSourcesGeneratorTarget,
            PythonRequirementTarget,
            ResourcesGeneratorTarget,
        ],
    )
    lockfile = (REPO_ROOT / "3rdparty/python/default.lock").read_text()
    runner.write_files({"3rdparty/default.lock": lockfile})
    runner.set_options(
        [
            *pex_cli_options,
            "--source-root-patterns=['/', '/fn']",
            "--python-enable-resolves",
            "--python-interpreter-constraints=['CPython>=3.9,<3.15']",
            "--python-resolves={'python-default': '3rdparty/default.lock'}",
        ],
        env_inherit={"PATH", "PYENV_ROOT", "HOME"},
    )
    return runner


def field_set(runner: RuleRunner, address: Address) -> LambdaFunctionFieldSet:
    return LambdaFunctionFieldSet.create(runner.get_target(address))


def unit_paths(runner: RuleRunner, unit: DistributionUnit) -> set[str]:
    """First-party code's files, or the names in a distribution's stored archive, handed on in
    pieces (whose metadata files are some of them)."""
    if unit.first_party:
        return {entry.path for entry in runner.request(DigestEntries, [unit.digest])}
    contents = runner.request(DigestContents, [unit.digest])
    assert [piece.path.rpartition("/")[0] for piece in contents] == [UNIT_ARCHIVE] * len(contents)
    archive = b"".join(piece.content for piece in sorted(contents, key=lambda piece: piece.path))
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = {info.filename for info in opened.infolist()}
        assert {info.compress_type for info in opened.infolist()} == {zipfile.ZIP_STORED}
    metadata = {entry.path for entry in runner.request(DigestEntries, [unit.metadata])}
    assert metadata and metadata <= names
    return names


def stage(runner: RuleRunner, address: Address) -> tuple[StagedLambda, set[str]]:
    fs = field_set(runner, address)
    request = StageLambdaRequest(fs.address, fs.platform, (), handler=fs.handler)
    staged = runner.request(StagedLambda, [request])
    paths = [unit_paths(runner, unit) for unit in staged.all_units]
    # Units never overlap: merging their parts must never meet a path twice.
    assert sum(map(len, paths)) == len(set().union(*paths))
    return staged, set().union(*paths)


HANDLER = "import orjson\n\ndef handler(event, context):\n    return orjson.dumps(event)\n"
BUILD = """
python_requirement(name="orjson", requirements=["orjson==3.11.5"])
python_sources(name="src")
resources(name="data", sources=["data/*.json"])
lambda_function(
    name="lambda", handler="app.py:handler", runtime="python3.11", dependencies=[":data"]
)
"""


def test_unknown_runtime_and_architecture_are_rejected_naming_the_target(rule_runner):
    rule_runner.write_files(
        {
            "a/BUILD": 'lambda_function(name="f", handler="app.py:h", runtime="python2.7")',
            "b/BUILD": 'lambda_function(name="f", handler="app.py:h", runtime="python3.12", '
            'architecture="ppc")',
        }
    )
    with pytest.raises(
        ExecutionError, match=r"'runtime' field in target a:f must be one of .*python3\.14"
    ):
        rule_runner.get_target(Address("a", target_name="f"))
    with pytest.raises(
        ExecutionError,
        match=r"'architecture' field in target b:f must be one of \['arm64', 'x86_64'\]",
    ):
        rule_runner.get_target(Address("b", target_name="f"))


def test_runtime_is_required_and_architecture_defaults_to_x86_64(rule_runner):
    rule_runner.write_files(
        {
            "a/BUILD": 'lambda_function(name="f", handler="app.py:h")',
            "b/BUILD": 'lambda_function(name="f", handler="app.py:h", runtime="python3.13")',
        }
    )
    with pytest.raises(ExecutionError, match=r"'runtime' field in target a:f must be defined"):
        rule_runner.get_target(Address("a", target_name="f"))
    fs = field_set(rule_runner, Address("b", target_name="f"))
    assert fs.platform.machine == "x86_64" and fs.platform.runtime.glibc == (2, 34)


def test_handler_file_is_inferred_as_a_dependency(rule_runner):
    rule_runner.write_files({"fn/BUILD": BUILD, "fn/app.py": HANDLER, "fn/data/x.json": "{}"})
    target = rule_runner.get_target(Address("fn", target_name="lambda"))
    inferred = rule_runner.request(
        InferredDependencies,
        [InferPythonFaaSHandlerDependency(PythonFaaSHandlerInferenceFieldSet.create(target))],
    )
    assert Address("fn", relative_file_path="app.py", target_name="src") in inferred.include
    assert target[LambdaFunctionDependencies].value == (":data",)


def test_staging_holds_sources_resources_and_flat_wheels_only(rule_runner):
    rule_runner.write_files(
        {
            "fn/BUILD": BUILD,
            "fn/app.py": HANDLER,
            "fn/data/config.json": '{"a": 1}',
            "fn/unrelated.py": "import os\n",
            "other/BUILD": "python_sources()",
            "other/x.py": "",
        }
    )
    staged, paths = stage(rule_runner, Address("fn", target_name="lambda"))
    assert staged.handler == "app.handler"
    assert [(d.name, d.version) for d in staged.distributions] == [("orjson", "3.11.5")]
    (orjson,) = staged.units
    orjson_paths = unit_paths(rule_runner, orjson)
    assert orjson_paths and all(p.startswith("orjson") for p in orjson_paths)
    assert {"app.py", "data/config.json", "orjson/__init__.py"} <= paths
    assert any(p.startswith("orjson/orjson.cpython-311-x86_64-linux-gnu") for p in paths)
    assert "unrelated.py" not in paths and "x.py" not in paths and "other/x.py" not in paths
    assert not [p for p in paths if p.startswith(("bin/", "pip", "setuptools", "fn/"))]


def test_staging_rejects_a_module_that_lacks_the_handler_function(rule_runner):
    rule_runner.write_files(
        {
            "fn/BUILD": BUILD,
            "fn/app.py": "def other(event, context):\n    pass\n",
            "fn/data/x.json": "",
        }
    )
    with pytest.raises(
        ExecutionError, match=r"fn:lambda: the handler `app.py:handler` names function `handler`"
    ):
        stage(rule_runner, Address("fn", target_name="lambda"))


def test_staging_rejects_source_and_distribution_writing_the_same_path(rule_runner):
    rule_runner.write_files(
        {
            "fn/BUILD": BUILD.replace(
                'dependencies=[":data"]', 'dependencies=[":data", ":orjson", "fn/orjson"]'
            ),
            "fn/app.py": HANDLER,
            "fn/data/x.json": "",
            "fn/orjson/BUILD": "python_sources()",
            "fn/orjson/__init__.py": "# shadows the real orjson\n",
        }
    )
    with pytest.raises(
        ExecutionError,
        match=r"fn:lambda: these paths come both from first-party sources and from a third-party "
        r"distribution.*orjson/__init__\.py",
    ):
        stage(rule_runner, Address("fn", target_name="lambda"))


@pytest.mark.parametrize(
    "field, value, message",
    [
        (LambdaTimeoutField, 0, "must be 1 to 900 seconds, not 0"),
        (LambdaTimeoutField, 901, "must be 1 to 900 seconds, not 901"),
        (LambdaMemorySizeField, 127, "must be 128 to 10240 MB, not 127"),
        (LambdaMemorySizeField, 10241, "must be 128 to 10240 MB, not 10241"),
    ],
)
def test_timeout_and_memory_size_outside_lambdas_range_are_refused(field, value, message):
    address = Address("fn", target_name="lambda")
    with pytest.raises(
        InvalidFieldException, match=rf"`{field.alias}` field of fn:lambda {message}"
    ):
        field.compute_value(value, address)
    assert field.compute_value(None, address) == field.default


def test_timeout_and_memory_size_bounds_are_accepted():
    address = Address("fn", target_name="lambda")
    assert LambdaTimeoutField.compute_value(900, address) == 900
    assert LambdaMemorySizeField.compute_value(10240, address) == 10240
