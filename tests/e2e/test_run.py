"""`./pants run` on the example `lambda_function`, end to end in a fresh clone (one pantsd)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

pytestmark = pytest.mark.e2e

VALID = {"order_id": "A1", "quantity": 3, "unit_price_cents": 250}
INVALID = {"order_id": "A1", "quantity": 0, "unit_price_cents": 250}


def test_run_invokes_the_example_like_lambda(clone_factory):
    clone = clone_factory("run")
    clone.write("events/valid.json", json.dumps(VALID))
    clone.write("events/invalid.json", json.dumps(INVALID))

    ok = clone.pants("run", "//fn:lambda", "--", "events/valid.json", pantsd=True)
    response = json.loads(ok.stdout)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"order_id": "A1", "total_cents": 750}

    failed = clone.pants(
        "run", "//fn:lambda", "--", "events/invalid.json", pantsd=True, check=False
    )
    assert failed.returncode != 0
    error = json.loads(failed.stdout)
    assert error["errorType"] == "ValidationError"
    assert "1 validation error for Order" in error["errorMessage"]
    assert "quantity" in error["errorMessage"] and "greater than 0" in error["errorMessage"]
    assert error["stackTrace"] and any("app.py" in frame for frame in error["stackTrace"])

    # The event on standard input, with `-`.
    from_stdin = subprocess.run(
        ["./pants", "--pantsd", "run", "//fn:lambda", "--", "-"],
        cwd=clone.root,
        input=json.dumps({**VALID, "quantity": 4}),
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    body = json.loads(json.loads(from_stdin.stdout)["body"])
    assert body["total_cents"] == 1000

    missing = clone.pants("run", "//fn:lambda", "--", "events/nope.json", pantsd=True, check=False)
    assert missing.returncode == 2 and missing.stdout == ""
    assert "event file events/nope.json does not exist" in missing.stderr
