"""`lambda-zip package`'s first step: the wheels a lock pins for the platform, and how they lay
out into units, each taken from the cache (`local_cache`) when it holds them. A warm run thus
parses no lock, reads no wheel and imports neither `packaging` nor the fetcher (no Pants imports).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from lambda_rules import actions, lock_formats, locks, units
from lambda_rules.lambda_zip import local_cache
from lambda_rules.zipper.summary import file_sha256

if TYPE_CHECKING:
    from lambda_rules.lambda_zip.local_build import PackageRequest

# Under a run's work folder: the units zipped as their wheels arrived (`wheel_units.EarlyParts`).
EARLY_PARTS = "early-parts"
# Under the cache folder: units by their wheel (`unit_cache`), one folder per version of the
# sources that lay them out.
UNITS = "units"


def locked_wheels(
    request: PackageRequest, lock: Path, cache: local_cache.PartsCache, *, transitive: bool
) -> tuple[locks.LockedWheel, ...]:
    """The wheels the requirements need on the platform: from the cache when this lock (its
    bytes, and its path, which relative wheel paths start from) was chosen from before for the
    same requirements and platform, else chosen (and the choice kept; an error never is)."""
    if not request.requirements:
        return ()
    try:
        lock_sha256 = file_sha256(lock)[0]
    except OSError:
        lock_sha256 = ""  # read_lock says why it cannot be read
    key = local_cache.selection_key(
        lock=lock_sha256,
        path=os.path.abspath(lock),
        requirements=list(request.requirements),
        runtime=request.platform.runtime.name,
        architecture=request.platform.architecture,
        transitive=transitive,
    )
    cached = cache.get_selection(key) if lock_sha256 else None
    if cached is not None:
        return cached
    wheels = locks.select_wheels(
        lock_formats.read_lock(lock),
        request.requirements,
        request.platform,
        what=request.name,
        transitive=transitive,
    )
    cache.put_selection(key, wheels)
    return wheels


def resolution(
    request: PackageRequest,
    wheels: Sequence[locks.LockedWheel],
    work: Path,
    cache: local_cache.PartsCache,
) -> local_cache.Resolution:
    """The units of the locked wheels: from the cache when these wheels were laid out before (no
    wheel read, no network), else written from the wheels into `work`."""
    if not wheels:
        return local_cache.Resolution(b'{"units": []}', {})
    key = local_cache.resolution_key(wheels=[w.sha256 for w in wheels])
    cached = cache.get_resolution(key)
    if cached is not None:
        return cached
    out = write_units(request, wheels, work)
    metadata_dir = out / units.METADATA_DIR
    resolved = local_cache.Resolution(
        listing=(out / units.UNITS_JSON).read_bytes(),
        metadata={
            path.relative_to(metadata_dir).as_posix(): path.read_bytes()
            for path in sorted(metadata_dir.glob("*/METADATA"))
        },
    )
    cache.put_resolution(key, resolved)
    return resolved


def write_units(request: PackageRequest, wheels: Sequence[locks.LockedWheel], work: Path) -> Path:
    """The wheels fetched (into the cache's wheel folder) and laid out as units under `work`,
    once per run. Unless bytecode, layers or exclusions may change a unit, each is zipped as its
    wheel is laid out, under `work/EARLY_PARTS` (`wheel_units.write_units`)."""
    out = work / "units"
    if out.exists():
        return out
    # Imported here: a warm run, whose layouts are all cached, reads no wheel (nor imports
    # urllib and ssl).
    from lambda_rules import fetch, wheel_units
    from lambda_rules.unit_cache import UnitCache

    wheel_cache = fetch.WheelCache(
        request.wheel_cache or request.cache_dir / "wheels", request.find_links
    )
    early = None
    if not (request.compile_bytecode or request.layers or request.exclude):
        prefix = actions.package_prefix(request.kind)
        early = wheel_units.EarlyParts(work / EARLY_PARTS, request.level, prefix)
    wheel_units.write_units(
        [fetch.Wanted(w.url, w.sha256) for w in wheels],
        wheel_cache,
        out,
        early=early,
        meanwhile=_import_sbom,
        unit_cache=UnitCache(request.cache_dir / UNITS / local_cache.layout_fingerprint()),
    )
    return out


def _import_sbom() -> None:
    """What the SBOM template needs, imported while workers fetch and lay out the wheels: a run
    that lays them out writes a new SBOM template too, and the main process would wait idle."""
    from lambda_rules import sbom  # noqa: F401
