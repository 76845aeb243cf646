"""Assemble: parts and first-party code -> the archive, its manifest and SBOM, in `dist/`.

The merge copies the parts' compressed entries without recompressing and zips the first-party
code in the same process. The SBOM template depends on the distribution units' metadata alone, so
an edit of first-party code runs one process, that merge. Pants hands out process slots first
come, first served: the template asked for with the parts held back the compression of a large
unit that every merge waits for (ten numpy + pandas functions on 2 cores: parts done 1.06-1.28 s
after the resolve, against 1.23-1.44 s), and asked for after every part, it ended the goal while
the largest job's compression had left a core idle. So it is asked for once the other
compressions are done (`SbomTemplateRequest.after`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from pants.backend.python.util_rules.pex_requirements import (
    LoadedLockfile,
    LoadedLockfileRequest,
    Lockfile,
    Resolve,
)
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact
from pants.engine.addresses import Address
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
)
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets
from pants.option.global_options import GlobalOptions
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from lambda_rules import actions, contents, manifest, outputs
from lambda_rules.facts import Kind
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.plugin.steps.cache import linked_directories
from lambda_rules.plugin.steps.parts import (
    PART_FILE,
    STAGED_DIR,
    BytecodeCompiler,
    BytecodeCompilerRequest,
    PreparedUnit,
    PrepareUnitRequest,
    ZipPart,
    ZipPartGroupRequest,
    ZipParts,
    ZipPartsRequest,
    compression_jobs,
    jobs_before_a_free_core,
)
from lambda_rules.plugin.steps.stage import DistributionUnit, StagedLambda
from lambda_rules.plugin.steps.tool import LambdaZipTool, ZipperTool
from lambda_rules.plugin.steps.verify import LayerArchive, VerifiedLambda, VerifyLambdaRequest
from lambda_rules.plugin.subsystems.lambda_zip import LambdaZipSubsystem
from lambda_rules.plugin.target_types import (
    LambdaFunctionOutputPathField,
    LambdaImageOutputPathField,
    LambdaLayerOutputPathField,
)
from lambda_rules.zipper.summary import ZipTotals

logger = logging.getLogger(__name__)

# A sandbox directory per part or layer (immutable inputs), apart from any input file's path.
_PARTS_DIR_PREFIX = "__lambda_part_"
_LAYERS_DIR_PREFIX = "__lambda_layer_"
# Where the SBOM template's sandbox holds the units' metadata, and which files of theirs it reads.
_DISTRIBUTIONS_DIR = "distributions"


@dataclass(frozen=True)
class AssembleLambdaRequest:
    """Compress the staged units, merge them, and write the manifest and SBOM beside the zip."""

    address: Address
    kind: Kind
    platform: LambdaPlatform
    staged: StagedLambda
    output_path: str
    compile_bytecode: bool
    resolve: str
    layers: tuple[LayerArchive, ...] = ()


@dataclass(frozen=True)
class AssembledLambda:
    package: BuiltPackage
    archive: Digest
    sha256_hex: str
    sha256_base64: str
    unzipped_size: int


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
    totals: ZipTotals


@dataclass(frozen=True)
class SbomTemplateRequest:
    """The CycloneDX SBOM of the archive the distribution units go into, with wheel hashes from
    the resolve's lockfile and placeholders for the archive's digest and the target's name:
    neither first-party code nor the target is in its inputs, so an edit reuses the cached
    template and every function on the same distributions shares one. It reads only the units'
    `METADATA` and `WHEEL`, yet its process is asked for only once the compressions `after`
    are done (`parts.jobs_before_a_free_core`): it takes the core they leave while the last,
    largest, job runs. The API function's goal on 2 cores: 1.67-1.70 s, against 2.07-2.10 s
    asked for after every part, beside the merge (3 runs each, `--no-local-cache`)."""

    units: tuple[DistributionUnit, ...]
    kind: Kind
    platform: LambdaPlatform
    resolve: str
    layers: tuple[LayerArchive, ...] = ()
    after: tuple[ZipPartGroupRequest, ...] = ()


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


def _part_inputs(parts: tuple[ZipPart, ...]) -> tuple[dict[str, Digest], list[str]]:
    """The parts as immutable inputs, and the path of each part's zip in the sandbox."""
    directories = linked_directories(_PARTS_DIR_PREFIX, [part.digest for part in parts])
    return directories, [f"{directory}/{PART_FILE}" for directory in directories]


