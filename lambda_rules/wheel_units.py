"""Locked wheels -> distribution units, straight from each wheel's entries (no tree on disk).

A wheel is read as an installer reads it, with PyPA's `installer`: its one `.dist-info`, its
RECORD (every entry listed, and each entry's sha256 and size checked against it while it is
read), and the `.data/` schemes. It is laid out as `pip install --target` lays it out: the wheel's
root and its `purelib`/`platlib` schemes at the top; `scripts`, `headers` and `data` are left out,
as pip leaves them out of a `--target` folder (pip's `_handle_target_dir` moves only the lib
folders). The RECORD is kept as the wheel ships it, and no INSTALLER is added: what pex's flat
layout held, so the README example's bytes did not change. Then what a package never holds goes
(`units.is_bundled_distribution_path`), and a path two wheels ship (a namespace `__init__.py`)
stays with the first distribution in name order.

Each unit is handed on as `units.UNITS_JSON` describes: a stored archive per unit, as pieces,
which `lambda-zip repack` compresses into a part byte-identical to zipping the unit's files
(`lambda-zip package` has that done early, by the worker that fetched the wheel: `EarlyParts`).
Runs in the Pants rules' sandbox on Pants' interpreter (the standard library, `installer`, and
`sandbox_files.WHEEL_UNPACKER`) and in `lambda-zip package`.
"""

from __future__ import annotations

import json
import multiprocessing
import posixpath
import re
import shutil
import sys
import zipfile
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from installer.exceptions import InstallerError
from installer.records import InvalidRecordEntry, RecordEntry
from installer.sources import WheelFile
from installer.utils import SCHEME_NAMES, parse_metadata_file

from lambda_rules import fetch, units
from lambda_rules.errors import LambdaRulesError
from lambda_rules.zipper import pieces
from lambda_rules.zipper.archive import PlannedEntry, write_archive_to
from lambda_rules.zipper.pipeline import resolve_workers

if TYPE_CHECKING:
    from lambda_rules.unit_cache import UnitCache

# The `.data/` schemes `pip install --target` keeps, at the top of the layout.
LIB_SCHEMES = ("purelib", "platlib")
# RECORD's hashes an installer may trust (the binary distribution format: "sha256 or better";
# md5 and sha1 are not permitted).
RECORD_HASHES = ("sha256", "sha384", "sha512")
# What reading a damaged wheel raises besides installer's errors: zipfile's, zlib's (bad deflate
# data), an encrypted or unknown compression method's, hashlib's for a hash it cannot make.
_DAMAGE = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError)
_METADATA = re.compile(r"[^/]+\.dist-info/(METADATA|WHEEL)")
# Wheels read at once: zlib and sha256 release the GIL while they work on large entries.
_THREADS = 4
# At most this many worker processes, each holding the wheel it lays out in memory. Under Pants
# the workers are not Pants' `concurrency_available`: Pants restarts a process that asks for more
# than one core when it re-balances cores in its first 200 ms, which cost numpy + pandas 0.25 s
# of a 0.84 s step; being a core over for a moment costs less.
_PROCESSES = 4


class WheelError(LambdaRulesError):
    """A wheel that is not what it claims: not a zip, a RECORD that lies, a path that escapes."""


@dataclass(frozen=True)
class LaidOutWheel:
    """One wheel's files as the package holds them: path -> (executable, content)."""

    distribution: units.Distribution
    files: dict[str, tuple[bool, bytes]]


