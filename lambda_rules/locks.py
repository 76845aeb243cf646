"""Locked wheels out of a lock: the typed set of locked packages every lock format is read into
(`lock_formats`), and the wheels a set of requirements needs on one Lambda platform chosen from
it (no Pants imports).

Choosing is what an installer does with a lock, on the platform's own terms: the requirements'
transitive closure, with markers and extras evaluated in the runtime's marker environment
(`LambdaPlatform.marker_environment`), then, per distribution, the wheel whose tag ranks first
in `LambdaPlatform.compatible_tags` (pip's and pex's order). Wheels only: an sdist would run its
build here and could give a wheel for this machine instead of for Lambda.
"""

from __future__ import annotations

import dataclasses
import functools
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from lambda_rules.errors import LambdaRulesError
from lambda_rules.platforms import WheelPlatform
from lambda_rules.units import canonical_name

if TYPE_CHECKING:  # imported where used: a warm `lambda-zip package` needs only LockedWheel
    from packaging.markers import Marker
    from packaging.requirements import Requirement


# An interpreter constraint: an implementation's name, then a PEP 440 range (pex, Pants).
_CONSTRAINT = re.compile(r"([A-Za-z]*)(.*)", re.DOTALL)
# A marker's `extra == "name"` term, either way round (PEP 508 quotes: ' or ").
_EXTRA_TERM = re.compile(
    r"""\bextra\s*==\s*(?:'([^']*)'|"([^"]*)")|(?:'([^']*)'|"([^"]*)")\s*==\s*extra\b"""
)


class LockError(LambdaRulesError):
    """A lock that cannot be read, or that cannot satisfy the requirements on the platform."""


@dataclass(frozen=True)
class LockedWheel:
    """One wheel a lock pins: where it is and what its bytes must hash to."""

    name: str
    version: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return file_name(self.url)


def file_name(url: str) -> str:
    return posixpath.basename(unquote(urlsplit(url).path))


@dataclass(frozen=True)
class LockedDependency:
    """An edge of the lock's graph: `name[extras]` where `marker` holds (`version`: a uv fork's)."""

    name: str
    extras: frozenset[str] = frozenset()
    marker: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    wheels: tuple[LockedWheel, ...]
    # None when the lock has no graph (pylock.toml may not): its `marker` decides, as in PEP 751.
    dependencies: tuple[LockedDependency, ...] | None
    # Per extra, its additional dependencies (uv.lock's `optional-dependencies`).
    extras: tuple[tuple[str, tuple[LockedDependency, ...]], ...]
    marker: str | None = None
    # The sdists' file names: never installed, named in the error when no wheel fits.
    sdists: tuple[str, ...] = ()
    # A pex lock of one resolve per platform (`pex3 lock create --platform ...`): that resolve's
    # platform tag (`cp312-cp312-manylinux_2_17_x86_64`); None in a universal lock.
    platform_tag: str | None = None


@dataclass(frozen=True)
class Lock:
    path: str
    format: str
    packages: tuple[LockedPackage, ...]
    # The Pythons the lock was made for, any of which may hold: PEP 440 specifiers, or pex's
    # interpreter constraints (`CPython<3.15,>=3.9`). Its markers were settled for these only
    # (uv simplifies them by `requires-python`), so it says nothing true of another Python.
    requires_python: tuple[str, ...] = ()
    # Markers one of which must hold where the lock is used (PEP 751's `environments`, uv's
    # `supported-markers`); none: anywhere.
    environments: tuple[str, ...] = ()

    def named(self, name: str) -> list[LockedPackage]:
        wanted = canonical_name(name)
        return [p for p in self.packages if p.name == wanted]


