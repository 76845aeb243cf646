"""What goes into one deployment package, decided once for both front ends.

The Pants rules and `lambda-zip package` resolve, read sources and write files in their own ways,
split the resolve with `units.split_distributions` (once per resolve: the rules inside the process
that lays it out) and hand the same facts to `plan_contents` (first-party paths with their
content digests, the split, the METADATA, the requirements asked for, exclusions and layers).
What it returns (first-party files, one unit per distribution, warnings) is what both compress
and merge, so the two give the same archive. No Pants imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from lambda_rules import layers, staging, units
from lambda_rules.facts import Kind
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.units import Distribution


@dataclass(frozen=True)
class PackageContents:
    """The files of a package: first-party paths and distribution units, before any prefix."""

    first_party: tuple[str, ...]
    units: tuple[units.UnitPlan, ...]
    # Every first-party path (layers' included) -> its content's sha256, for functions that use
    # this package as a layer.
    first_party_fingerprints: tuple[tuple[str, str], ...]
    # All paths the function sees (its own and its distributions'), for the handler check.
    visible_paths: frozenset[str]
    warnings: tuple[str, ...]

    @property
    def distributions(self) -> tuple[Distribution, ...]:
        return tuple(u.distribution for u in self.units if u.distribution is not None)


def plan_contents(
    *,
    what: str,
    platform: LambdaPlatform,
    sources: Mapping[str, str],
    distributions: units.SplitDistributions,
    metadata: Mapping[str, bytes],
    requirements: Sequence[str] = (),
    exclude: Sequence[str] = (),
    layer_contents: Sequence[layers.LayerContents] = (),
) -> PackageContents:
    """Decide the package's files. `what` names the target in messages; `sources` maps each
    first-party path (source root stripped) to its content's sha256; `metadata` maps each
    `*.dist-info/METADATA` path of the resolve to its content."""
    bundled = distributions.bundled
    visible = [*sources, *bundled]
    warnings = tuple(
        f"{what}: the paths {', '.join(group)} differ only by case; they collide when the "
        "package is unzipped on a case-insensitive file system (macOS, Windows)."
        for group in staging.case_collisions(visible)
    )
    plans = distributions.units
    versions = {p.distribution.name: p.distribution.version for p in plans}
    left_out = _left_out_distributions(
        what, platform, metadata, versions, requirements, exclude, layer_contents
    )
    kept = tuple(p for p in plans if p.distribution.name not in left_out)
    # Only what the package itself would hold collides: a distribution its layers hold (or that
    # is excluded) is not in it, and a first-party file may shadow one of that layer's files.
    collisions = staging.path_collisions(sources, [path for p in kept for path in p.paths])
    if collisions:
        raise staging.StagingError(
            f"{what}: these paths come both from first-party sources and from a third-party "
            f"distribution, and only one can be in the package: {', '.join(collisions)}. "
            "Rename the first-party module or drop the requirement."
        )
    held_by_layers = layers.first_party_coverage(dict(sources), layer_contents)
    return PackageContents(
        first_party=tuple(sorted(p for p in sources if p not in held_by_layers)),
        units=kept,
        first_party_fingerprints=tuple(sorted(sources.items())),
        visible_paths=frozenset(visible),
        warnings=warnings,
    )


def _left_out_distributions(
    what: str,
    platform: LambdaPlatform,
    metadata: Mapping[str, bytes],
    versions: Mapping[str, str],
    requirements: Sequence[str],
    exclude: Sequence[str],
    layer_contents: Sequence[layers.LayerContents],
) -> set[str]:
    """What `exclude_distributions` and the function's layers keep out of the package."""
    left_out: set[str] = set()
    if exclude:
        environment = platform.marker_environment()
        graph = layers.requirement_graph(
            {units.distributions([path])[0].name: content for path, content in metadata.items()},
            environment,
            requirements,
        )
        left_out |= layers.excluded_closure(
            what,
            exclude,
            graph,
            roots=layers.direct_requirement_names(requirements, environment),
        )
    if layer_contents:
        kept = {name: version for name, version in versions.items() if name not in left_out}
        left_out |= layers.layer_coverage(what, platform, kept, layer_contents)
    return left_out


def check_not_empty(what: str, kind: Kind, holds_files: bool, *, fix: str) -> None:
    """A package must hold something; `fix` says how to give it files in the front end's own
    terms."""
    if not holds_files:
        raise staging.StagingError(f"{what}: the {kind.value} would hold no files; {fix}")


def handler_module_file(
    what: str, handler: str, module: str, visible: Iterable[str], *, fix: str
) -> str:
    """The file that must define the handler's module: it must be in the package. `fix` says
    what to do in the front end's own terms."""
    candidates = staging.handler_module_candidates(module)
    found = next((p for p in candidates if p in set(visible)), None)
    if found is None:
        raise staging.StagingError(
            f"{what}: the handler `{handler}` is in module `{module}`, but neither "
            f"{' nor '.join(candidates)} is in the package. {fix}"
        )
    return found


def check_handler_defines(
    what: str, handler: str, function: str, module_file: str, source: bytes | None, *, fix: str
) -> None:
    """The handler's module must be able to define the function (only a certain absence is an
    error). A module from a third-party distribution (`source` None) is not checked."""
    if source is not None and not staging.module_may_define(source, function, filename=module_file):
        raise staging.StagingError(
            f"{what}: the handler `{handler}` names function `{function}`, but `{module_file}` "
            f"defines no top-level `{function}`. {fix}"
        )
