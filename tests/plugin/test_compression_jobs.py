"""`parts.compression_jobs`, the processes that compress a function's units, and
`parts.jobs_before_a_free_core`, the ones the SBOM template waits for
(`assemble.SbomTemplateRequest.after`): every unit compressed exactly once, the largest job last,
and the same requests each time they are computed (the wait relies on Pants memoising them)."""

from __future__ import annotations

from pants.engine.fs import EMPTY_DIGEST

from lambda_rules.plugin.steps.parts import (
    SMALL_UNIT_BYTES,
    BytecodeCompiler,
    ZipPartsRequest,
    compression_jobs,
    jobs_before_a_free_core,
)
from lambda_rules.plugin.steps.stage import DistributionUnit
from lambda_rules.units import Distribution

MB = 1 << 20


def _unit(name: str, size: int) -> DistributionUnit:
    return DistributionUnit(Distribution(name, "1.0"), EMPTY_DIGEST, size, name)


def _jobs(units: list[DistributionUnit], bytecode: BytecodeCompiler | None = None):
    """The jobs on 2 cores, checked to compress each unit once and to be computed the same
    twice."""
    request = ZipPartsRequest(tuple(units), bytecode)
    jobs = compression_jobs(request, 2)
    assert jobs == compression_jobs(request, 2) and hash(jobs) == hash(compression_jobs(request, 2))
    compressed = [unit for job in jobs for unit in job.units]
    assert sorted(compressed, key=lambda u: u.description) == sorted(
        units, key=lambda u: u.description
    )
    assert all(job.bytecode == bytecode for job in jobs)
    return jobs


def test_an_api_function_waits_for_its_small_units_then_botocore_has_one_core():
    botocore = _unit("botocore", 90 * MB)
    small = [_unit(f"small-{k}", MB // 2 + k) for k in range(28)]
    jobs = _jobs([*small, botocore])
    assert [job.units for job in jobs] == [tuple(small), (botocore,)]
    assert jobs[-1].cores == 1
    assert jobs_before_a_free_core(jobs, 2) == jobs[:1]


def test_numpy_and_pandas_compress_alone_and_the_largest_goes_last():
    numpy, pandas = _unit("numpy", 40 * MB), _unit("pandas", 35 * MB)
    small = [_unit("pytz", 3 * MB), _unit("six", MB // 10), _unit("tzdata", SMALL_UNIT_BYTES - 1)]
    jobs = _jobs([*small, pandas, numpy], BytecodeCompiler("/usr/bin/python3.12", "cpython-312"))
    # pytz is over SMALL_UNIT_BYTES, yet a small share of the whole: grouped too.
    assert [job.units for job in jobs] == [(pandas,), tuple(small), (numpy,)]
    assert jobs_before_a_free_core(jobs, 2) == jobs[:2]


def test_a_large_unit_alone_takes_every_core_so_the_template_waits_for_it():
    (job,) = jobs = _jobs([_unit("botocore", 90 * MB)])
    assert job.cores == 2
    assert jobs_before_a_free_core(jobs, 2) == jobs


def test_a_small_unit_alone_leaves_a_core_free():
    jobs = _jobs([_unit("pydantic-core", 5 * MB)])
    assert jobs_before_a_free_core(jobs, 2) == ()


def test_small_units_only_are_one_group_beside_the_template():
    small = [_unit("six", MB // 10), _unit("idna", MB // 5)]
    jobs = _jobs(small)
    assert [job.units for job in jobs] == [tuple(small)]
    assert jobs_before_a_free_core(jobs, 2) == ()
    assert jobs_before_a_free_core((), 2) == ()
