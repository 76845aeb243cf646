"""ruff (lint and format, 100 columns) and mypy hold for the whole repository, as CI runs them.

The tools come pinned in 3rdparty/python/lint-requirements.txt, in a venv of their own that
./test installs; their settings are in pyproject.toml. mypy reads the packages of this
interpreter's environment, where Pants 2.17 is installed, so the glue is checked against Pants'
own types.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

LINT_VENV = REPO_ROOT / ".cache" / "lint-venv"


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", "--python-executable", sys.executable],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_is_clean(command):
    tool = LINT_VENV / "bin" / command[0]
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run the tests with ./test, which installs it")
    result = subprocess.run(
        [str(tool), *command[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
