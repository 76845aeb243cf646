"""Resolve: a target's requirements -> its distributions for one Lambda platform, one stored
archive per distribution unit (`scripts/pack_units.py`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import (
    CompletePlatforms,
    PexRequest,
    ReqStrings,
    _setup_pex_requirements,
)
from pants.backend.python.util_rules.pex_cli import PexCliProcess
from pants.backend.python.util_rules.pex_from_targets import PexFromTargetsRequest
from pants.backend.python.util_rules.pex_requirements import PexRequirements
from pants.engine.addresses import Address
from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    FileContent,
    MergeDigests,
    RemovePrefix,
)
from pants.engine.process import Process, ProcessExecutionFailure, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from lambda_rules import sandbox_files, staging
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.plugin.steps.cache import REMOTE_CACHE_SPECULATION_DELAY_MILLIS

_SITE_PACKAGES_DIR = "site-packages"
_UNITS_DIR = "units"
# Where the resolve's sandbox holds the packer's files (`sandbox_files.UNIT_PACKER`).
_PACKER_DIR = "__lambda_packer"
# Wheels only: building an sdist would run arbitrary code on this machine and could give a wheel
# for the host instead of for Lambda.
_WHEELS_ONLY = ("--no-build",)


@dataclass(frozen=True)
class ResolveLambdaDistributionsRequest:
    address: Address
    platform: LambdaPlatform


@dataclass(frozen=True)
class LambdaDistributions:
    """Third-party distributions for one Lambda platform, split into units and packed, as
    `scripts/pack_units.py` lays them out at the digest root (empty without requirements)."""

    digest: Digest


@rule(desc="Resolve Lambda distributions", level=LogLevel.DEBUG)
async def resolve_lambda_distributions(
    request: ResolveLambdaDistributionsRequest, python_setup: PythonSetup
) -> LambdaDistributions:
    platform = request.platform
    platform_file = f"__lambda_platform_{platform.runtime.name}_{platform.architecture}.json"
    platform_digest = await Get(
        Digest,
        CreateDigest([FileContent(platform_file, platform.complete_platform_json().encode())]),
    )
    complete_platforms = CompletePlatforms([platform_file], digest=platform_digest)
    # The runtime decides the interpreter, not the repository's default constraints, so a lockfile
    # made for this one Lambda version is usable. Pants 2.17 can only compare constraints within
    # `[python].interpreter_versions_universe` (3.12 at most by default): beyond it, the target's
    # own constraints apply, as before.
    major, minor = platform.runtime.python_version
    runtime_constraints = (
        InterpreterConstraints([platform.interpreter_constraint])
        if f"{major}.{minor}" in python_setup.interpreter_versions_universe
        else None
    )
    pex_request = await Get(
        PexRequest,
        PexFromTargetsRequest(
            [request.address],
            output_filename="lambda_requirements.pex",
            internal_only=False,
            include_source_files=False,
            complete_platforms=complete_platforms,
            hardcoded_interpreter_constraints=runtime_constraints,
            additional_args=_WHEELS_ONLY,
            additional_lockfile_args=_WHEELS_ONLY,
        ),
    )
    requirements = pex_request.requirements
    if (
        isinstance(requirements, PexRequirements)
        and not (await Get(ReqStrings, PexRequirements, requirements)).req_strings
    ):
        return LambdaDistributions(EMPTY_DIGEST)
    # One `pex3 venv create --layout flat` straight from the lockfile, as `pip install --target`
    # would lay it out. Building a PEX first and laying that out (Pants' `PexVenvRequest`) gives
    # the same files but zips every wheel only to unzip it again: two processes and about 4 s
    # more for numpy + pandas. Pants 2.17 has no public rule that turns a `PexRequest`'s
    # requirements into pex arguments, so this calls the helper its own `build_pex` uses
    # (lockfile subsetting, its validation, indexes), pinned with Pants in pants.toml.
    setup = await _setup_pex_requirements(pex_request, python_setup)
    input_digest = await Get(
        Digest,
        MergeDigests([platform_digest, pex_request.additional_inputs, *setup.digests]),
    )
    process = await Get(
        Process,
        PexCliProcess(
            subcommand=("venv", "create"),
            extra_args=(
                f"--dest-dir={_SITE_PACKAGES_DIR}",
                "--layout=flat",
                *pex_request.additional_args,
                *complete_platforms.generate_pex_arg_list(),
                *setup.argv,
            ),
            additional_input_digest=input_digest,
            concurrency_available=setup.concurrency_available,
            description=f"Resolve requirements of {request.address} for {platform.description}",
        ),
    )
    # pex runs inside the packer's process, so Pants captures a few archives instead of every
    # file pex lays out (`PexEnvironment.create_argv` puts the interpreter pex runs on first).
    packer = await Get(
        Digest,
        CreateDigest(
            FileContent(f"{_PACKER_DIR}/{path}", content)
            for path, content in sandbox_files.UNIT_PACKER.read().items()
        ),
    )
    packing = dataclasses.replace(
        process,
        argv=(
            process.argv[0],
            "-I",
            "-S",
            "-B",
            "-c",
            sandbox_files.entry_program(sandbox_files.UNIT_PACKER_MODULE, (_PACKER_DIR,)),
            "--site-packages",
            _SITE_PACKAGES_DIR,
            "--out",
            _UNITS_DIR,
            "--",
            *process.argv,
        ),
        input_digest=await Get(Digest, MergeDigests([process.input_digest, packer])),
        output_directories=(_UNITS_DIR,),
        remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
    )
    try:
        result = await Get(ProcessResult, Process, packing)
    except ProcessExecutionFailure as e:
        raise staging.ResolveError(
            staging.explain_resolve_failure(
                str(request.address), platform, e.stderr.decode(errors="replace")
            )
        ) from e
    return LambdaDistributions(await Get(Digest, RemovePrefix(result.output_digest, _UNITS_DIR)))


def rules():
    return collect_rules()
