"""The lock formats read into `locks.Lock`, told apart by content: a pex/Pants lock (what `pants
generate-lockfiles` and `pex3 lock create` write), a PEP 751 `pylock.toml` and a `uv.lock`
(no Pants imports). Each key is checked for its type where it is read, so a malformed lock is one
line naming its format and the key, never a Python error.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Callable

from lambda_rules.locks import (
    Lock,
    LockedDependency,
    LockedPackage,
    LockedWheel,
    LockError,
    dependency_of,
    file_name,
    normalized_extras,
)
from lambda_rules.units import canonical_name


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
    """A key of the lock is missing or has the wrong type: `key` names it; `detail` says more
    where a plain "missing or of the wrong type" would mislead."""

    def __init__(self, key: str, detail: str = "") -> None:
        self.key = key
        self.detail = detail


def _get(mapping: Any, key: str, kind: type, where: str) -> Any:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, kind):
        raise _Malformed(f"{where}.{key}")
    return value


def _optional(mapping: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    """`mapping[key]`, which the format lets a writer leave out, but not give another type."""
    return _get(mapping, key, kind, where) if key in mapping else default


def _strings(value: Any, where: str) -> list[str]:
    """A list of strings: a lone string would be read character by character."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Malformed(where)
    return value


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(where)
    return value


def _malformed(path: str, fmt: str, error: Exception) -> LockError:
    if isinstance(error, _Malformed):
        detail = f"key `{error.key}`: {error.detail or 'missing or of the wrong type'}"
    else:
        detail = str(error)
    return LockError(f"{path}: malformed {fmt}: {detail}")


def _pex_dependency(text: str) -> LockedDependency:
    """A pex lock's `requires_dists` entry, each distinct marker parsed once (Pants 2.17's
    pyparsing `packaging` takes 0.5 ms per whole entry; an API function repeats 35 markers over
    143). PEP 508's `;` precedes only the marker, except in a URL (`n @ url ; m`): parsed whole."""
    from packaging.requirements import Requirement

    head, semicolon, marker = text.partition(";")
    if not semicolon or "@" in head:
        return dependency_of(Requirement(text))
    requirement = Requirement(head)
    return LockedDependency(
        canonical_name(requirement.name),
        normalized_extras(requirement.extras),
        _normalized_marker(marker.strip()),
    )


@functools.lru_cache(maxsize=4096)
def _normalized_marker(text: str) -> str:
    """The marker as `packaging` writes it back (what `locks.dependency_of` keeps of one)."""
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
        document = _table(json.loads(body), "$")
        resolves = _get(document, "locked_resolves", list, "$")
        packages = []
        for r, resolve in enumerate(resolves):
            where = f"locked_resolves[{r}]"
            tag = _pex_platform_tag(_table(resolve, where), where) if len(resolves) > 1 else None
            for i, locked in enumerate(_get(resolve, "locked_requirements", list, where)):
                package = _pex_package(locked, f"{where}.locked_requirements[{i}]")
                packages.append(dataclasses.replace(package, platform_tag=tag))
        requires_python = tuple(_strings(document.get("requires_python", []), "$.requires_python"))
    except (ValueError, _Malformed) as error:  # packaging's Invalid* are ValueErrors
        raise _malformed(path, fmt, error) from None
    return Lock(path, fmt, tuple(packages), requires_python)


def _pex_platform_tag(resolve: Any, where: str) -> str | None:
    tag = resolve.get("platform_tag")
    if tag is None:
        return None
    return "-".join(_strings(tag, f"{where}.platform_tag"))


