"""`lambda-zip package`'s first step: the wheels a lock pins for the platform, and how they lay
out into units, each taken from the cache (`local_cache`) when it holds them. A warm run thus
parses no lock, reads no wheel and imports neither `packaging` nor the fetcher (no Pants imports).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from lambda_rules import locks, units
from lambda_rules.lambda_zip import local_cache
from lambda_rules.zipper.summary import file_sha256

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from lambda_rules import fetch, wheel_units
    from lambda_rules.lambda_zip.local_build import PackageRequest


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
        locks.read_lock(lock),
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
    *,
    early_prefix: str | None = None,
    meanwhile: Callable[[], object] = lambda: None,
) -> local_cache.Resolution:
    """The units of the locked wheels: from the cache when these wheels were laid out before (no
    wheel read, no network), else written from the wheels into `work` (see `write_units` for
    `early_prefix` and `meanwhile`)."""
    if not wheels:
        return local_cache.Resolution(b'{"units": []}', {})
    key = local_cache.resolution_key(wheels=[w.sha256 for w in wheels])
    cached = cache.get_resolution(key)
    if cached is not None:
        return cached
    out = write_units(request, wheels, work, early_prefix=early_prefix, meanwhile=meanwhile)
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


def write_units(
    request: PackageRequest,
    wheels: Sequence[locks.LockedWheel],
    work: Path,
    *,
    early_prefix: str | None = None,
    meanwhile: Callable[[], object] = lambda: None,
) -> Path:
    """The wheels fetched (into the cache's wheel folder) and laid out as units under `work`,
    once per run. One worker per wheel fetches it, lays it out and, given `early_prefix`, zips
    its whole unit into `early_part` right away: CPU work then overlaps the other downloads, and
    the main process runs `meanwhile` (README example, cold: 0.22 s against 0.37 s for fetching
    all, then laying out all, then zipping)."""
    out = work / "units"
    if out.exists():
        return out
    # Imported here: a warm run, whose layouts are all cached, reads no wheel (nor imports
    # urllib and ssl). The repacker too, before the workers are forked: none imports it again.
    from lambda_rules import fetch, wheel_units
    from lambda_rules.zipper import repack  # noqa: F401

    wheel_cache = fetch.WheelCache(
        request.wheel_cache or request.cache_dir / "wheels", request.find_links
    )
    zipping = None if early_prefix is None else (work, request.level, early_prefix)
    out.mkdir(parents=True)
    with _workers(len(wheels)) as pool:
        futures = [
            pool.submit(
                _fetch_and_write,
                fetch.Wanted(wheel.url, wheel.sha256),
                wheel_cache,
                wheel_units.scratch_archive(out, k),
                zipping,
            )
            for k, wheel in enumerate(wheels)
        ]
        try:
            meanwhile()
            written = [future.result() for future in futures]
        except BaseException:
            for future in futures:  # a bad wheel: the others need not be read
                future.cancel()
            raise
    wheel_units.list_units(written, out)
    return out


def early_part(work: Path, unit_sha256: str) -> Path:
    """Where `write_units` zips the whole unit whose stored archive has `unit_sha256`."""
    return work / "early-parts" / f"{unit_sha256}.zip"


def _workers(jobs: int) -> Executor:
    """Worker processes, forked: each starts at once, with everything imported, and neither
    installer's reading nor the compressor holds the others' GIL (threads interleaving them
    with downloads slowed the downloads). Forking is safe here: no thread runs yet."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from lambda_rules.fetch import PARALLEL_FETCHES

    if sys.platform != "linux":
        return ThreadPoolExecutor(max_workers=PARALLEL_FETCHES)
    context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(min(jobs, PARALLEL_FETCHES), mp_context=context)


def _fetch_and_write(
    wanted: fetch.Wanted,
    wheel_cache: fetch.WheelCache,
    archive: Path,
    zipping: tuple[Path, int, str] | None,
) -> wheel_units.WrittenUnit:
    """One worker's job: fetch the wheel, write its unit at `archive`, and, given `zipping`
    (work folder, level, prefix), zip the whole unit into its `early_part`."""
    from lambda_rules import wheel_units
    from lambda_rules.zipper.repack import repack_zip  # imported before the fork: at once

    path = wheel_cache.fetch(wanted)
    written = wheel_units.write_unit(path, wanted.url, archive)
    if zipping is not None:
        work, level, prefix = zipping
        part = early_part(work, written.sha256)
        part.parent.mkdir(parents=True, exist_ok=True)
        # One worker process per wheel already: the repacker starts none of its own.
        repack_zip(archive, part, level=level, prefix=prefix, durable=False, workers=1)
    return written
