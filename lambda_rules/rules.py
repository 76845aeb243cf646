"""Rules for `package` on `lambda_function`: resolve -> stage -> zip -> manifest.

Each step is thin and delegates its decisions to the Pants-free core (`platforms`, `staging`,
`manifest`, `zipper`). Resolving and zipping run as processes, so their results are cached
locally and in a remote cache and a second machine can skip them.
"""

from __future__ import annotations

import hashlib
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
from pants.backend.python.util_rules.pex_environment import PythonExecutable
from pants.backend.python.util_rules.pex_requirements import (
    EntireLockfile,
    LoadedLockfile,
    LoadedLockfileRequest,
    Lockfile,
    PexRequirements,
    Resolve,
)
from pants.backend.python.util_rules.pex_venv import PexVenv, PexVenvLayout, PexVenvRequest
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
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
from pants.engine.target import (
    AllTargets,
    TransitiveTargets,
    TransitiveTargetsRequest,
)
from pants.engine.unions import UnionRule
from pants.option.option_types import IntOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.logging import LogLevel
from pants.util.strutil import help_text, softwrap

from lambda_rules import manifest, staging, units
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
_PART_FILE = "part.zip"
_PARALLEL_UNIT_BYTES = 8 << 20
_TOOL_LOCKFILE_URL = "resource://lambda_rules/lambda-zip.lock"
_SITE_PACKAGES_DIR = "site-packages"


