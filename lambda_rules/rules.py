"""Rules for `package` on `lambda_function`: resolve -> stage -> zip -> manifest.

Each step is thin and delegates its decisions to the Pants-free core (`platforms`, `staging`,
`manifest`, `zipper`). Resolving and zipping run as processes, so their results are cached
locally and in a remote cache and a second machine can skip them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import EntryPoint, PexLayout, PythonResolveField
from pants.backend.python.util_rules.faas import (
    ResolvedPythonFaaSHandler,
    ResolvePythonFaaSHandlerRequest,
)
from pants.backend.python.util_rules.faas import rules as faas_rules
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import (
    CompletePlatforms,
    Pex,
    PexRequest,
    VenvPex,
    VenvPexProcess,
)
from pants.backend.python.util_rules.pex_from_targets import PexFromTargetsRequest
from pants.backend.python.util_rules.pex_requirements import PexRequirements, Resolve
from pants.backend.python.util_rules.pex_venv import PexVenv, PexVenvLayout, PexVenvRequest
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.util_rules.distdir import DistDir
from pants.engine.addresses import Address
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileContent,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.process import ProcessExecutionFailure, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest
from pants.engine.unions import UnionRule
from pants.option.option_types import IntOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.logging import LogLevel
from pants.util.strutil import help_text, softwrap

from lambda_rules import manifest, staging
from lambda_rules.platforms import LambdaPlatform, lambda_platform
from lambda_rules.target_types import (
    LambdaArchitectureField,
    LambdaFunctionHandlerField,
    LambdaFunctionOutputPathField,
    LambdaRuntimeField,
)

logger = logging.getLogger(__name__)

_PLUGIN_ROOT = Path(__file__).parent
_STAGED_DIR = "staged"
_SITE_PACKAGES_DIR = "site-packages"


class LambdaZipSubsystem(Subsystem):
    options_scope = "lambda-zip"
    help = "The deterministic zipper that writes `lambda_function` deployment packages."

    resolve = StrOption(
        default="lambda-zip",
        help=help_text(
            """
            The resolve (in `[python].resolves`) that pins the zipper's tool environment, i.e.
            the `deflate` (libdeflate) version: the compressed bytes of every package depend on it.
            """
        ),
    )
    compression_level = IntOption(
        default=None,
        help="libdeflate level 1-12; unset means the zipper's documented default.",
    )


@dataclass(frozen=True)
class LambdaFunctionFieldSet(PackageFieldSet):
    required_fields = (LambdaFunctionHandlerField, LambdaRuntimeField)

    handler: LambdaFunctionHandlerField
    runtime: LambdaRuntimeField
    architecture: LambdaArchitectureField
    resolve: PythonResolveField
    output_path: LambdaFunctionOutputPathField

    @property
    def platform(self) -> LambdaPlatform:
        return lambda_platform(self.runtime.value, self.architecture.value)


@dataclass(frozen=True)
class ResolveLambdaDistributionsRequest:
    address: Address
    platform: LambdaPlatform


@dataclass(frozen=True)
class LambdaDistributions:
    """Third-party distributions for one Lambda platform, laid out flat at the digest root."""

    digest: Digest


@dataclass(frozen=True)
class StageLambdaRequest:
    field_set: LambdaFunctionFieldSet


@dataclass(frozen=True)
class StagedLambda:
    """Exactly the files of the deployment package, at their paths inside the zip."""

    digest: Digest
    handler: str
    distributions: tuple[staging.Distribution, ...]


@dataclass(frozen=True)
class CheckLambdaHandlerRequest:
    address: Address
    handler_field: str
    handler: ResolvedPythonFaaSHandler
    sources: Digest
    staged_paths: frozenset[str]


@dataclass(frozen=True)
class CheckedLambdaHandler:
    module_file: str


@dataclass(frozen=True)
class DeterministicZipRequest:
    staged: Digest
    output_filename: str
    description: str


@dataclass(frozen=True)
class DeterministicZip:
    digest: Digest
    summary: dict


@dataclass(frozen=True)
class LambdaZipTool:
    pex: VenvPex


@rule(desc="Resolve Lambda distributions", level=LogLevel.DEBUG)
async def resolve_lambda_distributions(
    request: ResolveLambdaDistributionsRequest,
) -> LambdaDistributions:
    platform = request.platform
    platform_file = f"__lambda_platform_{platform.runtime.name}_{platform.architecture}.json"
    platform_digest = await Get(
        Digest,
        CreateDigest([FileContent(platform_file, platform.complete_platform_json().encode())]),
    )
    complete_platforms = CompletePlatforms([platform_file], digest=platform_digest)
    # Wheels only: building an sdist would run arbitrary code on this machine and could give a
    # wheel for the host instead of for Lambda.
    wheels_only = ("--no-build",)
    try:
        requirements_pex = await Get(
            Pex,
            PexFromTargetsRequest(
                [request.address],
                output_filename="lambda_requirements.pex",
                internal_only=False,
                layout=PexLayout.PACKED,
                include_source_files=False,
                complete_platforms=complete_platforms,
                additional_args=wheels_only,
                additional_lockfile_args=wheels_only,
                description=f"Resolve requirements of {request.address} for {platform.description}",
            ),
        )
    except ProcessExecutionFailure as e:
        raise staging.ResolveError(
            staging.explain_resolve_failure(
                str(request.address), platform, e.stderr.decode(errors="replace")
            )
        ) from e
    venv = await Get(
        PexVenv,
        PexVenvRequest(
            pex=requirements_pex,
            layout=PexVenvLayout.FLAT,
            output_path=Path(_SITE_PACKAGES_DIR),
            complete_platforms=complete_platforms,
            description=f"Lay out distributions of {request.address} for {platform.description}",
        ),
    )
    return LambdaDistributions(await Get(Digest, RemovePrefix(venv.digest, _SITE_PACKAGES_DIR)))


@rule(desc="Stage Lambda package", level=LogLevel.DEBUG)
async def stage_lambda(request: StageLambdaRequest) -> StagedLambda:
    field_set = request.field_set
    address = field_set.address
    transitive_targets, handler, distributions = await MultiGet(
        Get(TransitiveTargets, TransitiveTargetsRequest([address])),
        Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(field_set.handler)),
        Get(
            LambdaDistributions,
            ResolveLambdaDistributionsRequest(address, field_set.platform),
        ),
    )
    sources = await Get(
        StrippedPythonSourceFiles,
        PythonSourceFilesRequest(
            transitive_targets.closure, include_resources=True, include_files=True
        ),
    )
    source_snapshot = sources.stripped_source_files.snapshot
    distribution_entries = await Get(DigestEntries, Digest, distributions.digest)
    bundled = [
        entry
        for entry in distribution_entries
        if isinstance(entry, FileEntry) and staging.is_bundled_distribution_path(entry.path)
    ]
    bundled_paths = [entry.path for entry in bundled]

    collisions = staging.path_collisions(source_snapshot.files, bundled_paths)
    if collisions:
        raise staging.StagingError(
            softwrap(
                f"""
                {address}: these paths come both from first-party sources and from a third-party
                distribution, and only one can be in the package: {', '.join(collisions)}.
                Rename the first-party module or drop the requirement.
                """
            )
        )
    all_paths = [*source_snapshot.files, *bundled_paths]
    for group in staging.case_collisions(all_paths):
        logger.warning(
            f"{address}: the paths {', '.join(group)} differ only by case; they collide when "
            "the package is unzipped on a case-insensitive file system (macOS, Windows)."
        )

    bundled_digest, _ = await MultiGet(
        Get(Digest, CreateDigest(bundled)),
        Get(
            CheckedLambdaHandler,
            CheckLambdaHandlerRequest(
                address,
                field_set.handler.value,
                handler,
                source_snapshot.digest,
                frozenset(all_paths),
            ),
        ),
    )
    staged = await Get(Digest, MergeDigests([source_snapshot.digest, bundled_digest]))
    return StagedLambda(
        digest=staged,
        handler=f"{handler.module}.{handler.func}",
        distributions=staging.distributions(bundled_paths),
    )


@rule(desc="Check Lambda handler", level=LogLevel.DEBUG)
async def check_lambda_handler(request: CheckLambdaHandlerRequest) -> CheckedLambdaHandler:
    """Statically check that the handler's module is packaged and defines the function."""
    handler = request.handler
    handler_spec = request.handler_field
    candidates = staging.handler_module_candidates(handler.module)
    module_file = next((p for p in candidates if p in request.staged_paths), None)
    if module_file is None:
        raise staging.StagingError(
            softwrap(
                f"""
                {request.address}: the handler `{handler_spec}` is in module `{handler.module}`,
                but neither {' nor '.join(candidates)} is in the package. Check the `handler`
                field, or add the module's target to `dependencies`.
                """
            )
        )
    contents = await Get(DigestContents, DigestSubset(request.sources, PathGlobs([module_file])))
    # A handler module from a third-party distribution is not among the sources: not checked.
    if contents and not staging.module_defines(
        contents[0].content, handler.func, filename=module_file
    ):
        raise staging.StagingError(
            softwrap(
                f"""
                {request.address}: the handler `{handler_spec}` names function `{handler.func}`,
                but `{module_file}` defines no top-level `{handler.func}`. Fix the `handler` field
                or define the function.
                """
            )
        )
    return CheckedLambdaHandler(module_file)