@dataclass(frozen=True)
class _Bytes:
    """A file's content already in memory, as the zipper's writer reads contents."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self) -> bytes:
        return self.data


def lay_out(wheel: Path, *, shown: str) -> LaidOutWheel:
    """The wheel's files as `pip install --target` lays them out, each checked against RECORD;
    `shown` names the wheel in errors (its URL)."""
    try:
        with WheelFile.open(wheel) as source:
            _check_wheel_version(source.read_dist_info("WHEEL"), shown)
            source.validate_record(validate_contents=False)
            layout = _Layout(shown)
            for row, stream, executable in source.get_contents():
                record = RecordEntry.from_elements(*row)
                content = stream.read()
                if record.path != f"{source.dist_info_dir}/RECORD":
                    _check_record(record, content, shown)
                path = _package_path(record.path, shown)
                if path is not None:
                    layout.add(path, (executable, content), record.path)
            name, version = source.distribution, source.version
    except zipfile.BadZipFile as error:
        if str(error) == "File is not a zip file":
            raise WheelError(f"{shown}: not a wheel (not a zip file)") from None
        raise WheelError(f"{shown}: a damaged wheel: {_one_line(error)}") from None
    except (InstallerError, InvalidRecordEntry, ValueError, KeyError, TypeError, *_DAMAGE) as error:
        raise WheelError(f"{shown}: not a valid wheel: {_one_line(error)}") from None
    return LaidOutWheel(units.Distribution(units.canonical_name(name), version), layout.files)


def _check_wheel_version(wheel_file: str, shown: str) -> None:
    """An installer refuses a Wheel-Version of a major it does not know (PEP 427)."""
    version = parse_metadata_file(wheel_file)["Wheel-Version"] or ""
    if version.split(".")[0].strip() != "1":
        raise WheelError(f"{shown}: Wheel-Version {version!r} is not 1.x; refusing the wheel")


def _check_record(record: RecordEntry, content: bytes, shown: str) -> None:
    if record.hash_ is not None and record.hash_.name not in RECORD_HASHES:
        raise WheelError(
            f"{shown}: RECORD hashes {record.path} with {record.hash_.name}, which installers "
            f"may not trust (only {', '.join(RECORD_HASHES)}); refusing the wheel"
        )
    if not record.validate(content):
        raise WheelError(
            f"{shown}: {record.path} does not match the hash and size its RECORD states; the "
            "wheel is damaged or was altered: do not install it"
        )


def _package_path(path: str, shown: str) -> str | None:
    """Where an entry goes in the flat layout, or None when `--target` leaves it out.

    Hand-written, after pip's `_install_wheel`: any top-level `*.data` folder holds schemes,
    split before the path is normalised, so that `x.data/headers/../../pkg/m.py` cannot climb
    out of its scheme. (installer's own split is private, and matches the data folder's name by
    prefix.)"""
    top, _, below = path.partition("/")
    if not top.endswith(".data") or not below:
        return _inside(path, path, shown)
    scheme, _, rest = below.partition("/")
    if scheme not in SCHEME_NAMES or not rest:
        raise WheelError(
            f"{shown}: entry {path!r} is not under a scheme ({', '.join(SCHEME_NAMES)}) of "
            f"{top}/; refusing the wheel"
        )
    normal = _inside(rest, path, shown)
    return normal if scheme in LIB_SCHEMES else None


def _inside(path: str, entry: str, shown: str) -> str:
    normal = posixpath.normpath(path)
    if path.startswith("/") or "\\" in path or normal == ".." or normal.startswith("../"):
        raise WheelError(f"{shown}: entry {entry!r} escapes the wheel's root; refusing the wheel")
    return normal


class _Layout:
    """The files laid out so far, and their folders: two entries on one path (installers
    disagree on which one wins), or a file where another entry has a folder, are refused."""

    def __init__(self, shown: str) -> None:
        self.files: dict[str, tuple[bool, bytes]] = {}
        self.folders: set[str] = set()
        self.shown = shown

    def add(self, path: str, file: tuple[bool, bytes], entry: str) -> None:
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        clash = next((p for p in (path, *parents) if p in self.files), None)
        if clash is None and path in self.folders:
            clash = f"{path}/"
        if clash is not None:
            raise WheelError(
                f"{self.shown}: entry {entry!r} lands on {path!r}, which clashes with {clash!r} "
                "in the layout; refusing the wheel"
            )
        self.files[path] = file
        self.folders.update(parents)


def _one_line(error: BaseException) -> str:
    issues = getattr(error, "issues", None)
    return "; ".join(issues) if issues else " ".join(str(error).split())


@dataclass(frozen=True)
class WrittenUnit:
    """A wheel's unit as a worker wrote it (or the unit cache kept it), whole: every path a
    package may hold."""

    distribution: units.Distribution
    archive: Path
    sizes: dict[str, int]
    metadata: dict[str, bytes]
    sha256: str


def write_unit(wheel: Path, shown: str, archive: Path) -> WrittenUnit:
    """Lay out one wheel and write its stored archive, as pieces, at `archive`; what it holds."""
    laid_out = lay_out(wheel, shown=shown)
    paths = sorted(
        (p for p in laid_out.files if units.is_bundled_distribution_path(p)),
        key=lambda p: p.encode("utf-8"),
    )
    return WrittenUnit(
        laid_out.distribution,
        archive,
        {p: len(laid_out.files[p][1]) for p in paths},
        {p: laid_out.files[p][1] for p in paths if _METADATA.fullmatch(p)},
        _write_archive(
            archive,
            [PlannedEntry(p, laid_out.files[p][0], _Bytes(laid_out.files[p][1])) for p in paths],
        ),
    )


def _write_archive(archive: Path, entries: Sequence[PlannedEntry]) -> str:
    with pieces.create(archive) as written:
        stored = write_archive_to(written, entries, level=None, timestamp=None, workers=1)
    return stored.sha256_hex


@dataclass(frozen=True)
class EarlyParts:
    """Zip each whole unit as soon as its wheel is laid out, into `early_part(folder, ...)`,
    with the level and prefix the part would get later (the same bytes: the same repacker)."""

    folder: Path
    level: int
    prefix: str


def early_part(folder: Path, unit_sha256: str) -> Path:
    """Where `EarlyParts` puts the part of the unit whose stored archive has `unit_sha256`."""
    return folder / f"{unit_sha256}.zip"


def write_units(
    wanted: Sequence[fetch.Wanted],
    wheel_cache: fetch.WheelCache,
    out: Path,
    *,
    early: EarlyParts | None = None,
    meanwhile: Callable[[], object] = lambda: None,
    unit_cache: UnitCache | None = None,
) -> None:
    """Fetch each wanted wheel into `wheel_cache`, lay it out and write its unit into `out`, as
    the steps after read it. When some must be downloaded, or the units zipped `early`, one
    forked worker per wheel fetches, lays out and zips it, while the others download and the
    caller runs `meanwhile`: threads could not overlap that CPU work with the downloads
    (installer's reading and the compressor hold the GIL, and each TLS record a download reads
    waits for it), nor zip in parallel. Against fetching all first, laying out, then zipping one
    after another: README example cold 174 against 222 ms to lay out; numpy + pandas from a warm
    wheel cache, lambda-zip package 1.71 against 2.16 s. Cached wheels only laid out (a Pants
    unpack on a warm named cache) are laid out as before, 14-100 ms faster than forking. A wheel
    whose unit `unit_cache` holds is neither fetched nor read (numpy + pandas: 0.08 s against
    0.47 s to lay out)."""
    out.mkdir(parents=True)
    if unit_cache is not None:
        unit_cache.mark_used()
    scratch = [_scratch_archive(out, k) for k in range(len(wanted))]
    kept = [unit_cache.get(w, scratch[k]) if unit_cache else None for k, w in enumerate(wanted)]
    todo = [k for k, unit in enumerate(kept) if unit is None]
    new = [wanted[k] for k in todo]
    written = _write_new(new, wheel_cache, [scratch[k] for k in todo], early, meanwhile)
    if unit_cache is not None:
        for k, unit in zip(todo, written):
            unit_cache.put(wanted[k], unit)
    _list_units([*(unit for unit in kept if unit is not None), *written], out)


def _write_new(
    wanted: Sequence[fetch.Wanted],
    wheel_cache: fetch.WheelCache,
    scratch: Sequence[Path],
    early: EarlyParts | None,
    meanwhile: Callable[[], object],
) -> list[WrittenUnit]:
    """`write_units` of the wheels no cache held: each written at its `scratch` archive."""
    if not wanted:
        meanwhile()
        return []
    cached = all(wheel_cache.path(w).is_file() for w in wanted)
    if (early is None and cached) or sys.platform != "linux":
        paths = wheel_cache.fetch_all(wanted)
        return _lay_out_all([(paths[w.sha256], fetch.shown_url(w.url)) for w in wanted], scratch)
    # Forking is safe: no thread runs yet. The repacker is imported first, for every worker,
    # and the output flushed, which a worker would otherwise write again as it exits.
    if early is not None:
        from lambda_rules.zipper import repack  # noqa: F401
    sys.stdout.flush()
    sys.stderr.flush()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(len(wanted), fetch.PARALLEL_FETCHES), context) as pool:
        jobs = [(_fetch_and_write, w, wheel_cache, scratch[k], early) for k, w in enumerate(wanted)]
        return _results(pool, jobs, meanwhile)


def _fetch_and_write(
    wanted: fetch.Wanted, wheel_cache: fetch.WheelCache, archive: Path, early: EarlyParts | None
) -> WrittenUnit:
    """One worker's wheel: fetched, its unit written at `archive`, and zipped if `early`."""
    written = write_unit(wheel_cache.fetch(wanted), fetch.shown_url(wanted.url), archive)
    if early is not None:
        from lambda_rules.zipper.repack import repack_zip  # imported before the fork: at once

        part = early_part(early.folder, written.sha256)
        part.parent.mkdir(parents=True, exist_ok=True)
        # One worker process per wheel already: the repacker starts none of its own.
        repack_zip(archive, part, level=early.level, prefix=early.prefix, durable=False, workers=1)
    return written


