"""Rules for `package` on `lambda_function` and `lambda_layer`:
resolve -> stage (split into distribution units) -> compile/compress each unit -> merge ->
manifest and SBOM.

Each step is thin and delegates its decisions to the Pants-free core (`platforms`, `staging`,
`units`, `layers`, `bytecode`, `manifest`, `sbom`, `zipper`). Resolving, compiling, compressing,
merging and the SBOM run as processes, so their results are cached locally and in a remote cache
and a second machine can skip them; a unit's process sees only that unit's files, so every
target and machine that resolves the same wheel for the same platform shares its part.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import (
    PexLayout,
    PythonRequirementsField,
    PythonResolveField,
)
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
    ReqStrings,
    _setup_pex_requirements,
)
from pants.backend.python.util_rules.pex_cli import PexCliProcess
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
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import (
    EMPTY_DIGEST,
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
from pants.engine.process import Process, ProcessExecutionFailure, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    AllTargets,
    Targets,
    TransitiveTargets,
    TransitiveTargetsRequest,
)
from pants.engine.unions import UnionRule
from pants.option.option_types import IntOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.util.strutil import help_text, softwrap

from lambda_rules import layers, manifest, sbom_identity, staging, units
from lambda_rules.platforms import LambdaPlatform, lambda_platform
from lambda_rules.target_types import (
    LambdaArchitectureField,
    LambdaCompileBytecodeField,
    LambdaExcludeDistributionsField,
    LambdaFunctionHandlerField,
    LambdaLayerDependencies,
    LambdaLayerOutputPathField,
    LambdaLayersField,
    LambdaFunctionOutputPathField,
    LambdaRuntimeField,
)

logger = logging.getLogger(__name__)

_PLUGIN_ROOT = Path(__file__).parent
_STAGED_DIR = "staged"
_PART_FILE = "part.zip"
# A sandbox directory per part or layer (immutable inputs), apart from any input file's path.
_PARTS_DIR_PREFIX = "__lambda_part_"
_LAYERS_DIR_PREFIX = "__lambda_layer_"
_PARALLEL_UNIT_BYTES = 8 << 20
_BYTECODE_SCRIPT = "__lambda_bytecode.py"
_TOOL_LOCKFILE_URL = "resource://lambda_rules/lambda-zip.lock"
# Where each process finds the tool; isolated (-I), without site-packages (-S): nothing of the
# interpreter's own environment can shadow the tool's pinned requirements.
_TOOL_DIR = "lambda_zip.pex"
_TOOL_INTERPRETER_FLAGS = ("-I", "-S", "-B")
_SITE_PACKAGES_DIR = "site-packages"
# With a remote cache, Pants 2.17 starts each process locally at once in case the lookup is slow
# (the default delay is 0). Starting means materialising the inputs, which `validate` left remote:
# for the tool's compile step, hundreds of downloads racing the lookup, which then took 0.55 s
# instead of 0.06 s. A miss still starts the process the moment it is known; only a lookup slower
# than this waits.
_REMOTE_CACHE_SPECULATION_DELAY_MILLIS = 1000


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
    compile_bytecode: LambdaCompileBytecodeField
    layers: LambdaLayersField
    exclude_distributions: LambdaExcludeDistributionsField

    @property
    def platform(self) -> LambdaPlatform:
        return lambda_platform(self.runtime.value, self.architecture.value)


@dataclass(frozen=True)
class LambdaLayerFieldSet(PackageFieldSet):
    required_fields = (LambdaLayerDependencies, LambdaRuntimeField)

    runtime: LambdaRuntimeField
    architecture: LambdaArchitectureField
    resolve: PythonResolveField
    output_path: LambdaLayerOutputPathField
    compile_bytecode: LambdaCompileBytecodeField
    exclude_distributions: LambdaExcludeDistributionsField

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
    first_party: bool = False


@dataclass(frozen=True)
class StageLambdaRequest:
    """What goes into a function's (`handler` set) or a layer's (`path_prefix` "python/") zip."""

    address: Address
    platform: LambdaPlatform
    exclude_distributions: tuple[str, ...]
    handler: LambdaFunctionHandlerField | None = None
    layers: tuple[layers.LayerContents, ...] = ()
    path_prefix: str = ""


@dataclass(frozen=True)
class StagedLambda:
    """Exactly the files of the deployment package, as first-party code and distribution units.

    `first_party_fingerprints`: package path (no layer prefix) -> content digest, so a function
    can leave out what its layers already hold."""

    first_party: DistributionUnit | None
    units: tuple[DistributionUnit, ...]
    handler: str | None
    first_party_fingerprints: tuple[tuple[str, str], ...]

    @property
    def distributions(self) -> tuple[staging.Distribution, ...]:
        return tuple(unit.distribution for unit in self.units if unit.distribution is not None)

    @property
    def all_units(self) -> tuple[DistributionUnit, ...]:
        return (self.first_party, *self.units) if self.first_party else self.units


@dataclass(frozen=True)
class BuiltLambdaLayer:
    """A packaged layer, and what a function that uses it must know about it."""

    package: BuiltPackage
    contents: layers.LayerContents
    archive: Digest
    archive_path: str


@dataclass(frozen=True)
class LambdaFunctionLayersRequest:
    field_set: LambdaFunctionFieldSet


@dataclass(frozen=True)
class LambdaFunctionLayers:
    layers: tuple[BuiltLambdaLayer, ...]


@dataclass(frozen=True)
class AssembleLambdaRequest:
    """Compress the staged units, merge them, and write the manifest and SBOM beside the zip."""

    address: Address
    kind: str
    platform: LambdaPlatform
    staged: StagedLambda
    output_path: str
    compile_bytecode: bool
    resolve: str
    layers: tuple[BuiltLambdaLayer, ...] = ()


@dataclass(frozen=True)
class AssembledLambda:
    package: BuiltPackage
    archive: Digest
    sha256_hex: str
    sha256_base64: str
    unzipped_size: int


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
class BytecodeCompilerRequest:
    address: Address
    platform: LambdaPlatform


@dataclass(frozen=True)
class BytecodeCompiler:
    """The runtime's CPython, and where Lambda loads the package from (for `co_filename`)."""

    python: str
    cache_tag: str
    prefix: str = "/var/task"


