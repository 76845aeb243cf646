"""Lambda layers and what a function leaves out: decisions on names, versions and sizes alone.

A layer is unzipped under `/opt`, and the Python runtime puts `/opt/python` (and
`/opt/python/lib/python3.X/site-packages`) on `sys.path` after the function's own root, so a
layer's files go under `python/`. A function that uses layers leaves out every distribution a
layer provides at the same version and every first-party file a layer already holds, and both
functions and layers can leave out distributions the runtime provides (boto3 and its
dependencies) with `exclude_distributions`, together with the dependencies only those need.

Everything here is a pure function of names, versions, metadata and sizes (no Pants imports), so
the rules stay thin and every decision is unit-tested on real wheel metadata.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import MAX_LAYERS_PER_FUNCTION, UNZIPPED_LIMIT_BYTES
from lambda_rules.manifest import ManifestLayer, PackageTooLargeError
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.units import canonical_name

if TYPE_CHECKING:
    from packaging.requirements import Requirement

# `packaging` and `email` are imported by the functions that parse metadata and requirements
# (names are made canonical by `units.canonical_name`, the same PEP 503 rule): a function
# without layers or exclusions needs neither, and a warm `lambda-zip package` would otherwise
# spend about a third of its time importing them.


def _requirements_module() -> Any:
    # Pants 2.17 runs on packaging 21.3, whose grammar uses pyparsing names that newer pyparsing
    # deprecates: importing it would print deprecation warnings on every Pants run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from packaging import requirements
    return requirements  # also imports packaging.markers, under the same filter


class LayerError(LambdaRulesError):
    """Layers or exclusions that cannot give a working deployment package."""


class CombinedSizeError(LayerError, PackageTooLargeError):
    """A function and its layers together unzip to more than Lambda accepts."""


# ---------------------------------------------------------------------------------------------
# Paths inside a layer


# ---------------------------------------------------------------------------------------------
# Requirements from wheel metadata


def _metadata_fields(metadata: bytes) -> tuple[str, list[str]]:
    from email.parser import BytesParser
    from email.policy import compat32

    message = BytesParser(policy=compat32).parsebytes(metadata, headersonly=True)
    name = message.get("Name") or "<a distribution without a Name>"
    return str(name), [str(value) for value in message.get_all("Requires-Dist") or []]


def _parse_requirement(value: str, owner: str) -> Requirement:
    requirements = _requirements_module()
    try:
        return requirements.Requirement(value)
    except requirements.InvalidRequirement as e:
        where = f"the METADATA of {owner} has a `Requires-Dist`" if owner else "a requirement"
        raise LayerError(
            f"{where} that cannot be parsed ({value!r}: {e}), so what it needs is unknown and "
            "no distribution can safely be left out. Drop `exclude_distributions`, or fix or "
            "report the broken requirement."
        ) from e


def _applies(
    requirement: Requirement, environment: Mapping[str, str], extras: Iterable[str]
) -> bool:
    if requirement.marker is None:
        return True
    from packaging.markers import UndefinedComparison, UndefinedEnvironmentName

    marker = requirement.marker
    # No extra ("") first: what the distribution needs when installed plainly.
    candidates = [""]
    for extra in extras:
        candidates += [extra, canonical_name(extra)]
    for extra in candidates:
        try:
            if marker.evaluate({**environment, "extra": extra}):
                return True
        except (UndefinedComparison, UndefinedEnvironmentName):
            # A marker that cannot be judged (a version compared as a string): keep the edge,
            # so nothing a distribution may need is left out on a guess.
            return True
    return False


def direct_requirement_names(
    requirements: Iterable[str], marker_environment: Mapping[str, str]
) -> set[str]:
    """Canonical names of requirement strings (a target's own `pydantic>=2`, `boto3[crt]`) that
    apply on the Lambda platform: the roots of `excluded_closure`."""
    return {
        canonical_name(requirement.name)
        for requirement in (_parse_requirement(value, "") for value in requirements)
        if _applies(requirement, marker_environment, ())
    }


def requirement_graph(
    metadata_by_distribution: Mapping[str, bytes],
    marker_environment: Mapping[str, str],
    root_requirements: Iterable[str] = (),
) -> dict[str, set[str]]:
    """Each bundled distribution's canonical name -> the names it requires, extras included.

    An extra counts when a root requirement (`foo[bar]`) or another bundled distribution asks for
    it, so `foo[bar]`'s dependencies are edges of `foo`. Names outside the bundle are dropped from
    the edges: nothing to leave out there.
    """
    parsed: dict[str, list[Requirement]] = {}
    for key, metadata in metadata_by_distribution.items():
        name, values = _metadata_fields(metadata)
        parsed[canonical_name(key)] = [_parse_requirement(v, name) for v in values]
    wanted_extras: dict[str, set[str]] = {name: set() for name in parsed}
    for value in root_requirements:
        requirement = _parse_requirement(value, "")
        name = canonical_name(requirement.name)
        if name in wanted_extras and _applies(requirement, marker_environment, ()):
            wanted_extras[name] |= set(requirement.extras)
    while True:
        graph: dict[str, set[str]] = {}
        asked: dict[str, set[str]] = {name: set(extras) for name, extras in wanted_extras.items()}
        for name, requirements in parsed.items():
            graph[name] = set()
            for requirement in requirements:
                if not _applies(requirement, marker_environment, wanted_extras[name]):
                    continue
                target = canonical_name(requirement.name)
                if target in parsed and target != name:
                    graph[name].add(target)
                    asked[target] |= set(requirement.extras)
                elif target == name:
                    # `pkg[all]` requiring `pkg[a]`: the same distribution with more extras.
                    asked[name] |= set(requirement.extras)
        if asked == wanted_extras:
            return graph
        wanted_extras = asked


# ---------------------------------------------------------------------------------------------
# exclude_distributions


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    import difflib  # only for a message

    close = difflib.get_close_matches(canonical_name(name), sorted(candidates), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(f'`{c}`' for c in close)}?)" if close else ""


def _reachable(
    starts: Iterable[str], graph: Mapping[str, Iterable[str]], blocked: set[str]
) -> set[str]:
    seen: set[str] = set()
    pending = [s for s in starts if s in graph and s not in blocked]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(d for d in graph[name] if d in graph and d not in blocked and d not in seen)
    return seen


def excluded_closure(
    address: str,
    excluded: Iterable[str],
    bundled: Mapping[str, Iterable[str]],
    roots: Iterable[str] = (),
) -> set[str]:
    """The distributions to leave out of `address`'s package for its `exclude_distributions`.

    `bundled` maps each distribution the package would hold (canonical name) to the names it
    requires (`requirement_graph`); `roots` are the distributions the target's own code requires
    directly. Left out: every excluded name, and every distribution reachable from one that
    nothing kept needs, i.e. that neither a root nor a kept distribution reaches without passing
    through an excluded one. A root that is not itself excluded is always kept. Names are
    compared canonically (`Boto3`, `python_dateutil`); a name the package does not hold is an
    error, so a typo never passes silently.
    """
    graph: dict[str, set[str]] = {
        canonical_name(name): {canonical_name(d) for d in deps} for name, deps in bundled.items()
    }
    typed = list(dict.fromkeys(excluded))
    unknown = [name for name in typed if canonical_name(name) not in graph]
    if unknown:
        contents = ", ".join(sorted(graph)) or "none"
        details = ", ".join(f"`{name}`{_did_you_mean(name, graph)}" for name in unknown)
        what = "a distribution" if len(unknown) == 1 else "distributions"
        raise LayerError(
            f"{address}: `exclude_distributions` names {what} that the package does not hold: "
            f"{details}. It holds: {contents}. Fix the spelling, or remove the name if the "
            "package no longer needs it."
        )
    dropped_by_name: set[str] = {canonical_name(name) for name in typed}
    reachable = _reachable(dropped_by_name, graph, blocked=set())
    seeds = ({canonical_name(r) for r in roots} | (set(graph) - reachable)) - dropped_by_name
    kept = _reachable(seeds, graph, blocked=dropped_by_name)
    return set(graph) - kept


# ---------------------------------------------------------------------------------------------
# Layers of a function


class FrozenMapping(Mapping[str, Any]):
    """A read-only, hashable mapping (Pants requires hashable rule inputs and outputs)."""

    __slots__ = ("_items", "_dict")

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        pairs = dict(items.items() if isinstance(items, Mapping) else items)
        self._items = tuple(sorted(pairs.items()))
        self._dict = dict(self._items)

    def __getitem__(self, key: str) -> Any:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMapping):
            return self._items == other._items
        return isinstance(other, Mapping) and self._dict == dict(other)

    def __repr__(self) -> str:
        return f"FrozenMapping({self._dict!r})"


@dataclass(frozen=True)
class LayerContents:
    """What a built `lambda_layer` holds, as a function that uses it needs to know.

    `distributions`: canonical name -> version of every bundled distribution. `first_party`:
    package path (without the `python/` prefix) -> a fingerprint of its content (e.g. the file's
    sha256), for the layer's first-party sources, resources and files. `unzipped_size`,
    `sha256_hex`, `sha256_base64`: of the layer's archive.
    """

    address: str
    runtime: str
    architecture: str
    distributions: Mapping[str, str]
    first_party: Mapping[str, str]
    unzipped_size: int
    sha256_hex: str
    sha256_base64: str

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "distributions",
            FrozenMapping({canonical_name(n): v for n, v in self.distributions.items()}),
        )
        object.__setattr__(self, "first_party", FrozenMapping(self.first_party))

    @property
    def first_party_paths(self) -> frozenset[str]:
        return frozenset(self.first_party)

    def manifest_entry(self) -> ManifestLayer:
        return ManifestLayer(self.address, self.sha256_hex, self.sha256_base64)


def _same_version(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def layer_coverage(
    function_address: str,
    function_platform: LambdaPlatform,
    function_distributions: Mapping[str, str],
    layers: Sequence[LayerContents],
) -> set[str]:
    """The function's distributions (canonical names) that its layers provide at the same version:
    the ones to leave out of its package.

    Every problem is reported at once: more layers than Lambda allows, a layer built for another
    runtime or architecture, a distribution the function needs at another version than a layer
    holds (the function's copy would shadow the layer's, under code in the layer that was
    resolved against the other version: one version must serve both).
    """
    problems = []
    if len(layers) > MAX_LAYERS_PER_FUNCTION:
        problems.append(
            f"it uses {len(layers)} layers ({', '.join(layer.address for layer in layers)}), but "
            f"Lambda allows at most {MAX_LAYERS_PER_FUNCTION}: merge some of them."
        )
    runtime, architecture = function_platform.runtime.name, function_platform.architecture
    for layer in layers:
        if (layer.runtime, layer.architecture) != (runtime, architecture):
            problems.append(
                f"its layer {layer.address} is built for {layer.runtime} on "
                f"{layer.architecture}, but {function_address} runs on {runtime} on "
                f"{architecture}: give {layer.address} the same `runtime` and `architecture` "
                f"as {function_address}, or use another layer."
            )
    wanted = {canonical_name(n): v for n, v in function_distributions.items()}
    provided: set[str] = set()
    for name, version in sorted(wanted.items()):
        for layer in layers:
            held = layer.distributions.get(name)
            if held is None:
                continue
            if _same_version(held, version):
                provided.add(name)
            else:
                problems.append(
                    f"it needs {name} {version}, but its layer {layer.address} holds {name} "
                    f"{held}: pin one version of {name} for both {function_address} and "
                    f"{layer.address} (the same resolve, or the same pin in both lockfiles), "
                    f"or leave {name} out of {layer.address} with `exclude_distributions`."
                )
    if problems:
        raise LayerError(
            f"{function_address}: cannot use its layers:\n" + "\n".join(f"- {p}" for p in problems)
        )
    return provided


def first_party_coverage(
    function_first_party: Mapping[str, str], layers: Sequence[LayerContents]
) -> set[str]:
    """The function's first-party package paths that a layer already holds with the same content
    fingerprint: the ones to leave out. A file whose content differs stays in the function, which
    comes first on `sys.path`, so the function keeps running the code it was built from."""
    return {
        path
        for path, fingerprint in function_first_party.items()
        if any(layer.first_party.get(path) == fingerprint for layer in layers)
    }


def combined_size_check(
    function_address: str, function_unzipped: int, layers: Sequence[LayerContents]
) -> None:
    """Lambda's 250 MB unzipped limit counts the function and all its layers together."""
    total = function_unzipped + sum(layer.unzipped_size for layer in layers)
    if total <= UNZIPPED_LIMIT_BYTES:
        return
    parts = [f"  {function_address} (function): {function_unzipped:,} bytes"] + [
        f"  {layer.address} (layer): {layer.unzipped_size:,} bytes" for layer in layers
    ]
    raise CombinedSizeError(
        f"{function_address}: the function and its layers unzip to {total:,} bytes together, "
        f"above Lambda's limit of {UNZIPPED_LIMIT_BYTES:,} bytes:\n" + "\n".join(parts) + "\n"
        "Drop dependencies, leave out what the runtime provides with `exclude_distributions`, "
        "or build the function as a container image, up to 10 GB: a `lambda_image` target, or "
        "`lambda-zip image`."
    )


def layer_manifest_entries(layers: Sequence[LayerContents]) -> list[ManifestLayer]:
    """The `layers` list of a function's manifest, in the order of its `layers` field."""
    return [layer.manifest_entry() for layer in layers]