def _requirement(what: str, text: str) -> tuple[LockedDependency, Any]:
    """A requirement of the target's as an edge into the lock, and its version specifier."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        raise LockError(f"{what}: invalid requirement {text!r}: {error}") from None
    return dependency_of(requirement), requirement.specifier


def dependency_of(requirement: Requirement) -> LockedDependency:
    return LockedDependency(
        canonical_name(requirement.name),
        normalized_extras(requirement.extras),
        str(requirement.marker) if requirement.marker else None,
    )


def normalized_extras(names: Iterable[str]) -> frozenset[str]:
    """Extras compared as PEP 685 compares them (pip and uv too): `My_Extra` is `my-extra`."""
    return frozenset(canonical_name(name) for name in names)


def select_wheels(
    lock: Lock,
    requirements: Sequence[str],
    platform: WheelPlatform,
    *,
    what: str,
    transitive: bool = True,
) -> tuple[LockedWheel, ...]:
    """The wheels `requirements` need on `platform`, one per distribution, sorted by name; with
    `transitive` False exactly the distributions named. Raises `LockError` naming what is
    missing and what to do."""
    try:
        return _select(lock, requirements, platform, what, transitive)
    except _BadMarker as bad:
        raise LockError(
            f"{what}: the lock {lock.path} holds a marker this tool cannot evaluate, "
            f"{bad.text!r} ({bad.error}); PEP 751's `extras` and `dependency_groups` markers are "
            "not supported: export the lock with the extras and groups the function needs"
        ) from None


def _select(
    lock: Lock,
    requirements: Sequence[str],
    platform: WheelPlatform,
    what: str,
    transitive: bool,
) -> tuple[LockedWheel, ...]:
    environment = platform.marker_environment()
    # Ranked once per choice: the platform's tags number about a thousand.
    ranks = {str(tag): rank for rank, tag in enumerate(platform.compatible_tags())}
    _check_made_for(lock, environment, platform, what)
    lock = _platform_resolve(lock, ranks, platform, what)
    chosen: dict[str, LockedPackage] = {}
    # Each chosen distribution's first dependent (or its requirement), for messages.
    via_of: dict[str, str] = {}
    # What was expanded already, with which extras: a lock's graph may have cycles.
    expanded: set[tuple[str, frozenset[str]]] = set()
    parsed = [(_requirement(what, text), text) for text in requirements]
    specifiers: dict[str, Any] = {}
    for (dependency, specifier), _ in parsed:  # `a<2` and `a[x]` both hold, as pip reads them
        if _applies(dependency.marker, environment, ()):
            specifiers[dependency.name] = specifier & specifiers.get(dependency.name, specifier)
    requirement_names = {dependency.name for (dependency, _), _ in parsed}
    queue = [(dependency, text) for (dependency, _), text in parsed]
    while queue:
        dependency, via = queue.pop(0)
        if not _applies(dependency.marker, environment, ()):
            continue
        if dependency.name not in requirement_names and _excluded(lock, dependency, environment):
            continue
        package = _locked(lock, dependency, specifiers.get(dependency.name), environment, what, via)
        previous = chosen.setdefault(package.name, package)
        via_of.setdefault(package.name, via)
        if previous.version != package.version:
            raise LockError(
                f"{what}: the lock {lock.path} pins {package.name} at both {previous.version} and "
                f"{package.version} for {platform.description}; make one lock per platform"
            )
        if transitive and (package.name, dependency.extras) not in expanded:
            expanded.add((package.name, dependency.extras))
            queue.extend((edge, package.name) for edge in _edges(package, dependency, environment))
    if transitive and any(p.dependencies is None for p in lock.packages):
        for package in lock.packages:
            if _applies(package.marker, environment, ()):
                chosen.setdefault(package.name, package)
    return tuple(
        _best_wheel(lock, chosen[name], platform, ranks, what, via_of.get(name, "the lock"))
        for name in sorted(chosen)
    )


def _check_made_for(
    lock: Lock, environment: Mapping[str, str], platform: WheelPlatform, what: str
) -> None:
    """A lock made for other Pythons or environments is refused: its markers were settled for
    those alone."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    version = environment["python_full_version"]
    allowed = []
    for constraint in lock.requires_python:
        implementation, specifier = _implementation(constraint)
        try:
            allowed.append(
                implementation.lower() == "cpython" and version in SpecifierSet(specifier)
            )
        except InvalidSpecifier:
            raise LockError(
                f"{lock.path}: malformed {lock.format}: its Python {constraint!r} is not a "
                "version range"
            ) from None
    if allowed and not any(allowed):
        raise LockError(
            f"{what}: the lock {lock.path} is for Python {' or '.join(lock.requires_python)}, "
            f"not {platform.description}'s {version}; lock again with the runtime's Python in "
            "range (`requires-python`, or Pants' `interpreter_constraints`)"
        )
    if lock.environments and not any(_applies(m, environment, ()) for m in lock.environments):
        raise LockError(
            f"{what}: the lock {lock.path} is for the environments {' or '.join(lock.environments)}"
            f", not {platform.description} (Linux); add Lambda's to them (uv: "
            "`[tool.uv] environments`) and lock again"
        )


def _implementation(constraint: str) -> tuple[str, str]:
    """pex's interpreter constraint `CPython<3.15,>=3.9` -> (`CPython`, `<3.15,>=3.9`); a bare
    PEP 440 range is CPython's."""
    name, specifier = _CONSTRAINT.fullmatch(constraint.strip()).groups()  # type: ignore[union-attr]
    return name or "CPython", specifier


def _platform_resolve(
    lock: Lock, ranks: Mapping[str, int], platform: WheelPlatform, what: str
) -> Lock:
    """A pex lock of one resolve per platform, cut to the resolve whose tag fits best (as pex
    chooses); a universal lock as it is."""
    tags = {p.platform_tag for p in lock.packages if p.platform_tag is not None}
    if not tags:
        return lock
    fitting = [tag for tag in tags if tag in ranks]
    if not fitting:
        raise LockError(
            f"{what}: the lock {lock.path} holds resolves for {', '.join(sorted(tags))} only, "
            f"none for {platform.description}; lock for it too (`pex3 lock create "
            "--complete-platform`, or a universal lock)"
        )
    best = min(fitting, key=ranks.__getitem__)
    return dataclasses.replace(
        lock, packages=tuple(p for p in lock.packages if p.platform_tag == best)
    )