@dataclass(frozen=True)
class CompileBytecodeRequest:
    staged: Digest
    unit: DistributionUnit
    compiler: BytecodeCompiler
    cores: int


@dataclass(frozen=True)
class CompiledBytecode:
    """The unit's staged tree with `.pyc` beside its sources, and the compiler's exact version."""

    digest: Digest
    python_version: str


@dataclass(frozen=True)
class PrepareUnitRequest:
    unit: DistributionUnit
    bytecode: BytecodeCompiler | None = None


@dataclass(frozen=True)
class PreparedUnit:
    """A unit's files under `staged/`, with `.pyc` if asked; the `build` arguments that keep
    them; and the exact version of the CPython that compiled them."""

    digest: Digest
    build_args: tuple[str, ...] = ()
    compiled_by: str | None = None


@dataclass(frozen=True)
class ZipPartsRequest:
    units: tuple[DistributionUnit, ...]
    bytecode: BytecodeCompiler | None = None


@dataclass(frozen=True)
class ZipPart:
    """A canonical archive of one unit, named `part.zip` at the digest root; with bytecode, the
    exact version of the CPython that compiled it."""

    digest: Digest
    compiled_by: str | None = None


@dataclass(frozen=True)
class ZipParts:
    parts: tuple[ZipPart, ...]


@dataclass(frozen=True)
class MergeZipPartsRequest:
    """Merge the parts, and zip `tree` (first-party code, which changes on every edit) into the
    same archive in the same process."""

    parts: tuple[ZipPart, ...]
    tree: PreparedUnit | None
    output_filename: str
    description: str


@dataclass(frozen=True)
class DeterministicZip:
    digest: Digest
    summary: dict


@dataclass(frozen=True)
class SbomTemplateRequest:
    """The CycloneDX SBOM of the archive the distribution parts go into, with wheel hashes from
    the resolve's lockfile and placeholders for the archive's digest and the target's name:
    neither first-party code nor the target is in its inputs, so an edit reuses the cached
    template and every function on the same distributions shares one."""

    parts: tuple[ZipPart, ...]
    kind: str
    platform: LambdaPlatform
    resolve: str
    layers: tuple[BuiltLambdaLayer, ...] = ()


@dataclass(frozen=True)
class SbomTemplate:
    content: str


@dataclass(frozen=True)
class LambdaOutputPaths:
    """The dist path of every `lambda_function` and `lambda_layer` -> the targets writing it."""

    by_path: FrozenDict[str, tuple[str, ...]]


@dataclass(frozen=True)
class UniqueOutputPathRequest:
    address: Address
    output_path: str


@dataclass(frozen=True)
class UniqueOutputPath:
    path: str