@rule
async def lambda_zip_tool(subsystem: LambdaZipSubsystem, python_setup: PythonSetup) -> LambdaZipTool:
    # The zipper's own sources travel as file contents, never as paths, so the process that runs
    # them is cacheable across checkouts and machines.
    zipper_files = [
        FileContent(
            path.relative_to(_PLUGIN_ROOT.parent).as_posix(),
            path.read_bytes(),
        )
        for path in sorted(
            [_PLUGIN_ROOT / "__init__.py", *(_PLUGIN_ROOT / "zipper").glob("*.py")]
        )
    ]
    sources = await Get(Digest, CreateDigest(zipper_files))
    interpreter_constraints = InterpreterConstraints(
        python_setup.resolves_to_interpreter_constraints.get(
            subsystem.resolve, python_setup.interpreter_constraints
        )
    )
    pex = await Get(
        VenvPex,
        PexRequest(
            output_filename="lambda_zip.pex",
            internal_only=True,
            requirements=PexRequirements(
                from_superset=Resolve(subsystem.resolve, use_entire_lockfile=True),
                description_of_origin="the `[lambda-zip].resolve` option",
            ),
            interpreter_constraints=interpreter_constraints,
            main=EntryPoint("lambda_rules.zipper.cli", "main"),
            sources=sources,
        ),
    )
    return LambdaZipTool(pex)


