"""Lambda's facts, and that the modules and scripts built on them say the same thing."""

from __future__ import annotations

import subprocess
import sys

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
