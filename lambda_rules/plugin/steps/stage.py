"""Stage: a target's sources and distributions -> first-party code and distribution units.

Only what the target depends on goes in (source roots stripped); distributions lose pip,
setuptools, console scripts and `__pycache__` (`staging.py`), are split into one unit each by their
RECORD (`units.py`), and lose what `exclude_distributions` and the function's layers hold
(`layers.py`). The handler is checked statically here, against everything the function sees.
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
from pants.util.strutil import softwrap

from lambda_rules import layers, staging, units
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.plugin.steps.resolve import (
    LambdaDistributions,
    ResolveLambdaDistributionsRequest,
)
from lambda_rules.plugin.target_types import LambdaFunctionHandlerField

logger = logging.getLogger(__name__)


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
class CheckLambdaHandlerRequest:
    address: Address
    handler_field: str
    handler: ResolvedPythonFaaSHandler
    sources: Digest
    staged_paths: frozenset[str]


@dataclass(frozen=True)
class CheckedLambdaHandler:
    module_file: str


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
                distribution, and only one can be in the package: {", ".join(collisions)}.
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
                but neither {" nor ".join(candidates)} is in the package. Check the `handler`
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


def rules():
    return collect_rules()
