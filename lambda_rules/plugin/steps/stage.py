"""Stage: a target's sources and distributions -> first-party code and distribution units.

Only what the target depends on goes in (source roots stripped). What the package holds is decided
as for `lambda-zip package`: `units.split_distributions` leaves out pip, setuptools, console
scripts and `__pycache__` and splits the rest into one unit each by their RECORD (in the resolve's
process, once for every target on it), and `contents.plan_contents` leaves out what
`exclude_distributions` and the function's layers hold. The handler is checked statically here,
against everything the function sees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pants.backend.python.target_types import PythonRequirementsField
from pants.backend.python.util_rules.faas import (
    ResolvedPythonFaaSHandler,
    ResolvePythonFaaSHandlerRequest,
)
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.engine.addresses import Address
from pants.engine.fs import (
    EMPTY_DIGEST,
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileEntry,
    PathGlobs,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest
from pants.util.logging import LogLevel

from lambda_rules import contents, layers, units
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.plugin.steps.wheels import (
    LambdaDistributions,
    ResolveLambdaDistributionsRequest,
)
from lambda_rules.plugin.target_types import LambdaFunctionHandlerField
from lambda_rules.units import Distribution
from lambda_rules.zipper import pieces

logger = logging.getLogger(__name__)


# The name a distribution unit's archive, as the pieces the resolve wrote it in, has in every
# process that reads it: its digest alone decides their cache keys.
UNIT_ARCHIVE = f"unit.zip{pieces.SUFFIX}"


@dataclass(frozen=True)
class DistributionUnit:
    """The unit of caching. First-party code: its files at their package paths. A distribution:
    `UNIT_ARCHIVE`, its files stored at their paths below `path_prefix` (a layer's `python/`),
    and `metadata`, its `*.dist-info/METADATA` and `WHEEL` at their package paths."""

    distribution: Distribution | None
    digest: Digest
    size: int
    description: str
    first_party: bool = False
    path_prefix: str = ""
    metadata: Digest = EMPTY_DIGEST


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
    can leave out what its layers already hold. `sources`: every first-party file the target
    depends on (no prefix, none left out), what `verify` packages again from."""

    first_party: DistributionUnit | None
    units: tuple[DistributionUnit, ...]
    handler: str | None
    first_party_fingerprints: tuple[tuple[str, str], ...]
    sources: Digest

    @property
    def distributions(self) -> tuple[Distribution, ...]:
        return tuple(unit.distribution for unit in self.units if unit.distribution is not None)

    @property
    def all_units(self) -> tuple[DistributionUnit, ...]:
        return (self.first_party, *self.units) if self.first_party else self.units


@dataclass(frozen=True)
class SplitLambdaDistributions:
    """A resolve's units, as its process packed them: the same for every function and layer on
    that resolve, so read once for all of them."""

    split: units.SplitDistributions
    # Per unit: its archive as `UNIT_ARCHIVE`, its size unpacked, its dist-info metadata.
    archives: tuple[Digest, ...]
    sizes: tuple[int, ...]
    metadata: tuple[Digest, ...]
    # Each `*.dist-info/METADATA` path -> its content.
    metadata_contents: tuple[tuple[str, bytes], ...]


@rule(desc="Read Lambda distribution units", level=LogLevel.DEBUG)
async def split_lambda_distributions(
    distributions: LambdaDistributions,
) -> SplitLambdaDistributions:
    if distributions.digest == EMPTY_DIGEST:
        return SplitLambdaDistributions(units.SplitDistributions((), ()), (), (), (), ())
    entries, listing, metadata = await MultiGet(
        Get(DigestEntries, Digest, distributions.digest),
        Get(DigestContents, DigestSubset(distributions.digest, PathGlobs([units.UNITS_JSON]))),
        Get(
            DigestContents,
            DigestSubset(distributions.digest, PathGlobs([f"{units.METADATA_DIR}/*/METADATA"])),
        ),
    )
    files = {e.path: e for e in entries if isinstance(e, FileEntry)}
    listed = units.read_listing(listing[0].content)
    plans = tuple(unit.plan for unit in listed)

    def dist_info(plan: units.UnitPlan) -> list[FileEntry]:
        """The unit's files the packer also wrote under `units.METADATA_DIR`, at their own paths."""
        copies = ((path, f"{units.METADATA_DIR}/{path}") for path in plan.paths)
        return [FileEntry(path, files[copy].file_digest) for path, copy in copies if copy in files]

    # Unit i's archive is `<i>.zip.pieces/*` at the root.
    archives: dict[str, list[FileEntry]] = {}
    for path, entry in files.items():
        directory, _, piece = path.partition("/")
        if directory.endswith(pieces.SUFFIX):
            archives.setdefault(directory, []).append(
                FileEntry(f"{UNIT_ARCHIVE}/{piece}", entry.file_digest)
            )
    digests = await MultiGet(
        [
            *(
                Get(Digest, CreateDigest(archives[f"{i}.zip{pieces.SUFFIX}"]))
                for i in range(len(plans))
            ),
            *(Get(Digest, CreateDigest(dist_info(plan))) for plan in plans),
        ]
    )
    return SplitLambdaDistributions(
        units.split_of(listed),
        tuple(digests[: len(plans)]),
        tuple(unit.size for unit in listed),
        tuple(digests[len(plans) :]),
        tuple((c.path[len(units.METADATA_DIR) + 1 :], c.content) for c in metadata),
    )


@dataclass(frozen=True)
class CheckHandlerRequest:
    address: str
    handler: LambdaFunctionHandlerField
    visible_paths: frozenset[str]
    sources: Digest


@dataclass(frozen=True)
class CheckedHandler:
    """The handler as Lambda's setting names it (`module.function`)."""

    name: str


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
    source_digest = sources.stripped_source_files.snapshot.digest
    split, source_entries = await MultiGet(
        Get(SplitLambdaDistributions, LambdaDistributions, distributions),
        Get(DigestEntries, Digest, source_digest),
    )
    source_files = {e.path: e for e in source_entries if isinstance(e, FileEntry)}
    planned = contents.plan_contents(
        what=str(address),
        platform=platform,
        sources={path: e.file_digest.fingerprint for path, e in source_files.items()},
        distributions=split.split,
        metadata=dict(split.metadata_contents),
        requirements=[
            str(requirement)
            for target in transitive_targets.closure
            if target.has_field(PythonRequirementsField)
            for requirement in target[PythonRequirementsField].value
        ],
        exclude=request.exclude_distributions,
        layer_contents=request.layers,
    )
    for warning in planned.warnings:
        logger.warning(warning)
    handler = None
    if request.handler is not None:
        handler = await Get(
            CheckedHandler,
            CheckHandlerRequest(
                str(address), request.handler, planned.visible_paths, source_digest
            ),
        )

    first_party_files = [source_files[path] for path in planned.first_party]
    first_party_digest = await Get(Digest, CreateDigest(first_party_files))
    unit_metadata = [split.metadata[i] for i in _kept(planned, split)]
    if request.path_prefix:
        first_party_digest, *unit_metadata = await MultiGet(
            Get(Digest, AddPrefix(d, request.path_prefix))
            for d in (first_party_digest, *unit_metadata)
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
        units=_distribution_units(request, planned, split, unit_metadata),
        handler=handler.name if handler is not None else None,
        first_party_fingerprints=planned.first_party_fingerprints,
        sources=source_digest,
    )


@rule(desc="Check the Lambda handler", level=LogLevel.DEBUG)
async def check_handler(request: CheckHandlerRequest) -> CheckedHandler:
    """Checked against everything the function sees, its layers' files included."""
    handler = await Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(request.handler))
    spec = request.handler.value
    module_file = contents.handler_module_file(
        request.address,
        spec,
        handler.module,
        request.visible_paths,
        fix="Check the `handler` field, or add the module's target to `dependencies`.",
    )
    source = await Get(DigestContents, DigestSubset(request.sources, PathGlobs([module_file])))
    contents.check_handler_defines(
        request.address,
        spec,
        handler.func,
        module_file,
        source[0].content if source else None,
        fix="Fix the `handler` field or define the function.",
    )
    return CheckedHandler(f"{handler.module}.{handler.func}")


def _kept(planned: contents.PackageContents, split: SplitLambdaDistributions) -> list[int]:
    """The indexes of the resolve's units the plan keeps, in the plan's order."""
    index = {plan: i for i, plan in enumerate(split.split.units)}
    return [index[plan] for plan in planned.units]


def _distribution_units(
    request: StageLambdaRequest,
    planned: contents.PackageContents,
    split: SplitLambdaDistributions,
    unit_metadata: list[Digest],
) -> tuple[DistributionUnit, ...]:
    platform = request.platform
    return tuple(
        DistributionUnit(
            plan.distribution,
            split.archives[i],
            split.sizes[i],
            f"{plan.label} for {platform.runtime.name} on {platform.architecture}"
            + (" in a layer" if request.path_prefix else ""),
            path_prefix=request.path_prefix,
            metadata=metadata,
        )
        for plan, metadata, i in zip(planned.units, unit_metadata, _kept(planned, split))
    )


def rules():
    return collect_rules()