@rule(desc="Write deterministic zip", level=LogLevel.DEBUG)
async def deterministic_zip(
    request: DeterministicZipRequest, tool: LambdaZipTool, subsystem: LambdaZipSubsystem
) -> DeterministicZip:
    summary_file = "zip-summary.json"
    level_args = () if subsystem.compression_level is None else ("--level", str(subsystem.compression_level))
    staged = await Get(Digest, AddPrefix(request.staged, _STAGED_DIR))
    result = await Get(
        ProcessResult,
        VenvPexProcess(
            tool.pex,
            argv=(
                "build",
                _STAGED_DIR,
                "-o",
                request.output_filename,
                "--summary-json",
                summary_file,
                "--max-workers",
                # Filled in by Pants with the cores it grants; not part of the cache key.
                "{pants_concurrency}",
                *level_args,
            ),
            input_digest=staged,
            output_files=(request.output_filename, summary_file),
            description=request.description,
            level=LogLevel.DEBUG,
            concurrency_available=8,
        ),
    )
    summary_contents = await Get(
        DigestContents, DigestSubset(result.output_digest, PathGlobs([summary_file]))
    )
    archive = await Get(
        Digest, DigestSubset(result.output_digest, PathGlobs([request.output_filename]))
    )
    return DeterministicZip(archive, json.loads(summary_contents[0].content))


@rule(desc="Package Lambda function", level=LogLevel.DEBUG)
async def package_lambda_function(
    field_set: LambdaFunctionFieldSet, dist_dir: DistDir
) -> BuiltPackage:
    platform = field_set.platform
    staged = await Get(StagedLambda, StageLambdaRequest(field_set))
    output_path = field_set.output_path.value_or_default(file_ending="zip")
    zipped = await Get(
        DeterministicZip,
        DeterministicZipRequest(
            staged.digest, output_path, description=f"Zip {field_set.address} ({platform.description})"
        ),
    )
    summary = zipped.summary
    manifest.check_unzipped_size(summary["unzipped_size"], what=str(field_set.address))
    for warning in manifest.size_warnings(summary["zipped_size"]):
        logger.warning(f"{field_set.address}: {warning}")

    content_addressed = manifest.content_addressed_name(output_path, summary["sha256_hex"])
    manifest_path = manifest.manifest_name(output_path)
    document = manifest.LambdaManifest(
        artifact=Path(output_path).name,
        content_addressed_artifact=Path(content_addressed).name,
        sha256_hex=summary["sha256_hex"],
        sha256_base64=summary["sha256_base64"],
        zipped_size=summary["zipped_size"],
        unzipped_size=summary["unzipped_size"],
        entry_count=summary["entry_count"],
        runtime=platform.runtime.name,
        architecture=platform.architecture,
        handler=staged.handler,
        distributions=staged.distributions,
    )
    (archive_entry,) = await Get(DigestEntries, Digest, zipped.digest)
    assert isinstance(archive_entry, FileEntry)
    outputs = await Get(
        Digest,
        CreateDigest(
            [
                archive_entry,
                FileEntry(content_addressed, archive_entry.file_digest),
                FileContent(manifest_path, document.to_json().encode()),
            ]
        ),
    )
    dist = dist_dir.relpath

    def wrote(path: str, details: str) -> BuiltPackageArtifact:
        # One line per artifact (relpath=None keeps Pants from adding its own "Wrote" line).
        return BuiltPackageArtifact(None, extra_log_lines=(f"Wrote {dist / path}  {details}",))

    zip_details = f"{summary['zipped_size']:,} bytes  sha256 {summary['sha256_hex']}"
    return BuiltPackage(
        outputs,
        artifacts=(
            wrote(output_path, f"{zip_details}  ({platform.description}, handler {staged.handler})"),
            wrote(content_addressed, zip_details),
            wrote(manifest_path, f"manifest  filebase64sha256 {summary['sha256_base64']}"),
        ),
    )


def rules():
    return (
        *collect_rules(),
        *faas_rules(),
        UnionRule(PackageFieldSet, LambdaFunctionFieldSet),
    )