@dataclass(frozen=True)
class LambdaZipTool:
    """The zipper as a plain directory (its sources and its installed requirements, all with
    bytecode), run by the interpreter it was resolved for.

    A pex venv would be created on first use on every fresh machine, about 2.5 s that no cache can
    share; this directory is an ordinary process output, so the local and remote caches hold it.
    Pants links it into each sandbox rather than copying it.
    """

    python: str
    digest: Digest
    # sys.path entries, relative to the sandbox: the tool's sources, then each requirement.
    path: tuple[str, ...]

    def process(
        self,
        argv: tuple[str, ...],
        *,
        immutable_input_digests: Mapping[str, Digest] = FrozenDict(),
        **kwargs: Any,
    ) -> Process:
        main = (
            f"import sys; sys.path[:0] = {list(self.path)!r}; "
            "from lambda_rules.zipper.cli import main; sys.exit(main())"
        )
        return Process(
            argv=(self.python, *_TOOL_INTERPRETER_FLAGS, "-c", main, *argv),
            immutable_input_digests={_TOOL_DIR: self.digest, **immutable_input_digests},
            remote_cache_speculation_delay_millis=_REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            **kwargs,
        )


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
    pex_request = await Get(
        PexRequest,
        PexFromTargetsRequest(
            [request.address],
            output_filename="lambda_requirements.pex",
            internal_only=False,
            include_source_files=False,
            complete_platforms=complete_platforms,
            hardcoded_interpreter_constraints=runtime_constraints,
            additional_args=wheels_only,
            additional_lockfile_args=wheels_only,
        ),
    )
    requirements = pex_request.requirements
    if isinstance(requirements, PexRequirements) and not (
        await Get(ReqStrings, PexRequirements, requirements)
    ).req_strings:
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
            output_directories=(_SITE_PACKAGES_DIR,),
            concurrency_available=setup.concurrency_available,
            description=f"Resolve requirements of {request.address} for {platform.description}",
        ),
    )
    delayed = dataclasses.replace(
        process, remote_cache_speculation_delay_millis=_REMOTE_CACHE_SPECULATION_DELAY_MILLIS
    )
    try:
        result = await Get(ProcessResult, Process, delayed)
    except ProcessExecutionFailure as e:
        raise staging.ResolveError(
            staging.explain_resolve_failure(
                str(request.address), platform, e.stderr.decode(errors="replace")
            )
        ) from e
    return LambdaDistributions(
        await Get(Digest, RemovePrefix(result.output_digest, _SITE_PACKAGES_DIR))
    )