def _pex_package(locked: Any, where: str) -> LockedPackage:
    name = _get(locked, "project_name", str, where)
    version = _get(locked, "version", str, where)
    wheels, sdists = [], []
    for j, artifact in enumerate(_get(locked, "artifacts", list, where)):
        at = f"{where}.artifacts[{j}]"
        url = _get(artifact, "url", str, at)
        if not url.endswith(".whl"):
            sdists.append(file_name(url))
        elif artifact.get("algorithm") == "sha256":
            wheel = _wheel(name, version, url, _get(artifact, "hash", str, at))
            if wheel:
                wheels.append(wheel)
    requires = _strings(locked.get("requires_dists", []), f"{where}.requires_dists")
    return LockedPackage(
        canonical_name(name),
        version,
        tuple(wheels),
        tuple(_pex_dependency(r) for r in requires),
        (),
        sdists=tuple(sdists),
    )


def _read_pylock(path: str, document: dict[str, Any]) -> Lock:
    fmt = "pylock.toml"
    try:
        version = _get(document, "lock-version", str, "$")
        if version.split(".")[0] != "1":  # PEP 751: an installer refuses a major it doesn't know
            raise _Malformed("$.lock-version", f"version {version}; this tool reads 1.x")
        packages = []
        for i, package in enumerate(_get(document, "packages", list, "$")):
            where = f"packages[{i}]"
            dependencies = _table(package, where).get("dependencies")
            packages.append(
                LockedPackage(
                    canonical_name(_get(package, "name", str, where)),
                    str(package.get("version", "")),
                    _toml_wheels(package, where, _pylock_wheel(path), archive=True),
                    None if dependencies is None else _uv_edges(dependencies, f"{where}"),
                    (),
                    marker=_optional(package, "marker", str, where, None),
                    sdists=_sdist(package),
                )
            )
        requires_python = _optional(document, "requires-python", str, "$", None)
        environments = _strings(document.get("environments", []), "$.environments")
    except (ValueError, _Malformed) as error:
        raise _malformed(path, fmt, error) from None
    # PEP 751's `dependencies` is not a graph every tool writes, nor one every tool writes fully:
    # a lock without it on every package is installed by markers, as installers do.
    if any(p.dependencies is None for p in packages):
        packages = [dataclasses.replace(p, dependencies=None) for p in packages]
    python = (requires_python,) if requires_python else ()
    return Lock(path, fmt, tuple(packages), python, tuple(environments))


# A wheel's table (and where it is, for errors) -> its URL and sha256, as one format states them.
_WheelReader = Callable[[dict[str, Any], str], tuple[str, str]]


def _toml_wheels(
    package: Any, where: str, read: _WheelReader, *, archive: bool = False
) -> tuple[LockedWheel, ...]:
    """A TOML lock's wheels of one package; `read` gives a wheel's URL and sha256 as its format
    states them. With `archive`, PEP 751's `archive` too when it is a wheel (uv writes a local
    wheel of `[tool.uv.sources]` so)."""
    name, version = _get(package, "name", str, where), str(package.get("version", ""))
    listed = _optional(package, "wheels", list, where, [])
    entries = [(f"{where}.wheels[{j}]", wheel) for j, wheel in enumerate(listed)]
    direct = package.get("archive") if archive else None
    if isinstance(direct, dict) and str(direct.get("url") or direct.get("path")).endswith(".whl"):
        entries.append((f"{where}.archive", direct))
    wheels = []
    for at, wheel in entries:
        found = _wheel(name, version, *read(_table(wheel, at), at))
        if found:
            wheels.append(found)
    return tuple(wheels)


def _pylock_wheel(lock_path: str) -> _WheelReader:
    """PEP 751: `url` or `path` (relative to the lock), and `hashes = { sha256 = "..." }`."""

    def read(wheel: dict[str, Any], at: str) -> tuple[str, str]:
        location = wheel.get("url") or wheel.get("path")
        if not isinstance(location, str):
            raise _Malformed(f"{at}.url")
        digest = _get(wheel, "hashes", dict, at).get("sha256")
        if not isinstance(digest, str):
            raise _Malformed(f"{at}.hashes.sha256")
        return _location_url(Path(lock_path).parent, location), digest

    return read


