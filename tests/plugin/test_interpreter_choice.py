"""One interpreter discovery for both front ends: with two CPython 3.12 installations under
pyenv, `pants package` (its bytecode step, through a RuleRunner) and `lambda-zip package` pick the
same executable, the highest patch release, and name the same `compiled_by`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pants.engine.addresses import Address
from pants.testutil.rule_runner import QueryRule, RuleRunner

from lambda_rules.facts import Kind
from lambda_rules.lambda_zip import local_build as cli_package
from lambda_rules.platforms import lambda_platform
from lambda_rules.plugin import package
from lambda_rules.plugin.steps.parts import BytecodeCompiler, BytecodeCompilerRequest
from tests.conftest import pyenv_python


def two_pythons(root: Path) -> Path:
    """A pyenv root holding the real 3.12 twice: as 3.12.0 and as 3.12.99 (a copy of the same
    installation under another prefix, hard-linked)."""
    installation = pyenv_python(12).parent.parent
    for name in ("3.12.0", "3.12.99"):
        subprocess.run(["cp", "-al", str(installation), str(root / "versions" / name)], check=True)
    return root


def test_both_front_ends_pick_the_same_cpython(tmp_path, monkeypatch):
    (tmp_path / "pyenv" / "versions").mkdir(parents=True)
    root = two_pythons(tmp_path / "pyenv")
    monkeypatch.setenv("PYENV_ROOT", str(root))
    platform = lambda_platform("python3.12", "x86_64")
    runner = RuleRunner(
        rules=[*package.rules(), QueryRule(BytecodeCompiler, [BytecodeCompilerRequest])]
    )
    pants_choice = runner.request(
        BytecodeCompiler, [BytecodeCompilerRequest(Address("fn", target_name="lambda"), platform)]
    )
    request = cli_package.PackageRequest(
        name="fn", kind=Kind.FUNCTION, platform=platform, output=tmp_path / "fn.zip"
    )
    cli_choice = cli_package._compiler("fn", request)
    expected = root / "versions/3.12.99/bin/python3.12"
    assert Path(pants_choice.python) == cli_choice.python == expected
    version = subprocess.run(
        [str(expected), "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert cli_choice.version == version
    assert os.access(expected, os.X_OK)