@rule(desc="Stage Lambda package", level=LogLevel.DEBUG)
async def stage_lambda(request: StageLambdaRequest) -> StagedLambda:
    address = request.address
    platform = request.platform
    transitive_targets, distributions = await MultiGet(
        Get(TransitiveTargets, TransitiveTargetsRequest([address])),
        Get(LambdaDistributions, ResolveLambdaDistributionsRequest(address, platform)),
    )
    sources = await Get(
        StrippedPythonSourceFiles,
        PythonSourceFilesRequest(
            transitive_targets.closure, include_resources=True, include_files=True
        ),
    )
    source_snapshot = sources.stripped_source_files.snapshot
    distribution_entries, records, metadata, source_entries = await MultiGet(
        Get(DigestEntries, Digest, distributions.digest),
        Get(
            DigestContents,
            DigestSubset(distributions.digest, PathGlobs(["*.dist-info/RECORD"])),
        ),
        Get(
            DigestContents,
            DigestSubset(distributions.digest, PathGlobs(["*.dist-info/METADATA"])),
        ),
        Get(DigestEntries, Digest, source_snapshot.digest),
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
    if request.handler is not None:
        handler = await Get(
            ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(request.handler)
        )
        # Checked against everything the function sees, its layers' files included.
        await Get(
            CheckedLambdaHandler,
            CheckLambdaHandlerRequest(
                address,
                request.handler.value,
                handler,
                source_snapshot.digest,
                frozenset(all_paths),
            ),
        )

    plans = units.split_into_units(bundled_paths, {c.path: c.content for c in records})
    versions = {p.distribution.name: p.distribution.version for p in plans if p.distribution}
    left_out = _left_out_distributions(request, transitive_targets, metadata, versions)
    plans = tuple(p for p in plans if p.distribution is None or p.distribution.name not in left_out)
    source_files = {e.path: e for e in source_entries if isinstance(e, FileEntry)}
    fingerprints = {path: e.file_digest.fingerprint for path, e in source_files.items()}
    held_by_layers = layers.first_party_coverage(fingerprints, request.layers)

    first_party_files = [e for p, e in sorted(source_files.items()) if p not in held_by_layers]
    first_party_digest, *unit_digests = await MultiGet(
        Get(Digest, CreateDigest(first_party_files)),
        *(Get(Digest, CreateDigest([bundled[path] for path in plan.paths])) for plan in plans),
    )
    if request.path_prefix:
        first_party_digest, *unit_digests = await MultiGet(
            Get(Digest, AddPrefix(d, request.path_prefix))
            for d in (first_party_digest, *unit_digests)
        )
    return StagedLambda(
        # A layer of requirements only, or a function whose layers hold all its code: no part.
        first_party=DistributionUnit(
            None,
            first_party_digest,
            sum(e.file_digest.serialized_bytes_length for e in first_party_files),
            f"first-party code of {address}",
            first_party=True,
        )
        if first_party_files
        else None,
        units=tuple(
            DistributionUnit(
                plan.distribution,
                digest,
                sum(bundled[path].file_digest.serialized_bytes_length for path in plan.paths),
                f"{plan.label} for {platform.runtime.name} on {platform.architecture}"
                + (" in a layer" if request.path_prefix else ""),
            )
            for plan, digest in zip(plans, unit_digests)
        ),
        handler=f"{handler.module}.{handler.func}" if request.handler is not None else None,
        first_party_fingerprints=tuple(sorted(fingerprints.items())),
    )


def _left_out_distributions(
    request: StageLambdaRequest,
    transitive_targets: TransitiveTargets,
    metadata: DigestContents,
    versions: dict[str, str],
) -> set[str]:
    """What `exclude_distributions` and the function's layers keep out of the package."""
    left_out: set[str] = set()
    if request.exclude_distributions:
        environment = request.platform.marker_environment()
        requirement_strings = [
            str(requirement)
            for target in transitive_targets.closure
            if target.has_field(PythonRequirementsField)
            for requirement in target[PythonRequirementsField].value
        ]
        graph = layers.requirement_graph(
            {staging.distributions([c.path])[0].name: c.content for c in metadata},
            environment,
            requirement_strings,
        )
        left_out |= layers.excluded_closure(
            str(request.address),
            request.exclude_distributions,
            graph,
            roots=layers.direct_requirement_names(requirement_strings, environment),
        )
    if request.layers:
        kept = {name: version for name, version in versions.items() if name not in left_out}
        left_out |= layers.layer_coverage(
            str(request.address), request.platform, kept, request.layers
        )
    return left_out


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


@rule(desc="Build the lambda-zip tool", level=LogLevel.DEBUG)
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
                *(
                    _PLUGIN_ROOT / name
                    for name in ("__init__.py", "platforms.py", "sbom.py", "sbom_identity.py")
                ),
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
    # pex's loose layout: each requirement installed in a directory of its own under `.deps/`,
    # importable as it is. No venv to create (pex3 venv create costs ~2.7 s even warm).
    requirements = await Get(
        Pex,
        PexRequest(
            output_filename=_TOOL_DIR,
            internal_only=True,
            layout=PexLayout.LOOSE,
            **tool_environment,
        ),
    )
    assert requirements.python is not None, "a local PEX knows its interpreter"
    deps = f"{_TOOL_DIR}/.deps/"
    entries = await Get(DigestEntries, Digest, requirements.digest)
    installed = sorted(
        {
            entry.path[: entry.path.index("/", len(deps))]
            for entry in entries
            if entry.path.startswith(deps) and "/" in entry.path[len(deps) :]
        }
    )
    if not installed:
        raise staging.StagingError(
            f"the lambda-zip tool's PEX has no installed requirements under {deps}: this pex "
            "version lays out loose PEXes differently than lambda_rules expects."
        )
    # Unchecked-hash bytecode (PEP 552) stays valid whatever mtimes the files get in a sandbox, so
    # no run of the tool compiles its own modules again. A fixed hash seed keeps set constants in
    # one order (-S rather than -I, which would ignore PYTHONHASHSEED), so a machine that compiles
    # the tool itself gets the same digest, and the same cache keys downstream, as the others.
    compiled = await Get(
        ProcessResult,
        Process(
            argv=(
                requirements.python.path,
                "-S",
                "-m",
                "compileall",
                "-q",
                "--invalidation-mode=unchecked-hash",
                f"{_TOOL_DIR}/lambda_rules",
                *installed,
            ),
            input_digest=await Get(
                Digest,
                MergeDigests(
                    [requirements.digest, await Get(Digest, AddPrefix(sources, _TOOL_DIR))]
                ),
            ),
            output_directories=(f"{_TOOL_DIR}/lambda_rules", deps),
            env={"PYTHONHASHSEED": "0"},
            description="Compile the lambda-zip tool",
            remote_cache_speculation_delay_millis=_REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            level=LogLevel.DEBUG,
        ),
    )
    return LambdaZipTool(
        requirements.python.path,
        await Get(Digest, RemovePrefix(compiled.output_digest, _TOOL_DIR)),
        (_TOOL_DIR, *installed),
    )


@rule(desc="Find the runtime's CPython", level=LogLevel.DEBUG)
async def find_bytecode_compiler(request: BytecodeCompilerRequest) -> BytecodeCompiler:
    """The interpreter is found the way Pants finds interpreters (search path, pyenv)."""
    major, minor = request.platform.runtime.python_version
    try:
        python = await Get(
            PythonExecutable,
            InterpreterConstraints,
            InterpreterConstraints([request.platform.interpreter_constraint]),
        )
    except ProcessExecutionFailure as e:
        raise staging.StagingError(
            softwrap(
                f"""
                {request.address}: `compile_bytecode=True` needs CPython {major}.{minor}, the
                interpreter of the {request.platform.runtime.name} runtime, to compile `.pyc` that
                the runtime uses, and none was found on `[python-bootstrap].search_path`. Install
                it (e.g. `pyenv install {major}.{minor}`) or set `compile_bytecode=False`.
                """
            )
        ) from e
    return BytecodeCompiler(python.path, f"cpython-{major}{minor}")


def _level_args(subsystem: LambdaZipSubsystem) -> tuple[str, ...]:
    level = subsystem.compression_level
    return () if level is None else ("--level", str(level))


@rule(desc="Compile bytecode", level=LogLevel.DEBUG)
async def compile_bytecode(request: CompileBytecodeRequest) -> CompiledBytecode:
    """The unit's tree with reproducible `.pyc` beside its sources (see `bytecode.py`), and the
    compiler's exact version. A distribution's file that does not compile is skipped, as pip does
    at install time; a first-party one is an error."""
    unit, compiler = request.unit, request.compiler
    script = await Get(
        Digest,
        CreateDigest([FileContent(_BYTECODE_SCRIPT, (_PLUGIN_ROOT / "bytecode.py").read_bytes())]),
    )
    invalid = () if unit.first_party else ("--on-invalid", "skip")
    try:
        result = await Get(
            ProcessResult,
            Process(
                argv=(
                    compiler.python,
                    "-I",
                    "-B",
                    _BYTECODE_SCRIPT,
                    "compile",
                    "--root",
                    _STAGED_DIR,
                    "--prefix",
                    compiler.prefix,
                    "--workers",
                    "{pants_concurrency}",
                    *invalid,
                ),
                input_digest=await Get(Digest, MergeDigests([request.staged, script])),
                output_directories=(_STAGED_DIR,),
                description=f"Compile bytecode of {unit.description}",
                level=LogLevel.DEBUG,
                concurrency_available=request.cores,
                remote_cache_speculation_delay_millis=_REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            ),
        )
    except ProcessExecutionFailure as e:
        raise staging.StagingError(
            f"Cannot compile bytecode of {unit.description}:\n"
            f"{e.stderr.decode(errors='replace').strip()}\nFix the source or set "
            "`compile_bytecode=False`."
        ) from e
    return CompiledBytecode(result.output_digest, json.loads(result.stdout)["python"])


def _cores_for(unit: DistributionUnit) -> int:
    """Small units compile and zip in one process; large ones may use the cores Pants grants."""
    return 1 if unit.size < _PARALLEL_UNIT_BYTES else 8


@rule(desc="Prepare a unit for zipping", level=LogLevel.DEBUG)
async def prepare_unit(request: PrepareUnitRequest) -> PreparedUnit:
    unit = request.unit
    staged = await Get(Digest, AddPrefix(unit.digest, _STAGED_DIR))
    if not request.bytecode:
        return PreparedUnit(staged)
    compiled = await Get(
        CompiledBytecode,
        CompileBytecodeRequest(staged, unit, request.bytecode, _cores_for(unit)),
    )
    return PreparedUnit(
        compiled.digest,
        ("--include", f"*.{request.bytecode.cache_tag}.pyc"),
        compiled.python_version,
    )


@rule(desc="Compress a distribution unit", level=LogLevel.DEBUG)
async def zip_part(
    request: PrepareUnitRequest, tool: LambdaZipTool, subsystem: LambdaZipSubsystem
) -> ZipPart:
    """Compress one unit. The inputs are only the unit's files and the tool, so the result is
    shared by every function, layer and machine that resolves the same distribution."""
    unit = request.unit
    prepared = await Get(PreparedUnit, PrepareUnitRequest, request)
    result = await Get(
        ProcessResult,
        Process,
        tool.process(
            argv=(
                "build",
                _STAGED_DIR,
                "-o",
                _PART_FILE,
                "--max-workers",
                # Filled in by Pants with the cores it grants; not part of the cache key.
                "{pants_concurrency}",
                *prepared.build_args,
                *_level_args(subsystem),
            ),
            input_digest=prepared.digest,
            output_files=(_PART_FILE,),
            description=f"Compress {unit.description}",
            level=LogLevel.DEBUG,
            concurrency_available=_cores_for(unit),
        ),
    )
    return ZipPart(result.output_digest, prepared.compiled_by)


@rule(desc="Compress distribution units", level=LogLevel.DEBUG)
async def zip_parts(request: ZipPartsRequest) -> ZipParts:
    parts = await MultiGet(
        Get(ZipPart, PrepareUnitRequest(unit, request.bytecode)) for unit in request.units
    )
    return ZipParts(tuple(parts))


def _linked_directories(prefix: str, digests: list[Digest]) -> dict[str, Digest]:
    """Shared archives (parts, layers) as immutable inputs, a sandbox directory each.

    Pants writes an immutable input to disk once per run (once per pantsd) and links it into each
    sandbox: ten functions on numpy and pandas, or every edit of one, do not copy the same 30 MB
    into a sandbox each time. One directory per archive: two archives' files may share a name.
    """
    return {f"{prefix}{index}": digest for index, digest in enumerate(digests)}


def _part_inputs(parts: tuple[ZipPart, ...]) -> tuple[dict[str, Digest], list[str]]:
    """The parts as immutable inputs, and the path of each part's zip in the sandbox."""
    directories = _linked_directories(_PARTS_DIR_PREFIX, [part.digest for part in parts])
    return directories, [f"{directory}/{_PART_FILE}" for directory in directories]


@rule(desc="Merge zip parts", level=LogLevel.DEBUG)
async def merge_zip_parts(
    request: MergeZipPartsRequest, tool: LambdaZipTool, subsystem: LambdaZipSubsystem
) -> DeterministicZip:
    """Assemble the archive by copying the parts' compressed entries: nothing is recompressed,
    except the first-party tree, which is zipped here rather than in a process of its own."""
    summary_file = "zip-summary.json"
    part_digests, part_paths = _part_inputs(request.parts)
    tree_digest = EMPTY_DIGEST
    tree_args: tuple[str, ...] = ()
    if request.tree is not None:
        tree_digest = request.tree.digest
        tree_args = ("--tree", _STAGED_DIR, "--workers", "1", *request.tree.build_args)
    result = await Get(
        ProcessResult,
        Process,
        tool.process(
            argv=(
                "merge",
                *part_paths,
                *tree_args,
                *_level_args(subsystem),
                "-o",
                request.output_filename,
                "--summary-json",
                summary_file,
            ),
            input_digest=tree_digest,
            immutable_input_digests=part_digests,
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


@rule(desc="Write SBOM template", level=LogLevel.DEBUG)
async def write_sbom_template(request: SbomTemplateRequest, tool: LambdaZipTool) -> SbomTemplate:
    lockfile = await Get(Lockfile, Resolve(request.resolve, use_entire_lockfile=True))
    loaded = await Get(LoadedLockfile, LoadedLockfileRequest(lockfile))
    output = "sbom-template.cdx.json"
    platform = request.platform
    part_digests, part_paths = _part_inputs(request.parts)
    layer_digests = _linked_directories(
        _LAYERS_DIR_PREFIX, [layer.archive for layer in request.layers]
    )
    layer_args = [
        arg
        for directory, layer in zip(layer_digests, request.layers)
        for arg in ("--layer-archive", f"{layer.contents.address}={directory}/{layer.archive_path}")
    ]
    result = await Get(
        ProcessResult,
        Process,
        tool.process(
            argv=(
                "sbom",
                "--template",
                *part_paths,
                "--lockfile",
                loaded.lockfile_path,
                "--kind",
                request.kind,
                "--runtime",
                platform.runtime.name,
                "--architecture",
                platform.architecture,
                *layer_args,
                "-o",
                output,
            ),
            input_digest=loaded.lockfile_digest,
            immutable_input_digests={**part_digests, **layer_digests},
            output_files=(output,),
            description=(
                f"Write SBOM template of a {request.kind} with {len(request.parts)} "
                f"distributions ({platform.description})"
            ),
            level=LogLevel.DEBUG,
        ),
    )
    (content,) = await Get(DigestContents, Digest, result.output_digest)
    return SbomTemplate(content.content.decode("utf-8"))


@rule(desc="Find Lambda output paths", level=LogLevel.DEBUG)
async def lambda_output_paths(all_targets: AllTargets) -> LambdaOutputPaths:
    """Once per run, not once per packaged target: `package ::` would otherwise be quadratic."""
    by_path: dict[str, list[str]] = {}
    for target in all_targets:
        for field in (LambdaFunctionOutputPathField, LambdaLayerOutputPathField):
            if target.has_field(field):
                path = target[field].value_or_default(file_ending="zip")
                by_path.setdefault(path, []).append(str(target.address))
    return LambdaOutputPaths(FrozenDict((p, tuple(sorted(a))) for p, a in by_path.items()))


@rule(desc="Check Lambda output paths", level=LogLevel.DEBUG)
async def check_unique_output_path(
    request: UniqueOutputPathRequest, output_paths: LambdaOutputPaths
) -> UniqueOutputPath:
    """Two targets writing one path would overwrite each other's package: name both."""
    clashing = [
        address
        for address in output_paths.by_path.get(request.output_path, ())
        if address != str(request.address)
    ]
    if clashing:
        raise staging.StagingError(
            f"{request.address} and {', '.join(clashing)} all write `{request.output_path}` in "
            "the dist directory; give each target its own `output_path`."
        )
    return UniqueOutputPath(request.output_path)


@rule(desc="Assemble Lambda package", level=LogLevel.DEBUG)
async def assemble_lambda(request: AssembleLambdaRequest) -> AssembledLambda:
    platform, staged, address = request.platform, request.staged, request.address
    if not staged.all_units:
        raise staging.StagingError(
            f"{address}: the {request.kind} would hold no files; give it `dependencies`."
        )
    bytecode = None
    if request.compile_bytecode:
        bytecode = await Get(BytecodeCompiler, BytecodeCompilerRequest(address, platform))
        if request.kind == "layer":
            # Layer paths start with python/, and Lambda mounts the layer at /opt.
            bytecode = dataclasses.replace(bytecode, prefix="/opt")
    units_request = ZipPartsRequest(staged.units, bytecode)
    tree = None
    if staged.first_party is None:
        zip_parts = await Get(ZipParts, ZipPartsRequest, units_request)
    else:
        zip_parts, tree = await MultiGet(
            Get(ZipParts, ZipPartsRequest, units_request),
            Get(PreparedUnit, PrepareUnitRequest(staged.first_party, bytecode)),
        )
    parts = zip_parts.parts
    zipped, sbom_template = await MultiGet(
        Get(
            DeterministicZip,
            MergeZipPartsRequest(
                parts,
                tree,
                request.output_path,
                description=f"Zip {address} ({platform.description})",
            ),
        ),
        Get(
            SbomTemplate,
            SbomTemplateRequest(
                parts,
                kind=request.kind,
                platform=platform,
                resolve=request.resolve,
                layers=request.layers,
            ),
        ),
    )
    summary = zipped.summary
    layer_contents = [layer.contents for layer in request.layers]
    if layer_contents:
        layers.combined_size_check(str(address), summary["unzipped_size"], layer_contents)
    else:
        manifest.check_unzipped_size(summary["unzipped_size"], what=str(address))
    for warning in manifest.size_warnings(summary["zipped_size"]):
        logger.warning(f"{address}: {warning}")

    paths = manifest.ArtifactPaths.for_output(request.output_path, summary["sha256_hex"])
    sbom = sbom_identity.complete_sbom(
        sbom_template.content, summary["sha256_hex"], str(address)
    ).encode()
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
        sbom_sha256=hashlib.sha256(sbom).hexdigest(),
        kind=request.kind,
        bytecode_compiled_by=next(
            (p.compiled_by for p in (*parts, tree) if p is not None and p.compiled_by), None
        ),
        layers=tuple(layers.layer_manifest_entries(layer_contents)),
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
                FileContent(paths.sbom, sbom),
            ]
        ),
    )
    zip_details = f"{summary['zipped_size']:,} bytes  sha256 {summary['sha256_hex']}"
    what = f"handler {staged.handler}" if staged.handler else "layer"
    package = BuiltPackage(
        outputs,
        artifacts=(
            BuiltPackageArtifact(
                paths.archive, (f"  {zip_details}  ({platform.description}, {what})",)
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
    return AssembledLambda(
        package,
        zipped.digest,
        summary["sha256_hex"],
        summary["sha256_base64"],
        summary["unzipped_size"],
    )


@rule(desc="Build Lambda layer", level=LogLevel.DEBUG)
async def build_lambda_layer(
    field_set: LambdaLayerFieldSet, python_setup: PythonSetup
) -> BuiltLambdaLayer:
    platform = field_set.platform
    output_path = field_set.output_path.value_or_default(file_ending="zip")
    _, staged, _ = await MultiGet(
        Get(UniqueOutputPath, UniqueOutputPathRequest(field_set.address, output_path)),
        Get(
            StagedLambda,
            StageLambdaRequest(
                field_set.address,
                platform,
                tuple(field_set.exclude_distributions.value or ()),
                path_prefix=f"{layers.LAYER_PYTHON_DIR}/",
            ),
        ),
        # Built while the requirements resolve: on a fresh machine both wait on downloads.
        Get(LambdaZipTool),
    )
    assembled = await Get(
        AssembledLambda,
        AssembleLambdaRequest(
            field_set.address,
            "layer",
            platform,
            staged,
            output_path,
            field_set.compile_bytecode.value,
            field_set.resolve.normalized_value(python_setup),
        ),
    )
    contents = layers.LayerContents(
        address=str(field_set.address),
        runtime=platform.runtime.name,
        architecture=platform.architecture,
        distributions={d.name: d.version for d in staged.distributions},
        first_party=dict(staged.first_party_fingerprints),
        unzipped_size=assembled.unzipped_size,
        sha256_hex=assembled.sha256_hex,
        sha256_base64=assembled.sha256_base64,
    )
    return BuiltLambdaLayer(assembled.package, contents, assembled.archive, output_path)


@rule(desc="Package Lambda layer", level=LogLevel.DEBUG)
async def package_lambda_layer(field_set: LambdaLayerFieldSet) -> BuiltPackage:
    layer = await Get(BuiltLambdaLayer, LambdaLayerFieldSet, field_set)
    return layer.package


@rule(desc="Find a Lambda function's layers", level=LogLevel.DEBUG)
async def lambda_function_layers(request: LambdaFunctionLayersRequest) -> LambdaFunctionLayers:
    """`layers` are addresses, not dependencies: a layer's requirements must not join the
    function's resolve, only what it holds matters."""
    field_set = request.field_set
    addresses = await Get(
        Addresses,
        UnparsedAddressInputs(
            field_set.layers.value or (),
            owning_address=field_set.address,
            description_of_origin=f"the `layers` field of {field_set.address}",
        ),
    )
    targets = await Get(Targets, Addresses, addresses)
    not_layers = [str(t.address) for t in targets if not LambdaLayerFieldSet.is_applicable(t)]
    if not_layers:
        raise staging.StagingError(
            f"{field_set.address}: `layers` must name `lambda_layer` targets, but "
            f"{', '.join(not_layers)} is not one."
        )
    built = await MultiGet(
        Get(BuiltLambdaLayer, LambdaLayerFieldSet, LambdaLayerFieldSet.create(t)) for t in targets
    )
    return LambdaFunctionLayers(tuple(built))


@rule(desc="Package Lambda function", level=LogLevel.DEBUG)
async def package_lambda_function(
    field_set: LambdaFunctionFieldSet, python_setup: PythonSetup
) -> BuiltPackage:
    platform = field_set.platform
    output_path = field_set.output_path.value_or_default(file_ending="zip")
    _, function_layers = await MultiGet(
        Get(UniqueOutputPath, UniqueOutputPathRequest(field_set.address, output_path)),
        Get(LambdaFunctionLayers, LambdaFunctionLayersRequest(field_set)),
    )
    staged, _ = await MultiGet(
        Get(
            StagedLambda,
            StageLambdaRequest(
                field_set.address,
                platform,
                tuple(field_set.exclude_distributions.value or ()),
                handler=field_set.handler,
                layers=tuple(layer.contents for layer in function_layers.layers),
            ),
        ),
        # Built while the requirements resolve: on a fresh machine both wait on downloads.
        Get(LambdaZipTool),
    )
    assembled = await Get(
        AssembledLambda,
        AssembleLambdaRequest(
            field_set.address,
            "function",
            platform,
            staged,
            output_path,
            field_set.compile_bytecode.value,
            field_set.resolve.normalized_value(python_setup),
            function_layers.layers,
        ),
    )
    return assembled.package


def rules():
    return (
        *collect_rules(),
        *faas_rules(),
        UnionRule(PackageFieldSet, LambdaFunctionFieldSet),
        UnionRule(PackageFieldSet, LambdaLayerFieldSet),
    )
