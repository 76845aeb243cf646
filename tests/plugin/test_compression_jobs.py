"""`parts.compression_jobs`: the processes that compress a function's units. The SBOM template
waits for all but the last (`assemble.SbomTemplateRequest.after`), so the last must be the
largest unit's, and every unit must be compressed exactly once."""

from __future__ import annotations

from pants.engine.fs import EMPTY_DIGEST

from lambda_rules.plugin.steps.parts import SMALL_UNIT_BYTES, ZipPartsRequest, compression_jobs
from lambda_rules.plugin.steps.stage import DistributionUnit
from lambda_rules.units import Distribution

MB = 1 << 20


def _unit(name: str, size: int) -> DistributionUnit:
    return DistributionUnit(Distribution(name, "1.0"), EMPTY_DIGEST, size, name)


def _check(units: list[DistributionUnit], parallelism: int = 2):
    jobs = compression_jobs(ZipPartsRequest(tuple(units)), parallelism)
    compressed = [unit for job in jobs for unit in job.units]
    assert sorted(compressed, key=lambda u: u.description) == sorted(
        units, key=lambda u: u.description
    )
    largest = max(units, key=lambda u: u.size)
    assert jobs[-1].units == (largest,)
    return jobs


def test_an_api_function_compresses_its_small_units_together_before_the_largest():
    botocore = _unit("botocore", 90 * MB)
    small = [_unit(f"small-{k}", MB // 2 + k) for k in range(28)]
    jobs = _check([*small, botocore])
    assert [len(job.units) for job in jobs] == [28, 1]
    # The group takes one of the two cores; botocore gets the other.
    assert jobs[-1].cores == 1


def test_numpy_and_pandas_compress_alone_and_the_largest_goes_last():
    numpy, pandas = _unit("numpy", 40 * MB), _unit("pandas", 35 * MB)
    small = [_unit("pytz", 3 * MB), _unit("six", MB // 10), _unit("tzdata", SMALL_UNIT_BYTES - 1)]
    jobs = _check([*small, pandas, numpy])
    # pytz is over SMALL_UNIT_BYTES, yet a small share of the whole: grouped too.
    assert [job.units for job in jobs[:-1]] == [(pandas,), tuple(small)]


def test_a_lone_unit_is_one_job_with_the_cores_pants_has():
    jobs = _check([_unit("pydantic-core", 5 * MB)], parallelism=2)
    assert len(jobs) == 1 and jobs[0].cores == 2
