"""Lambda's facts, and that the modules and scripts built on them say the same thing."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from lambda_rules import facts, platforms
from lambda_rules.plugin.target_types import (
    LambdaArchitectureField,
    LambdaMemorySizeField,
    LambdaRuntimeField,
    LambdaTimeoutField,
)
from lambda_rules.scripts import invoke
from tests.conftest import REPO_ROOT


def test_runtimes_and_their_glibc():
    assert list(facts.RUNTIMES) == [f"python3.{minor}" for minor in range(9, 15)]
    for runtime in facts.RUNTIMES.values():
        major, minor = runtime.python_version
        assert runtime.name == runtime.python_name == f"python{major}.{minor}"
        assert runtime.cache_tag == f"cpython-{major}{minor}"
        # python3.9-3.11 on Amazon Linux 2 (glibc 2.26), 3.12+ on Amazon Linux 2023 (2.34).
        expected = ("Amazon Linux 2", (2, 26)) if minor <= 11 else ("Amazon Linux 2023", (2, 34))
        assert (runtime.os_release, runtime.glibc) == expected


def test_layer_sys_path_is_what_the_python_runtime_adds():
    assert facts.layer_sys_path("/opt/", (3, 12)) == [
        "/opt/python/lib/python3.12/site-packages",
        "/opt/python",
    ]


def test_the_target_fields_take_their_choices_and_bounds_from_the_facts():
    assert LambdaRuntimeField.valid_choices == tuple(facts.RUNTIMES)
    assert LambdaArchitectureField.valid_choices == ("x86_64", "arm64")
    assert LambdaArchitectureField.default == facts.DEFAULT_ARCHITECTURE
    assert (LambdaTimeoutField.default, LambdaTimeoutField.bounds) == (3, facts.TIMEOUT)
    assert (LambdaMemorySizeField.default, LambdaMemorySizeField.bounds) == (
        128,
        facts.MEMORY_SIZE,
    )
    help_text = (
        LambdaRuntimeField.help()
        if callable(LambdaRuntimeField.help)
        else str(LambdaRuntimeField.help)
    )
    assert "python3.9 to python3.11 run on Amazon Linux 2 (glibc 2.26)" in help_text
    assert "python3.12 to python3.14 run on Amazon Linux 2023 (glibc 2.34)" in help_text


def test_every_runtime_has_a_platform_and_the_invoker_accepts_it():
    for name, runtime in facts.RUNTIMES.items():
        for architecture, machine in facts.ARCHITECTURES.items():
            platform = platforms.lambda_platform(name, architecture)
            assert platform.runtime is runtime and platform.machine == machine
    usage = subprocess.run(
        [sys.executable, "-m", "lambda_rules.scripts.invoke", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(name in usage for name in facts.RUNTIMES), usage
    assert invoke.PROG in usage


def test_kind_values_are_how_manifest_and_sbom_spell_them():
    assert [kind.value for kind in facts.Kind] == ["function", "layer"]


HYPOTHETICAL_RUNTIME = """
import json, sys
from lambda_rules import facts

# The one line a new runtime takes, here in the test only.
facts.RUNTIMES["python3.15"] = facts.Runtime("python3.15", (3, 15), "Amazon Linux 2023", (2, 34))

from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException

from lambda_rules.platforms import lambda_platform
from lambda_rules.plugin.target_types import LambdaRuntimeField
from lambda_rules.scripts import invoke

platform = lambda_platform("python3.15", "arm64")
tags = json.loads(platform.complete_platform_json())["compatible_tags"]
assert "cp315-cp315-manylinux_2_34_aarch64" in tags, tags[:3]
assert LambdaRuntimeField("python3.15", Address("fn", target_name="lambda")).value == "python3.15"
try:
    LambdaRuntimeField("python3.16", Address("fn", target_name="lambda"))
except InvalidFieldException:
    pass
else:
    raise AssertionError("python3.16 is not a runtime")
sys.exit(invoke.main([sys.argv[1], "--runtime", "python3.15", "--handler", "app.handler", "-"]))
"""


def test_a_new_runtime_is_one_line_in_the_facts(tmp_path):
    """Platforms, target validation and the invoker all accept a runtime added to the facts."""
    archive = tmp_path / "fn.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return 1\n")
    result = subprocess.run(
        [sys.executable, "-c", HYPOTHETICAL_RUNTIME, str(archive)],
        cwd=REPO_ROOT,
        input="{}",
        capture_output=True,
        text=True,
    )
    # The invoker accepted python3.15 and looked for its interpreter, which this machine lacks.
    assert result.returncode == invoke.EXIT_NOT_INVOKED, result.stderr
    assert "invalid choice" not in result.stderr
    assert "CPython 3.15" in result.stderr and "python3.15" in result.stderr, result.stderr