class LambdaZipSubsystem(Subsystem):
    options_scope = "lambda-zip"
    help = "The deterministic zipper that writes `lambda_function` deployment packages."

    install_from_resolve = StrOption(
        advanced=True,
        default=None,
        help=help_text(
            """
            Install the zipper's tool environment (the `deflate` package, i.e. libdeflate) from
            this resolve in `[python].resolves` instead of the lockfile shipped inside the
            plugin. The compressed bytes of every package depend on the `deflate` version, so
            the resolve must pin the same one (`deflate==0.8.1`); any other version is refused.
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
class DistributionUnit:
    """One distribution's bundled files at their package paths: the unit of caching."""

    distribution: staging.Distribution | None
    digest: Digest
    size: int
    description: str


@dataclass(frozen=True)
class StageLambdaRequest:
    field_set: LambdaFunctionFieldSet


@dataclass(frozen=True)
class StagedLambda:
    """Exactly the files of the deployment package, as first-party code and distribution units."""

    first_party: DistributionUnit
    units: tuple[DistributionUnit, ...]
    handler: str

    @property
    def distributions(self) -> tuple[staging.Distribution, ...]:
        return tuple(unit.distribution for unit in self.units if unit.distribution is not None)


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
class ZipPartRequest:
    unit: DistributionUnit


@dataclass(frozen=True)
class ZipPart:
    """A canonical archive of one unit, named `part.zip` at the digest root."""

    digest: Digest


@dataclass(frozen=True)
class MergeZipPartsRequest:
    parts: tuple[ZipPart, ...]
    output_filename: str
    description: str


@dataclass(frozen=True)
class DeterministicZip:
    digest: Digest
    summary: dict


@dataclass(frozen=True)
class SbomRequest:
    """A CycloneDX SBOM of a built archive, with wheel hashes from the resolve's lockfile."""

    archive: Digest
    archive_path: str
    name: str
    kind: str
    platform: LambdaPlatform
    resolve: str


@dataclass(frozen=True)
class Sbom:
    content: bytes


@dataclass(frozen=True)
class UniqueOutputPath:
    path: str


@dataclass(frozen=True)
class LambdaZipTool:
    pex: VenvPex


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
                hardcoded_interpreter_constraints=runtime_constraints,
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
    distribution_entries, records = await MultiGet(
        Get(DigestEntries, Digest, distributions.digest),
        Get(
            DigestContents,
            DigestSubset(distributions.digest, PathGlobs(["*.dist-info/RECORD"])),
        ),
    )
    bundled = {
        entry.path: entry
        for entry in distribution_entries
        if isinstance(entry, FileEntry) and staging.is_bundled_distribution_path(entry.path)
    }
    bundled_paths = sorted(bundled)

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

    plans = units.split_into_units(bundled_paths, {c.path: c.content for c in records})
    platform = field_set.platform
    unit_digests = await MultiGet(
        Get(Digest, CreateDigest([bundled[path] for path in plan.paths])) for plan in plans
    )
    await Get(
        CheckedLambdaHandler,
        CheckLambdaHandlerRequest(
            address,
            field_set.handler.value,
            handler,
            source_snapshot.digest,
            frozenset(all_paths),
        ),
    )
    source_entries = await Get(DigestEntries, Digest, source_snapshot.digest)
    return StagedLambda(
        first_party=DistributionUnit(
            None,
            source_snapshot.digest,
            _total_size(source_entries),
            f"first-party code of {address}",
        ),
        units=tuple(
            DistributionUnit(
                plan.distribution,
                digest,
                sum(bundled[path].file_digest.serialized_bytes_length for path in plan.paths),
                f"{plan.label} for {platform.runtime.name} on {platform.architecture}",
            )
            for plan, digest in zip(plans, unit_digests)
        ),
        handler=f"{handler.module}.{handler.func}",
    )


def _total_size(entries: DigestEntries) -> int:
    return sum(e.file_digest.serialized_bytes_length for e in entries if isinstance(e, FileEntry))


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
    if contents and not staging.module_may_define(
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
async def lambda_zip_tool(
    subsystem: LambdaZipSubsystem,
    python_setup: PythonSetup,
    pants_python: PythonBuildStandaloneBinary,
) -> LambdaZipTool:
    # The zipper's own sources travel as file contents, never as paths, so the process that runs
    # them is cacheable across checkouts and machines.
    zipper_files = [
        FileContent(path.relative_to(_PLUGIN_ROOT.parent).as_posix(), path.read_bytes())
        for path in sorted(
            [
                *(_PLUGIN_ROOT / name for name in ("__init__.py", "platforms.py", "sbom.py")),
                *(_PLUGIN_ROOT / "zipper").glob("*.py"),
            ]
        )
    ]
    sources = await Get(Digest, CreateDigest(zipper_files))
    if subsystem.install_from_resolve:
        tool_environment: dict = dict(
            requirements=PexRequirements(
                from_superset=Resolve(subsystem.install_from_resolve, use_entire_lockfile=True),
                description_of_origin="the `[lambda-zip].install_from_resolve` option",
            ),
            interpreter_constraints=InterpreterConstraints(
                python_setup.resolves_to_interpreter_constraints.get(
                    subsystem.install_from_resolve, python_setup.interpreter_constraints
                )
            ),
        )
    else:
        # The lockfile shipped in the plugin, run on the interpreter Pants itself runs on (Pants'
        # convention for rule scripts): no interpreter search, which on a fresh machine costs
        # seconds and cannot be cached. No resolve name, so Pants does not add a resolve's
        # interpreter constraints to a request that names its interpreter.
        tool_environment = dict(
            requirements=EntireLockfile(
                Lockfile(
                    url=_TOOL_LOCKFILE_URL,
                    url_description_of_origin="the lockfile shipped with lambda_rules",
                    resolve_name="",
                )
            ),
            python=PythonExecutable(pants_python.path),
        )
    pex = await Get(
        VenvPex,
        PexRequest(
            output_filename="lambda_zip.pex",
            internal_only=True,
            main=EntryPoint("lambda_rules.zipper.cli", "main"),
            sources=sources,
            **tool_environment,
        ),
    )
    return LambdaZipTool(pex)


def _level_args(subsystem: LambdaZipSubsystem) -> tuple[str, ...]:
    level = subsystem.compression_level
    return () if level is None else ("--level", str(level))


@rule(desc="Compress a distribution unit", level=LogLevel.DEBUG)
async def zip_part(
    request: ZipPartRequest, tool: LambdaZipTool, subsystem: LambdaZipSubsystem
) -> ZipPart:
    """Compress one unit. The inputs are only the unit's files and the tool, so the result is
    shared by every function, layer and machine that resolves the same distribution."""
    unit = request.unit
    staged = await Get(Digest, AddPrefix(unit.digest, _STAGED_DIR))
    # Small units zip in one process; large ones may use the cores Pants grants.
    cores = 1 if unit.size < _PARALLEL_UNIT_BYTES else 8
    result = await Get(
        ProcessResult,
        VenvPexProcess(
            tool.pex,
            argv=(
                "build",
                _STAGED_DIR,
                "-o",
                _PART_FILE,
                "--max-workers",
                # Filled in by Pants with the cores it grants; not part of the cache key.
                "{pants_concurrency}",
                *_level_args(subsystem),
            ),
            input_digest=staged,
            output_files=(_PART_FILE,),
            description=f"Compress {unit.description}",
            level=LogLevel.DEBUG,
            concurrency_available=cores,
        ),
    )
    return ZipPart(result.output_digest)


@rule(desc="Merge zip parts", level=LogLevel.DEBUG)
async def merge_zip_parts(request: MergeZipPartsRequest, tool: LambdaZipTool) -> DeterministicZip:
    """Assemble the archive by copying the parts' compressed entries: nothing is recompressed."""
    summary_file = "zip-summary.json"
    prefixed = await MultiGet(
        Get(Digest, AddPrefix(part.digest, f"parts/{index}"))
        for index, part in enumerate(request.parts)
    )
    result = await Get(
        ProcessResult,
        VenvPexProcess(
            tool.pex,
            argv=(
                "merge",
                *(f"parts/{index}/{_PART_FILE}" for index in range(len(request.parts))),
                "-o",
                request.output_filename,
                "--summary-json",
                summary_file,
            ),
            input_digest=await Get(Digest, MergeDigests(prefixed)),
            output_files=(request.output_filename, summary_file),
            description=request.description,
            level=LogLevel.DEBUG,
        ),
    )
    summary_contents, archive = await MultiGet(
        Get(DigestContents, DigestSubset(result.output_digest, PathGlobs([summary_file]))),
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([request.output_filename]))),
    )
    return DeterministicZip(archive, json.loads(summary_contents[0].content))


@rule(desc="Write SBOM", level=LogLevel.DEBUG)
async def write_sbom(request: SbomRequest, tool: LambdaZipTool) -> Sbom:
    lockfile = await Get(Lockfile, Resolve(request.resolve, use_entire_lockfile=True))
    loaded = await Get(LoadedLockfile, LoadedLockfileRequest(lockfile))
    output = "sbom.cdx.json"
    platform = request.platform
    result = await Get(
        ProcessResult,
        VenvPexProcess(
            tool.pex,
            argv=(
                "sbom",
                request.archive_path,
                "--lockfile",
                loaded.lockfile_path,
                "--name",
                request.name,
                "--kind",
                request.kind,
                "--runtime",
                platform.runtime.name,
                "--architecture",
                platform.architecture,
                "-o",
                output,
            ),
            input_digest=await Get(
                Digest, MergeDigests([request.archive, loaded.lockfile_digest])
            ),
            output_files=(output,),
            description=f"Write SBOM of {request.name}",
            level=LogLevel.DEBUG,
        ),
    )
    (content,) = await Get(DigestContents, Digest, result.output_digest)
    return Sbom(content.content)


@rule(desc="Check Lambda output paths", level=LogLevel.DEBUG)
async def check_unique_output_path(field_set: LambdaFunctionFieldSet) -> UniqueOutputPath:
    """Two targets writing one path would overwrite each other's package: name both."""
    all_targets = await Get(AllTargets)
    output_path = field_set.output_path.value_or_default(file_ending="zip")
    clashing = sorted(
        str(target.address)
        for target in all_targets
        if target.has_field(LambdaFunctionOutputPathField)
        and target.address != field_set.address
        and target[LambdaFunctionOutputPathField].value_or_default(file_ending="zip")
        == output_path
    )
    if clashing:
        raise staging.StagingError(
            f"{field_set.address} and {', '.join(clashing)} all write `{output_path}` in the "
            "dist directory; give each target its own `output_path`."
        )
    return UniqueOutputPath(output_path)


@rule(desc="Package Lambda function", level=LogLevel.DEBUG)
async def package_lambda_function(
    field_set: LambdaFunctionFieldSet, python_setup: PythonSetup
) -> BuiltPackage:
    platform = field_set.platform
    output_path, staged = await MultiGet(
        Get(UniqueOutputPath, LambdaFunctionFieldSet, field_set),
        Get(StagedLambda, StageLambdaRequest(field_set)),
    )
    parts = await MultiGet(
        Get(ZipPart, ZipPartRequest(unit)) for unit in (staged.first_party, *staged.units)
    )
    zipped = await Get(
        DeterministicZip,
        MergeZipPartsRequest(
            parts,
            output_path.path,
            description=f"Zip {field_set.address} ({platform.description})",
        ),
    )
    summary = zipped.summary
    manifest.check_unzipped_size(summary["unzipped_size"], what=str(field_set.address))
    for warning in manifest.size_warnings(summary["zipped_size"]):
        logger.warning(f"{field_set.address}: {warning}")

    paths = manifest.ArtifactPaths.for_output(output_path.path, summary["sha256_hex"])
    sbom = await Get(
        Sbom,
        SbomRequest(
            zipped.digest,
            output_path.path,
            name=str(field_set.address),
            kind="function",
            platform=platform,
            resolve=field_set.resolve.normalized_value(python_setup),
        ),
    )
    document = manifest.LambdaManifest(
        artifact=paths.relative_to_manifest(paths.archive),
        content_addressed_artifact=paths.relative_to_manifest(paths.content_addressed),
        sha256_hex=summary["sha256_hex"],
        sha256_base64=summary["sha256_base64"],
        zipped_size=summary["zipped_size"],
        unzipped_size=summary["unzipped_size"],
        entry_count=summary["entry_count"],
        runtime=platform.runtime.name,
        architecture=platform.architecture,
        handler=staged.handler,
        distributions=staged.distributions,
        sbom=paths.relative_to_manifest(paths.sbom),
        sbom_sha256=hashlib.sha256(sbom.content).hexdigest(),
    )
    (archive_entry,) = await Get(DigestEntries, Digest, zipped.digest)
    assert isinstance(archive_entry, FileEntry)
    outputs = await Get(
        Digest,
        CreateDigest(
            [
                archive_entry,
                FileEntry(paths.content_addressed, archive_entry.file_digest),
                FileContent(paths.manifest, document.to_json().encode()),
                FileContent(paths.sbom, sbom.content),
            ]
        ),
    )
    zip_details = f"{summary['zipped_size']:,} bytes  sha256 {summary['sha256_hex']}"
    return BuiltPackage(
        outputs,
        artifacts=(
            BuiltPackageArtifact(
                paths.archive,
                (f"  {zip_details}  ({platform.description}, handler {staged.handler})",),
            ),
            # The directory, not the file: `package` clears it first, so it holds only the
            # current build's copy instead of one per build ever made.
            BuiltPackageArtifact(paths.content_addressed_directory, (f"  {zip_details}",)),
            BuiltPackageArtifact(
                paths.manifest, (f"  manifest  filebase64sha256 {summary['sha256_base64']}",)
            ),
            BuiltPackageArtifact(paths.sbom, ("  CycloneDX SBOM",)),
        ),
    )


def rules():
    return (
        *collect_rules(),
        *faas_rules(),
        UnionRule(PackageFieldSet, LambdaFunctionFieldSet),
    )
