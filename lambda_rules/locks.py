"""Locks in, locked wheels out: a pex/Pants lock, a PEP 751 `pylock.toml` or a `uv.lock`, read
into one typed set of locked packages, and the wheels a set of requirements needs on one Lambda
platform chosen from it (no Pants imports).

Choosing is what an installer does with a lock, on the platform's own terms: the requirements'
transitive closure, with markers and extras evaluated in the runtime's marker environment
(`LambdaPlatform.marker_environment`), then, per distribution, the wheel whose tag ranks first
in `LambdaPlatform.compatible_tags` (pip's and pex's order). Wheels only: an sdist would run its
build here and could give a wheel for this machine instead of for Lambda.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from lambda_rules.errors import LambdaRulesError
from lambda_rules.platforms import WheelPlatform
from lambda_rules.units import canonical_name

if TYPE_CHECKING:  # imported where used: a warm `lambda-zip package` needs only LockedWheel
    from packaging.markers import Marker
    from packaging.requirements import Requirement


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
        return _filename(self.url)


def _filename(url: str) -> str:
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


@dataclass(frozen=True)
class Lock:
    path: str
    format: str
    packages: tuple[LockedPackage, ...]

    def named(self, name: str) -> list[LockedPackage]:
        wanted = canonical_name(name)
        return [p for p in self.packages if p.name == wanted]


def read_lock(path: str | Path) -> Lock:
    """The lock at `path` (see `parse_lock`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LockError(f"{path}: cannot read the lock ({error})") from None
    return parse_lock(text, str(path))


def parse_lock(text: str, path: str) -> Lock:
    """A lock's `text`, its format told by its content: JSON is a pex/Pants lock (`//` header
    lines dropped, as Pants drops them), TOML with `lock-version` a PEP 751 `pylock.toml`, TOML
    with `[[package]]` a `uv.lock`; `path` names it in errors."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    if body.lstrip().startswith("{"):
        return _read_pex_lock(str(path), body)
    document = _parse_toml(str(path), text)
    if "lock-version" in document:
        return _read_pylock(str(path), document)
    if "package" in document and "version" in document:
        return _read_uv_lock(str(path), document)
    raise LockError(
        f"{path}: not a lock this tool reads: expected a pex/Pants lock (JSON with "
        "`locked_resolves`), a PEP 751 pylock.toml (`lock-version`) or a uv.lock (`[[package]]`)"
    )


def _parse_toml(path: str, text: str) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
    try:
        return dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise LockError(f"{path}: not a pex lock (JSON) nor valid TOML: {error}") from None


class _Malformed(Exception):
    """A key of the lock is missing or has the wrong type: `key` names it."""

    def __init__(self, key: str) -> None:
        self.key = key


def _get(mapping: Any, key: str, kind: type, where: str) -> Any:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, kind):
        raise _Malformed(f"{where}.{key}")
    return value


def _malformed(path: str, fmt: str, error: Exception) -> LockError:
    detail = (
        f"key `{error.key}` is missing or of the wrong type"
        if isinstance(error, _Malformed)
        else str(error)
    )
    return LockError(f"{path}: malformed {fmt}: {detail}")


def _requirement(what: str, text: str) -> tuple[LockedDependency, Any]:
    """A requirement of the target's as an edge into the lock, and its version specifier."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        raise LockError(f"{what}: invalid requirement {text!r}: {error}") from None
    return _dependency(requirement), requirement.specifier


def _dependency(requirement: Requirement) -> LockedDependency:
    return LockedDependency(
        canonical_name(requirement.name),
        frozenset(requirement.extras),
        str(requirement.marker) if requirement.marker else None,
    )


def _pex_dependency(text: str) -> LockedDependency:
    """A pex lock's `requires_dists` entry, each distinct marker parsed once (Pants 2.17's
    pyparsing `packaging` takes 0.5 ms per whole entry; an API function repeats 35 markers over
    143). PEP 508's `;` precedes only the marker, except in a URL (`n @ url ; m`): parsed whole."""
    from packaging.requirements import Requirement

    head, semicolon, marker = text.partition(";")
    if not semicolon or "@" in head:
        return _dependency(Requirement(text))
    requirement = Requirement(head)
    return LockedDependency(
        canonical_name(requirement.name),
        frozenset(requirement.extras),
        _normalized_marker(marker.strip()),
    )


@functools.lru_cache(maxsize=4096)
def _normalized_marker(text: str) -> str:
    """The marker as `packaging` writes it back (what `_dependency` keeps of a requirement's)."""
    from packaging.markers import Marker

    return str(Marker(text))


def _wheel(name: str, version: str, url: str, sha256: str) -> LockedWheel | None:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    wheel = LockedWheel(canonical_name(name), version, url, sha256.lower())
    try:
        parse_wheel_filename(wheel.filename)
    except InvalidWheelFilename:
        return None
    return wheel


def _read_pex_lock(path: str, body: str) -> Lock:
    fmt = "pex lock"
    try:
        document = json.loads(body)
        packages = []
        for r, resolve in enumerate(_get(document, "locked_resolves", list, "$")):
            where = f"locked_resolves[{r}]"
            for i, locked in enumerate(_get(resolve, "locked_requirements", list, where)):
                packages.append(_pex_package(locked, f"{where}.locked_requirements[{i}]"))
    except (ValueError, _Malformed) as error:  # packaging's Invalid* are ValueErrors
        raise _malformed(path, fmt, error) from None
    return Lock(path, fmt, tuple(packages))


def _pex_package(locked: Any, where: str) -> LockedPackage:
    name = _get(locked, "project_name", str, where)
    version = _get(locked, "version", str, where)
    wheels, sdists = [], []
    for j, artifact in enumerate(_get(locked, "artifacts", list, where)):
        url = _get(artifact, "url", str, f"{where}.artifacts[{j}]")
        if not url.endswith(".whl"):
            sdists.append(_filename(url))
        elif artifact.get("algorithm") == "sha256":
            wheel = _wheel(name, version, url, _get(artifact, "hash", str, f"{where}.artifacts"))
            if wheel:
                wheels.append(wheel)
    return LockedPackage(
        canonical_name(name),
        version,
        tuple(wheels),
        tuple(_pex_dependency(r) for r in locked.get("requires_dists", [])),
        (),
        sdists=tuple(sdists),
    )


def _read_pylock(path: str, document: dict[str, Any]) -> Lock:
    fmt = "pylock.toml"
    try:
        packages = []
        for i, package in enumerate(_get(document, "packages", list, "$")):
            where = f"packages[{i}]"
            dependencies = package.get("dependencies")
            packages.append(
                LockedPackage(
                    canonical_name(_get(package, "name", str, where)),
                    str(package.get("version", "")),
                    _toml_wheels(path, package, where, _pylock_sha256),
                    None if dependencies is None else _uv_edges(dependencies, f"{where}"),
                    (),
                    marker=package.get("marker"),
                    sdists=_sdist(package),
                )
            )
    except (ValueError, _Malformed) as error:
        raise _malformed(path, fmt, error) from None
    # PEP 751's `dependencies` is not a graph every tool writes, nor one every tool writes fully:
    # a lock without it on every package is installed by markers, as installers do.
    if any(p.dependencies is None for p in packages):
        packages = [dataclasses.replace(p, dependencies=None) for p in packages]
    return Lock(path, fmt, tuple(packages))


def _toml_wheels(
    path: str, package: Any, where: str, sha256_of: Callable[[Any, str], str]
) -> tuple[LockedWheel, ...]:
    """A TOML lock's wheels of one package; `sha256_of` reads a digest as its format states."""
    name, version = _get(package, "name", str, where), str(package.get("version", ""))
    wheels = []
    for j, wheel in enumerate(package.get("wheels", [])):
        at = f"{where}.wheels[{j}]"
        location = wheel.get("url") or wheel.get("path") if isinstance(wheel, dict) else None
        if not isinstance(location, str):
            raise _Malformed(f"{at}.url")
        found = _wheel(name, version, _location_url(path, location), sha256_of(wheel, at))
        if found:
            wheels.append(found)
    return tuple(wheels)


def _pylock_sha256(wheel: Any, at: str) -> str:
    """PEP 751: `hashes = { sha256 = "..." }`."""
    digest = _get(wheel, "hashes", dict, at).get("sha256")
    if not isinstance(digest, str):
        raise _Malformed(f"{at}.hashes.sha256")
    return digest


def _uv_sha256(wheel: Any, at: str) -> str:
    """uv.lock: `hash = "sha256:..."`."""
    algorithm, _, digest = _get(wheel, "hash", str, at).partition(":")
    if algorithm != "sha256":
        raise _Malformed(f"{at}.hash")
    return digest


def _location_url(lock_path: str, location: str) -> str:
    """A wheel's `url`, or its `path` (relative to the lock) as a file:// URL."""
    if "://" in location:
        return location
    return (Path(lock_path).parent / location).resolve().as_uri()


def _read_uv_lock(path: str, document: dict[str, Any]) -> Lock:
    fmt = "uv.lock"
    try:
        packages = []
        for i, package in enumerate(_get(document, "package", list, "$")):
            where = f"package[{i}]"
            optional = package.get("optional-dependencies", {})
            packages.append(
                LockedPackage(
                    canonical_name(_get(package, "name", str, where)),
                    str(package.get("version", "")),
                    _toml_wheels(path, package, where, _uv_sha256),
                    _uv_edges(package.get("dependencies", []), where),
                    tuple(
                        (e, _uv_edges(deps, f"{where}.{e}")) for e, deps in sorted(optional.items())
                    ),
                    # A fork's packages apply where its resolution markers do.
                    marker=" or ".join(f"({m})" for m in package.get("resolution-markers", []))
                    or None,
                    sdists=_sdist(package),
                )
            )
    except _Malformed as error:
        raise _malformed(path, fmt, error) from None
    return Lock(path, fmt, tuple(packages))


def _sdist(package: dict[str, Any]) -> tuple[str, ...]:
    """The file name of a TOML lock's `sdist`, if it has one."""
    sdist = package.get("sdist")
    if not isinstance(sdist, dict):
        return ()
    location = sdist.get("name") or sdist.get("url") or sdist.get("path")
    return (_filename(location),) if isinstance(location, str) else ()


def _uv_edges(dependencies: Any, where: str) -> tuple[LockedDependency, ...]:
    if not isinstance(dependencies, list):
        raise _Malformed(f"{where}.dependencies")
    return tuple(
        LockedDependency(
            canonical_name(_get(d, "name", str, f"{where}.dependencies[{k}]")),
            frozenset(d.get("extra", [])),
            d.get("marker"),
            d.get("version"),
        )
        for k, d in enumerate(dependencies)
    )


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
    environment = platform.marker_environment()
    chosen: dict[str, LockedPackage] = {}
    # Each chosen distribution's first dependent (or its requirement), for messages.
    via_of: dict[str, str] = {}
    # What was expanded already, with which extras: a lock's graph may have cycles.
    expanded: set[tuple[str, frozenset[str]]] = set()
    parsed = [(_requirement(what, text), text) for text in requirements]
    specifiers = {dependency.name: specifier for (dependency, specifier), _ in parsed}
    queue = [(dependency, text) for (dependency, _), text in parsed]
    while queue:
        dependency, via = queue.pop(0)
        if not _applies(dependency.marker, environment, ()):
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
    # Ranked once per choice: the platform's tags number about a thousand.
    ranks = {str(tag): rank for rank, tag in enumerate(platform.compatible_tags())}
    return tuple(
        _best_wheel(lock, chosen[name], platform, ranks, what, via_of.get(name, "the lock"))
        for name in sorted(chosen)
    )


def _applies(marker: str | None, environment: Mapping[str, str], extras: Iterable[str]) -> bool:
    if not marker:
        return True
    parsed = _marker(marker)
    return any(parsed.evaluate({**environment, "extra": extra}) for extra in ("", *extras))


@functools.lru_cache(maxsize=4096)
def _marker(text: str) -> Marker:
    """Cached: a lock repeats its markers, and parsing one costs more than evaluating it."""
    from packaging.markers import InvalidMarker, Marker

    try:
        return Marker(text)
    except InvalidMarker as error:
        raise LockError(f"invalid marker {text!r} in the lock: {error}") from None


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
    from packaging.version import Version

    return max(candidates, key=lambda p: Version(p.version))


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
