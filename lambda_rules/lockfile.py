"""What a Pants or pex lockfile pins: each distribution's wheels, with their URLs, sha256s and
tags, and which of them an installed distribution came from (no Pants imports).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from packaging.tags import Tag, parse_tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from lambda_rules.errors import LambdaRulesError


class LockfileError(LambdaRulesError):
    """The lockfile cannot be read, or does not pin what was installed; the message says why."""


def lock_json(lockfile: str | Path) -> str:
    """The lockfile as pex reads it: a Pants lockfile's `//` header removed (Pants does the same
    before it hands the lockfile to pex)."""
    try:
        text = Path(lockfile).read_text(encoding="utf-8")
    except OSError as error:
        raise LockfileError(f"{lockfile}: cannot read the lockfile ({error.strerror})") from None
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


@dataclass(frozen=True)
class LockedArtifact:
    url: str
    filename: str
    sha256: str
    tags: frozenset


def read_lockfile_artifacts(
    lockfile: str | Path,
) -> dict[tuple[str, Version], list[LockedArtifact]]:
    """The sha256 wheels of a Pants/pex lockfile, by (canonical project name, version)."""
    body = lock_json(lockfile)
    try:
        document = json.loads(body)
        resolves = document["locked_resolves"]
        locked = [r for resolve in resolves for r in resolve["locked_requirements"]]
    except (ValueError, KeyError, TypeError) as error:
        raise LockfileError(
            f"{lockfile}: not a Pants/pex lockfile (expected `//` comments, then JSON with "
            f"locked_resolves[].locked_requirements[]): {error}"
        ) from None
    result: dict[tuple[str, Version], list[LockedArtifact]] = {}
    for requirement in locked:
        try:
            key = (canonicalize_name(requirement["project_name"]), Version(requirement["version"]))
            artifacts = requirement["artifacts"]
        except (KeyError, TypeError, InvalidVersion) as error:
            raise LockfileError(
                f"{lockfile}: malformed locked requirement {requirement!r}: {error}"
            ) from None
        for artifact in artifacts:
            url = artifact.get("url", "")
            filename = posixpath.basename(url.split("#", 1)[0].split("?", 1)[0])
            if artifact.get("algorithm") != "sha256" or not filename.endswith(".whl"):
                continue
            try:
                _, _, _, tags = parse_wheel_filename(filename)
            except InvalidWheelFilename:
                continue
            entry = LockedArtifact(url, filename, artifact["hash"].lower(), frozenset(tags))
            if entry not in result.setdefault(key, []):
                result[key].append(entry)
    return result


def wheel_tags(wheel: bytes) -> frozenset[Tag]:
    """The tags a wheel's `.dist-info/WHEEL` file declares: what it was built for."""
    tags: set[Tag] = set()
    for line in wheel.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Tag" and value.strip():
            tags.update(parse_tag(value.strip()))
    return frozenset(tags)


def matching_artifact(
    archive: str | Path,
    name: str,
    version: str,
    tags: frozenset,
    artifacts: Mapping[tuple[str, Version], Sequence[LockedArtifact]],
) -> LockedArtifact:
    """The locked wheel this distribution came from: same project, version and tags.

    Without one the SBOM could not say which wheel was shipped, and a hash-less component would
    hide that the archive was not built from this lockfile, so it is an error, not an omission.
    """
    try:
        candidates = artifacts.get((name, Version(version)), [])
    except InvalidVersion:
        raise LockfileError(
            f"{archive}: distribution {name} has an invalid version {version!r}"
        ) from None
    exact = [a for a in candidates if a.tags == tags]
    matching = exact or [a for a in candidates if a.tags & tags]
    if len({a.sha256 for a in matching}) == 1:
        return matching[0]
    if matching:
        names = ", ".join(sorted(a.filename for a in matching))
        raise LockfileError(
            f"{archive}: distribution {name} {version} matches several locked wheels: {names}"
        )
    locked_versions = sorted(str(v) for (n, v) in artifacts if n == name)
    if not candidates:
        found = (
            f"the lockfile has {name} {', '.join(locked_versions)}"
            if locked_versions
            else f"the lockfile has no {name}"
        )
        raise LockfileError(
            f"{archive}: distribution {name} {version} is not in the lockfile ({found}); build the "
            "archive from this lockfile, or pass the lockfile it was built from"
        )
    shown = ", ".join(sorted(str(t) for t in tags)) or "none"
    raise LockfileError(
        f"{archive}: distribution {name} {version} was installed from a wheel tagged {shown}, and "
        f"no locked wheel of {name} {version} has those tags"
    )
