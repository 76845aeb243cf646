"""Which locked wheel an installed distribution came from, so the SBOM can state the wheel's
sha256 (no Pants imports). Any lock `lock_formats.read_lock` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from packaging.tags import Tag, parse_tag
from packaging.utils import parse_wheel_filename
from packaging.version import InvalidVersion, Version

from lambda_rules import lock_formats
from lambda_rules.locks import LockedWheel, LockError


def locked_wheels_by_version(lockfile: str | Path) -> dict[tuple[str, Version], list[LockedWheel]]:
    """Every locked wheel, by (canonical project name, version)."""
    result: dict[tuple[str, Version], list[LockedWheel]] = {}
    for package in lock_formats.read_lock(lockfile).packages:
        try:
            key = (package.name, Version(package.version))
        except InvalidVersion:
            raise LockError(f"{lockfile}: {package.name} has an invalid version") from None
        for wheel in package.wheels:
            if wheel not in result.setdefault(key, []):
                result[key].append(wheel)
    return result


def _tags(wheel: LockedWheel) -> frozenset[Tag]:
    return frozenset(parse_wheel_filename(wheel.filename)[3])


def wheel_tags(wheel: bytes) -> frozenset[Tag]:
    """The tags a wheel's `.dist-info/WHEEL` file declares: what it was built for."""
    tags: set[Tag] = set()
    for line in wheel.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Tag" and value.strip():
            tags.update(parse_tag(value.strip()))
    return frozenset(tags)


def matching_wheel(
    archive: str | Path,
    name: str,
    version: str,
    tags: frozenset,
    artifacts: Mapping[tuple[str, Version], Sequence[LockedWheel]],
) -> LockedWheel:
    """The locked wheel this distribution came from: same project, version and tags.

    Without one the SBOM could not say which wheel was shipped, and a hash-less component would
    hide that the archive was not built from this lockfile, so it is an error, not an omission.
    """
    try:
        candidates = artifacts.get((name, Version(version)), [])
    except InvalidVersion:
        raise LockError(
            f"{archive}: distribution {name} has an invalid version {version!r}"
        ) from None
    exact = [a for a in candidates if _tags(a) == tags]
    matching = exact or [a for a in candidates if _tags(a) & tags]
    if len({a.sha256 for a in matching}) == 1:
        return matching[0]
    if matching:
        names = ", ".join(sorted(a.filename for a in matching))
        raise LockError(
            f"{archive}: distribution {name} {version} matches several locked wheels: {names}"
        )
    locked_versions = sorted(str(v) for (n, v) in artifacts if n == name)
    if not candidates:
        found = (
            f"the lockfile has {name} {', '.join(locked_versions)}"
            if locked_versions
            else f"the lockfile has no {name}"
        )
        raise LockError(
            f"{archive}: distribution {name} {version} is not in the lockfile ({found}); build the "
            "archive from this lockfile, or pass the lockfile it was built from"
        )
    shown = ", ".join(sorted(str(t) for t in tags)) or "none"
    raise LockError(
        f"{archive}: distribution {name} {version} was installed from a wheel tagged {shown}, and "
        f"no locked wheel of {name} {version} has those tags"
    )