def _excluded(lock: Lock, dependency: LockedDependency, environment: Mapping[str, str]) -> bool:
    """Whether the lock holds the dependency only under markers false here. PEP 751's
    `dependencies` are informational and carry no markers: a package's own `marker` decides
    (colorama for click, on Windows only)."""
    if lock.format != "pylock.toml":  # uv's edges carry their own markers
        return False
    named = lock.named(dependency.name)
    return bool(named) and not any(_applies(p.marker, environment, ()) for p in named)


def _applies(marker: str | None, environment: Mapping[str, str], extras: Iterable[str]) -> bool:
    if not marker:
        return True
    parsed = _marker(marker)
    # Pants 2.17's `packaging` (21.3) compares `extra == "..."` as written, not by PEP 685: each
    # extra is given as the marker itself spells it (`cncf.kubernetes`, `my_extra`).
    spellings = ("", *(e for e in _extra_literals(marker) if canonical_name(e) in extras))
    return any(parsed.evaluate({**environment, "extra": extra}) for extra in spellings)


@functools.lru_cache(maxsize=4096)
def _extra_literals(marker: str) -> tuple[str, ...]:
    """The extras a marker names (`extra == 'x'`, `"x" == extra`). Hand-written: `packaging`
    has no public view of a marker's terms."""
    return tuple("".join(spelling) for spelling in _EXTRA_TERM.findall(marker))


class _BadMarker(Exception):
    def __init__(self, text: str, error: Exception) -> None:
        self.text, self.error = text, error


@functools.lru_cache(maxsize=4096)
def _marker(text: str) -> Marker:
    """Cached: a lock repeats its markers, and parsing one costs more than evaluating it."""
    from packaging.markers import InvalidMarker, Marker

    try:
        return Marker(text)
    except InvalidMarker as error:
        raise _BadMarker(text, error) from None


def _edges(
    package: LockedPackage, via: LockedDependency, environment: Mapping[str, str]
) -> list[LockedDependency]:
    """What `package`, wanted with `via.extras`, needs here. A pex lock keeps extras as markers
    (`extra == "email"`), a uv.lock as `optional-dependencies`; both are settled here, so the
    edges handed on carry no marker."""
    extras = sorted(via.extras)
    edges = [*(package.dependencies or ())]
    for extra in extras:
        edges.extend(dict(package.extras).get(extra, ()))
    return [
        LockedDependency(edge.name, edge.extras, None, edge.version)
        for edge in edges
        if _applies(edge.marker, environment, extras)
    ]


def _locked(
    lock: Lock,
    dependency: LockedDependency,
    specifier: Any,
    environment: Mapping[str, str],
    what: str,
    via: str,
) -> LockedPackage:
    candidates = [
        p
        for p in lock.named(dependency.name)
        if (dependency.version is None or p.version == dependency.version)
        and _applies(p.marker, environment, ())
        and (specifier is None or specifier.contains(p.version, prereleases=True))
    ]
    if not candidates:
        held = ", ".join(f"{p.name} {p.version}" for p in lock.named(dependency.name))
        required = via if via == dependency.name else f"{dependency.name} (required via {via})"
        found = f"it holds {held}" if held else f"it has no {dependency.name}"
        python, machine = environment["python_version"], environment["platform_machine"]
        raise LockError(
            f"{what}: the lock {lock.path} does not hold {required} for Python {python} on "
            f"{machine} ({found}); add it to the lock (`pants generate-lockfiles`, `uv lock` or "
            "`pex3 lock update`) or drop the requirement"
        )
    if len(candidates) == 1:
        return candidates[0]
    from packaging.version import InvalidVersion, Version

    try:
        return max(candidates, key=lambda p: Version(p.version))
    except InvalidVersion as error:
        raise LockError(
            f"{what}: the lock {lock.path} holds {dependency.name} without a valid version "
            f"({error})"
        ) from None


def _best_wheel(
    lock: Lock,
    package: LockedPackage,
    platform: WheelPlatform,
    ranks: Mapping[str, int],
    what: str,
    via: str,
) -> LockedWheel:
    """The wheel of `package` whose best tag ranks first in `ranks` (the platform's, best first)."""
    from packaging.utils import parse_wheel_filename

    best: tuple[int, LockedWheel] | None = None
    for wheel in package.wheels:
        _, _, _, tags = parse_wheel_filename(wheel.filename)
        rank = min((ranks[str(t)] for t in tags if str(t) in ranks), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, wheel)
    if best is None:
        offered = f"{len(package.wheels)} wheel(s) for other platforms" + "".join(
            f" and the source distribution {sdist}" for sdist in package.sdists[:1]
        )
        raise LockError(
            f"{what}: {package.name} {package.version} (required via {via}) has no wheel for "
            f"{platform.description} in the lock {lock.path}, which offers {offered}. "
            "Pin a version that publishes a "
            f"wheel for it ({platform.tag_summary()}), or build that "
            "wheel yourself and serve it from a find-links repository. Source distributions are "
            "never built: that would run their build code here and can give a wheel for this "
            "machine instead of for Lambda."
        )
    return best[1]
