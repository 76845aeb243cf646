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
which `lambda-zip repack` compresses into a part byte-identical to zipping the unit's files.
Runs in the Pants rules' sandbox on the tool's interpreter (the standard library, `installer`,
and `sandbox_files.WHEEL_UNPACKER`) and in `lambda-zip package`.
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from installer.exceptions import InstallerError
from installer.records import RecordEntry
from installer.sources import WheelFile

from lambda_rules import units
from lambda_rules.errors import LambdaRulesError
from lambda_rules.zipper import pieces
from lambda_rules.zipper.archive import PlannedEntry, write_archive_to

# The `.data/` schemes `pip install --target` keeps, at the top of the layout.
LIB_SCHEMES = ("purelib", "platlib")
_METADATA = re.compile(r"[^/]+\.dist-info/(METADATA|WHEEL)")
# Wheels read at once: zlib and sha256 release the GIL while they work on large entries.
_THREADS = 4
# How the Pants rules compile the tool where it runs, its sources and its installed requirements
# alike (`python ARGS DIRECTORY`, with `TOOL_BYTECODE_ENV`). Unchecked-hash bytecode (PEP 552)
# stays valid whatever mtimes a sandbox gives the files, so no run of the tool compiles a module
# again; a fixed hash seed keeps set constants in one order, so every machine writes the same
# bytes and the same cache keys downstream (-S rather than -I, which would ignore PYTHONHASHSEED).
TOOL_BYTECODE_ARGS = ("-S", "-m", "compileall", "-q", "--invalidation-mode=unchecked-hash")
TOOL_BYTECODE_ENV = {"PYTHONHASHSEED": "0"}


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
            source.validate_record(validate_contents=False)
            data_dir = source.data_dir
            files = {}
            for row, stream, executable in source.get_contents():
                record = RecordEntry.from_elements(*row)
                content = stream.read()
                if record.path != f"{source.dist_info_dir}/RECORD" and not record.validate(content):
                    raise WheelError(
                        f"{shown}: {record.path} does not match the sha256 and size its RECORD "
                        "states; the wheel is damaged or was altered: do not install it"
                    )
                path = _package_path(record.path, data_dir, shown)
                if path is not None:
                    files[path] = (executable, content)
            name, version = source.distribution, source.version
    except zipfile.BadZipFile:
        raise WheelError(f"{shown}: not a wheel (not a zip file)") from None
    except (InstallerError, ValueError, KeyError) as error:
        raise WheelError(f"{shown}: not a valid wheel: {_one_line(error)}") from None
    return LaidOutWheel(units.Distribution(units.canonical_name(name), version), files)


def _package_path(path: str, data_dir: str, shown: str) -> str | None:
    """Where an entry goes in the flat layout, or None when `--target` leaves it out."""
    normal = posixpath.normpath(path)
    if path.startswith("/") or "\\" in path or normal == ".." or normal.startswith("../"):
        raise WheelError(f"{shown}: entry {path!r} escapes the wheel's root; refusing the wheel")
    if not normal.startswith(f"{data_dir}/"):
        return normal
    scheme, _, rest = normal[len(data_dir) + 1 :].partition("/")
    return rest if scheme in LIB_SCHEMES and rest else None


def _one_line(error: BaseException) -> str:
    issues = getattr(error, "issues", None)
    return "; ".join(issues) if issues else " ".join(str(error).split())


def write_units(wheels: Sequence[tuple[Path, str]], out: Path) -> None:
    """Lay out each (wheel, shown) and write its unit into `out`, as the steps after read it."""
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        laid_out = list(pool.map(lambda pair: lay_out(pair[0], shown=pair[1]), wheels))
    laid_out.sort(key=lambda w: (w.distribution.name, w.distribution.version))
    out.mkdir(parents=True)
    listed: list[dict[str, object]] = []
    claimed: set[str] = set()
    for wheel in laid_out:
        paths = sorted(
            (p for p in wheel.files if units.is_bundled_distribution_path(p) and p not in claimed),
            key=lambda p: p.encode("utf-8"),
        )
        if not paths:
            continue
        claimed.update(paths)
        index = len(listed)
        entries = [PlannedEntry(p, wheel.files[p][0], _Bytes(wheel.files[p][1])) for p in paths]
        with pieces.create(out / f"{index}.zip{pieces.SUFFIX}") as written:
            stored = write_archive_to(written, entries, level=None, timestamp=None, workers=1)
        distribution = wheel.distribution
        listed.append(
            {
                "distribution": [distribution.name, distribution.version],
                "paths": sorted(paths),
                "size": sum(len(wheel.files[p][1]) for p in paths),
                "sha256": stored.sha256_hex,
            }
        )
        for path in paths:
            if _METADATA.fullmatch(path):
                target = out / units.METADATA_DIR / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wheel.files[path][1])
    (out / units.UNITS_JSON).write_text(
        json.dumps({"units": listed}, sort_keys=True), encoding="utf-8"
    )


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


def compile_installed(python: str, out: Path) -> None:
    """Compile what `install_each` wrote, as the tool's sources are compiled: every process of the
    tool imports it (the SBOM writer's requirements took 0.15 s of its 0.37 s to compile)."""
    subprocess.run([python, *TOOL_BYTECODE_ARGS, str(out)], env=TOOL_BYTECODE_ENV, check=True)
