"""Lambda's runtime lifecycle: the dates are facts, packaging for a runtime with an announced end
warns under both front ends and still builds, and `pants help` lists the dates."""

from __future__ import annotations

import datetime

from lambda_rules import facts
from lambda_rules.plugin.target_types import LambdaRuntimeField
from tests.locks.test_any_lock import lambda_zip


def test_the_dates_are_awss():
    python310 = facts.RUNTIMES["python3.10"].lifecycle
    assert python310 == facts.Lifecycle(
        datetime.date(2026, 10, 31), datetime.date(2026, 11, 30), datetime.date(2027, 1, 15)
    )
    assert facts.RUNTIMES["python3.9"].lifecycle.deprecated == datetime.date(2025, 12, 15)
    assert facts.RUNTIMES["python3.12"].lifecycle is None


def test_packaging_for_a_deprecated_runtime_warns_and_builds(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("def handler(event, context):\n    return 1\n")
    out = tmp_path / "out" / "fn.zip"
    result = lambda_zip(
        "package", app, "--source-root", tmp_path, "--handler", "app.handler",
        "--runtime", "python3.10", "-o", out, "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    (warning,) = [line for line in result.stderr.splitlines() if "deprecates" in line]
    for text in ("python3.10", "2026-10-31", "2026-11-30", "2027-01-15", facts.NEWEST_RUNTIME):
        assert text in warning
    quiet = lambda_zip(
        "package", app, "--source-root", tmp_path, "--handler", "app.handler",
        "--runtime", "python3.12", "-o", out, "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert "deprecates" not in quiet.stderr


def test_pants_help_lists_the_dates():
    for text in ("python3.9 on 2025-12-15", "python3.10 on 2026-10-31", "2027-01-15"):
        assert text in LambdaRuntimeField.help