@rule(desc="Merge zip parts", level=LogLevel.DEBUG)
async def merge_zip_parts(
    request: MergeZipPartsRequest, tool: ZipperTool, subsystem: LambdaZipSubsystem
) -> DeterministicZip:
    """Assemble the archive by copying the parts' compressed entries: nothing is recompressed,
    except the first-party tree, which is zipped here rather than in a process of its own."""
    # The totals alone: every merge's entry list, parsed in Pants' own process, took 20 ms of it
    # (and its garbage collector's time) per function of an API fleet.
    totals_file = "zip-totals.json"
    part_digests, part_paths = _part_inputs(request.parts)
    tree_digest = EMPTY_DIGEST
    tree_args: tuple[str, ...] = ()
    if request.tree is not None:
        tree_digest = request.tree.digest
        tree_args = ("--tree", STAGED_DIR, "--workers", "1", *request.tree.build_args)
    result = await Get(
        ProcessResult,
        Process,
        tool.process(
            argv=(
                "merge",
                *part_paths,
                *tree_args,
                *subsystem.level_args(),
                "-o",
                request.output_filename,
                "--totals-json",
                totals_file,
            ),
            input_digest=tree_digest,
            immutable_input_digests=part_digests,
            output_files=(request.output_filename, totals_file),
            description=request.description,
            level=LogLevel.DEBUG,
        ),
    )
    totals, archive = await MultiGet(
        Get(DigestContents, DigestSubset(result.output_digest, PathGlobs([totals_file]))),
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([request.output_filename]))),
    )
    return DeterministicZip(archive, ZipTotals.from_json(totals[0].content))


@dataclass(frozen=True)
class ZipLambdaRequest:
    """Compress the units and merge their parts with the first-party code into the archive: a
    rule of its own, so the SBOM template is written while it runs."""

    parts: ZipPartsRequest
    first_party: DistributionUnit | None
    output_filename: str
    description: str


@dataclass(frozen=True)
class ZippedLambda:
    parts: ZipParts
    tree: PreparedUnit | None
    zipped: DeterministicZip


@rule(desc="Zip a Lambda package", level=LogLevel.DEBUG)
async def zip_lambda(request: ZipLambdaRequest) -> ZippedLambda:
    if request.first_party is None:
        parts, tree = await Get(ZipParts, ZipPartsRequest, request.parts), None
    else:
        parts, tree = await MultiGet(
            Get(ZipParts, ZipPartsRequest, request.parts),
            Get(PreparedUnit, PrepareUnitRequest(request.first_party, request.parts.bytecode)),
        )
    zipped = await Get(
        DeterministicZip,
        MergeZipPartsRequest(parts.parts, tree, request.output_filename, request.description),
    )
    return ZippedLambda(parts, tree, zipped)


@rule(desc="Write SBOM template", level=LogLevel.DEBUG)
async def write_sbom_template(request: SbomTemplateRequest, tool: LambdaZipTool) -> SbomTemplate:
    # The same requests as the parts step's: memoised, so this only waits for them.
    await MultiGet(Get(ZipParts, ZipPartGroupRequest, job) for job in request.after)
    lockfile = await Get(Lockfile, Resolve(request.resolve, use_entire_lockfile=True))
    loaded = await Get(LoadedLockfile, LoadedLockfileRequest(lockfile))
    output = "sbom-template.cdx.json"
    platform = request.platform
    # Every unit's `*.dist-info/METADATA` and `WHEEL`, in one tree laid out as the archive.
    metadata = await Get(Digest, MergeDigests(unit.metadata for unit in request.units))
    distributions = await Get(Digest, AddPrefix(metadata, _DISTRIBUTIONS_DIR))
    layer_digests = linked_directories(
        _LAYERS_DIR_PREFIX, [layer.digest for layer in request.layers]
    )
    layer_args = [
        arg
        for directory, layer in zip(layer_digests, request.layers)
        for arg in ("--layer-archive", f"{layer.contents.address}={directory}/{layer.path}")
    ]
    result = await Get(
        ProcessResult,
        Process,
        tool.process(
            argv=(
                "sbom",
                "--template",
                *((_DISTRIBUTIONS_DIR,) if request.units else ()),
                "--lockfile",
                loaded.lockfile_path,
                "--kind",
                request.kind.value,
                "--runtime",
                platform.runtime.name,
                "--architecture",
                platform.architecture,
                *layer_args,
                "-o",
                output,
            ),
            input_digest=await Get(Digest, MergeDigests([loaded.lockfile_digest, distributions])),
            immutable_input_digests=layer_digests,
            output_files=(output,),
            description=(
                f"Write SBOM template of a {request.kind.value} with {len(request.units)} "
                f"distributions ({platform.description})"
            ),
            level=LogLevel.DEBUG,
        ),
    )
    (content,) = await Get(DigestContents, Digest, result.output_digest)
    return SbomTemplate(content.content.decode("utf-8"))


# Each kind's output path field, and the ending of its default (an image is a folder).
_OUTPUT_PATH_FIELDS = (
    (LambdaFunctionOutputPathField, "zip"),
    (LambdaLayerOutputPathField, "zip"),
    (LambdaImageOutputPathField, None),
)


@rule(desc="Find Lambda output paths", level=LogLevel.DEBUG)
async def lambda_output_paths(all_targets: AllTargets) -> LambdaOutputPaths:
    """Once per run, not once per packaged target: `package ::` would otherwise be quadratic."""
    by_path: dict[str, list[str]] = {}
    for target in all_targets:
        for field, ending in _OUTPUT_PATH_FIELDS:
            if target.has_field(field):
                path = target[field].value_or_default(file_ending=ending)
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
        raise manifest.OutputPathClashError(
            f"{request.address} and {', '.join(clashing)} all write `{request.output_path}` in "
            "the dist directory; give each target its own `output_path`."
        )
    return UniqueOutputPath(request.output_path)