def _lay_out_all(wheels: Sequence[tuple[Path, str]], scratch: Sequence[Path]) -> list[WrittenUnit]:
    """Each (wheel, shown) of local wheels laid out and written at its `scratch` archive, in
    their order."""
    sizes = [wheel.stat().st_size for wheel, _ in wheels]
    # The largest wheels first: the last to finish decides when all are.
    order = sorted(range(len(wheels)), key=lambda k: -sizes[k])
    with _executor(sizes) as pool:
        written = _results(pool, [(write_unit, *wheels[k], scratch[k]) for k in order])
    by_index = dict(zip(order, written))
    return [by_index[k] for k in range(len(wheels))]


def _results(
    pool: Executor, jobs: Sequence[tuple], meanwhile: Callable[[], object] = lambda: None
) -> list[WrittenUnit]:
    """Every job's result (a function and its arguments), running `meanwhile` while they run;
    the first error cancels the jobs not yet started."""
    futures = [pool.submit(*job) for job in jobs]
    try:
        meanwhile()
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:  # a bad wheel: the others need not be read
            future.cancel()
        raise


def _executor(sizes: Sequence[int]) -> Executor:
    """For local wheels of `sizes`, worker processes from `PARALLEL_MIN_BYTES` on: installer's
    reading holds the GIL, so threads share one core (numpy + pandas on 2 cores: 0.87 s with
    threads, 0.52 s with two processes). Else threads, which overlap what releases the GIL
    (inflating, hashing)."""
    workers = min(len(sizes), resolve_workers(None, sum(sizes), _PROCESSES))
    if workers == 1:
        return ThreadPoolExecutor(max_workers=_THREADS)
    # Forked where that is safe (Linux; no other thread runs here, the fetches are done): a
    # spawned worker starts a new interpreter and imports installer, 0.12-0.19 s before it reads.
    method = "fork" if sys.platform == "linux" else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _scratch_archive(out: Path, index: int) -> Path:
    """Where the `index`th wheel's whole unit is written before `_list_units` keeps it."""
    return out / f"wheel-{index}.zip{pieces.SUFFIX}"


