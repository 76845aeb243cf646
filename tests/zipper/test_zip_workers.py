"""How many compression processes a build uses: never a reason for different bytes."""

from __future__ import annotations

import pytest

from lambda_rules.zipper.errors import ZipError
from lambda_rules.zipper.pipeline import PARALLEL_MIN_BYTES, available_cpus, resolve_workers
from tests.zipper.test_zip_golden import GOLDEN_SHA256


def test_max_workers_caps_large_inputs_and_small_inputs_use_one():
    large = PARALLEL_MIN_BYTES
    assert resolve_workers(None, large, max_workers=1) == 1
    assert resolve_workers(None, large, max_workers=64) == available_cpus()
    assert resolve_workers(None, large - 1, max_workers=64) == 1
    assert resolve_workers(3, 0, max_workers=None) == 3


@pytest.mark.parametrize(
    "workers, max_workers, flag", [(0, None, "--workers"), (None, 0, "--max-workers")]
)
def test_worker_counts_below_one_are_refused(workers, max_workers, flag):
    with pytest.raises(ZipError, match=f"{flag} must be at least 1"):
        resolve_workers(workers, PARALLEL_MIN_BYTES, max_workers)


def test_max_workers_gives_the_golden_bytes_and_excludes_workers(zipper, golden_tree, tmp_path):
    assert (
        zipper.build_sha256(golden_tree, tmp_path / "a.zip", "--max-workers", "4") == GOLDEN_SHA256
    )
    refused = zipper.run(
        "build",
        golden_tree,
        "-o",
        tmp_path / "b.zip",
        "--workers",
        "2",
        "--max-workers",
        "2",
        expect=2,
    )
    assert "not allowed with argument" in refused.stderr
    assert not (tmp_path / "b.zip").exists()