def _uv_wheel(lock_path: str, source: dict[str, Any]) -> _WheelReader:
    """uv.lock, for a package from `source`: `url`; or `path`, relative to a local
    `--find-links` folder (`source.registry`); or only `filename`, the wheel being
    `source.path`. The digest is `hash = "sha256:..."`; uv records none for a find-links
    folder's wheels."""
    lock_dir = Path(lock_path).parent

    def read(wheel: dict[str, Any], at: str) -> tuple[str, str]:
        if isinstance(wheel.get("url"), str):
            location = wheel["url"]
        elif isinstance(wheel.get("path"), str):
            location = _location_url(lock_dir / source.get("registry", "."), wheel["path"])
        elif isinstance(source.get("path"), str) and source["path"].endswith(".whl"):
            location = _location_url(lock_dir, source["path"])
        else:
            raise _Malformed(f"{at}.url")
        if "hash" not in wheel:
            raise _Malformed(
                f"{at}.hash",
                f"{file_name(location)} has no sha256 in the lock (uv records none for a "
                "`--find-links` folder's wheels); serve the folder over HTTPS or name each wheel "
                "in `[tool.uv.sources]`, then `uv lock` again",
            )
        algorithm, _, digest = _get(wheel, "hash", str, at).partition(":")
        if algorithm != "sha256":
            raise _Malformed(f"{at}.hash")
        return location, digest

    return read


def _location_url(base: Path, location: str) -> str:
    """A wheel's `url`, or its `path` (relative to `base`) as a file:// URL."""
    if "://" in location:
        return location
    return (base / location).resolve().as_uri()


def _read_uv_lock(path: str, document: dict[str, Any]) -> Lock:
    fmt = "uv.lock"
    try:
        packages = []
        for i, package in enumerate(_get(document, "package", list, "$")):
            where = f"package[{i}]"
            optional = _optional(_table(package, where), "optional-dependencies", dict, where, {})
            forks = _strings(package.get("resolution-markers", []), f"{where}.resolution-markers")
            source = _optional(package, "source", dict, where, {})
            packages.append(
                LockedPackage(
                    canonical_name(_get(package, "name", str, where)),
                    str(package.get("version", "")),
                    _toml_wheels(package, where, _uv_wheel(path, source)),
                    _uv_edges(package.get("dependencies", []), where),
                    tuple(
                        (canonical_name(e), _uv_edges(deps, f"{where}.optional-dependencies.{e}"))
                        for e, deps in sorted(optional.items())
                    ),
                    # A fork's packages apply where its resolution markers do.
                    marker=" or ".join(f"({m})" for m in forks) or None,
                    sdists=_sdist(package),
                )
            )
        requires_python = _optional(document, "requires-python", str, "$", None)
        environments = _strings(document.get("supported-markers", []), "$.supported-markers")
    except _Malformed as error:
        raise _malformed(path, fmt, error) from None
    python = (requires_python,) if requires_python else ()
    return Lock(path, fmt, tuple(packages), python, tuple(environments))


def _sdist(package: dict[str, Any]) -> tuple[str, ...]:
    """The file name of a TOML lock's `sdist`, if it has one."""
    sdist = package.get("sdist")
    if not isinstance(sdist, dict):
        return ()
    location = sdist.get("name") or sdist.get("url") or sdist.get("path")
    return (file_name(location),) if isinstance(location, str) else ()


def _uv_edges(dependencies: Any, where: str) -> tuple[LockedDependency, ...]:
    """`dependencies` edges (uv.lock's, and PEP 751's, which are written alike)."""
    if not isinstance(dependencies, list):
        raise _Malformed(f"{where}.dependencies")
    edges = []
    for k, edge in enumerate(dependencies):
        at = f"{where}.dependencies[{k}]"
        edges.append(
            LockedDependency(
                canonical_name(_get(edge, "name", str, at)),
                normalized_extras(_strings(edge.get("extra", []), f"{at}.extra")),
                _optional(edge, "marker", str, at, None),
                _optional(edge, "version", str, at, None),
            )
        )
    return tuple(edges)