def _list_units(written: Sequence[WrittenUnit], out: Path) -> None:
    """Keep the units written into `out` (by `write_unit`, at `_scratch_archive`s) as the steps
    after read them: `units.json`, each unit's archive, and the dist-info files they read."""
    listed: list[dict[str, object]] = []
    claimed: set[str] = set()
    for unit in sorted(written, key=lambda w: (w.distribution.name, w.distribution.version)):
        paths = [p for p in unit.sizes if p not in claimed]
        claimed.update(paths)
        archive = out / f"{len(listed)}.zip{pieces.SUFFIX}"
        sha256 = _keep(unit, paths, archive)
        if sha256 is None:
            continue
        listed.append(
            {
                "distribution": [unit.distribution.name, unit.distribution.version],
                "paths": sorted(paths),
                "size": sum(unit.sizes[p] for p in paths),
                "sha256": sha256,
            }
        )
        for path, content in unit.metadata.items():
            if path in paths:
                target = out / units.METADATA_DIR / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
    (out / units.UNITS_JSON).write_text(
        json.dumps({"units": listed}, sort_keys=True), encoding="utf-8"
    )


def _keep(unit: WrittenUnit, paths: list[str], archive: Path) -> str | None:
    """Move the unit's archive to `archive` holding only `paths`: a path two wheels ship (a
    namespace `__init__.py`) stays with the first distribution in name order, so the later one's
    archive is written again without it. None when nothing is left."""
    if paths and len(paths) == len(unit.sizes):
        unit.archive.rename(archive)
        return unit.sha256
    if not paths:
        shutil.rmtree(unit.archive)
        return None
    # From the unit's own archive, which holds each path's bytes and exec bit as the wheel laid
    # them out (read as repack reads one): the wheel itself may be absent when the unit came from
    # the unit cache.
    from lambda_rules.zipper.repack import safe_entries

    wanted = set(paths)
    sha256 = _write_archive(archive, [e for e in safe_entries(unit.archive) if e.name in wanted])
    shutil.rmtree(unit.archive)
    return sha256


def install_each(wheels: Sequence[tuple[Path, str]], out: Path) -> None:
    """Install each (wheel, shown) as `pip install --target` would, into a folder of its own,
    `out/<wheel filename>/`, importable as it is: pex's loose layout, which the Pants rules' tool
    runs from."""
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        laid_out = list(pool.map(lambda pair: lay_out(pair[0], shown=pair[1]), wheels))
    for (wheel, _), installed in zip(wheels, laid_out):
        for path, (executable, content) in installed.files.items():
            target = out / wheel.name / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o755 if executable else 0o644)