@rule(desc="Assemble Lambda package", level=LogLevel.DEBUG)
async def assemble_lambda(
    request: AssembleLambdaRequest, subsystem: LambdaZipSubsystem, global_options: GlobalOptions
) -> AssembledLambda:
    platform, staged, address = request.platform, request.staged, request.address
    contents.check_not_empty(
        str(address), request.kind, bool(staged.all_units), fix="give it `dependencies`."
    )
    bytecode = None
    if request.compile_bytecode:
        bytecode = await Get(BytecodeCompiler, BytecodeCompilerRequest(address, platform))
        bytecode = dataclasses.replace(bytecode, prefix=actions.load_root(request.kind))
    parts_request = ZipPartsRequest(staged.units, bytecode)
    parallelism = global_options.process_execution_local_parallelism
    jobs = compression_jobs(parts_request, parallelism)
    sbom_request = SbomTemplateRequest(
        staged.units,
        kind=request.kind,
        platform=platform,
        resolve=request.resolve,
        layers=request.layers,
        after=jobs_before_a_free_core(jobs, parallelism),
    )
    zip_request = ZipLambdaRequest(
        parts_request,
        staged.first_party,
        request.output_path,
        description=f"Zip {address} ({platform.description})",
    )
    zipped_lambda, sbom_template = await MultiGet(
        Get(ZippedLambda, ZipLambdaRequest, zip_request),
        Get(SbomTemplate, SbomTemplateRequest, sbom_request),
    )
    parts, tree, zipped = zipped_lambda.parts, zipped_lambda.tree, zipped_lambda.zipped
    summary = zipped.totals
    written = _package_outputs(request, parts, tree, summary, sbom_template)
    paths = written.paths
    (archive_entry,) = await Get(DigestEntries, Digest, zipped.digest)
    assert isinstance(archive_entry, FileEntry)
    dist_files = await Get(
        Digest,
        CreateDigest(
            [
                archive_entry,
                FileEntry(paths.content_addressed, archive_entry.file_digest),
                FileContent(paths.manifest, written.manifest),
                FileContent(paths.sbom, written.sbom),
            ]
        ),
    )
    package = _built_package(dist_files, written, summary, platform, staged.handler)
    if subsystem.verify:
        await Get(
            VerifiedLambda,
            VerifyLambdaRequest(
                address,
                dist_files,
                request.output_path,
                staged.sources,
                request.resolve,
                request.layers,
            ),
        )
    return AssembledLambda(
        package,
        zipped.digest,
        summary.sha256_hex,
        summary.sha256_base64,
        summary.unzipped_size,
    )


def _package_outputs(
    request: AssembleLambdaRequest,
    parts: ZipParts,
    tree: PreparedUnit | None,
    summary: ZipTotals,
    sbom_template: SbomTemplate,
) -> outputs.PackageOutputs:
    """The manifest and SBOM beside the zip, as `lambda-zip package` writes them; its warnings
    logged."""
    staged = request.staged
    compiled_by = next(
        (p.compiled_by for p in (*parts.parts, tree) if p is not None and p.compiled_by), None
    )
    written = outputs.package_outputs(
        what=str(request.address),
        kind=request.kind,
        platform=request.platform,
        output_path=request.output_path,
        summary=summary,
        handler=staged.handler,
        distributions=staged.distributions,
        sbom_template=sbom_template.content,
        layer_contents=[layer.contents for layer in request.layers],
        bytecode_compiled_by=compiled_by,
    )
    for warning in written.warnings:
        logger.warning(warning)
    return written


def _built_package(
    dist_files: Digest,
    written: outputs.PackageOutputs,
    summary: ZipTotals,
    platform: LambdaPlatform,
    handler: str | None,
) -> BuiltPackage:
    """What `package` writes to dist/, and the lines it prints for each file."""
    paths = written.paths
    zip_details = f"{summary.zipped_size:,} bytes  sha256 {summary.sha256_hex}"
    what = f"handler {handler}" if handler else "layer"
    return BuiltPackage(
        dist_files,
        artifacts=(
            BuiltPackageArtifact(
                paths.archive, (f"  {zip_details}  ({platform.description}, {what})",)
            ),
            # The directory, not the file: `package` clears it first, so it holds only the
            # current build's copy instead of one per build ever made.
            BuiltPackageArtifact(paths.content_addressed_directory, (f"  {zip_details}",)),
            BuiltPackageArtifact(
                paths.manifest, (f"  manifest  filebase64sha256 {summary.sha256_base64}",)
            ),
            BuiltPackageArtifact(paths.sbom, ("  CycloneDX SBOM",)),
        ),
    )


def rules():
    return collect_rules()
