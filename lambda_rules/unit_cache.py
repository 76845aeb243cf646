"""Units already written, by their wheel: a wheel is laid out once per machine.

A unit is a pure function of its wheel's bytes and file name (installer reads the distribution,
version and dist-info folder from the name) and of the sources that lay it out, so an entry
serves every target, lock and set of wheels that pins the wheel: a lock that bumps one pin, or a
function whose requirements overlap another's, lays out only the wheels it has not seen. pex keeps
installed wheels the same way. The caller names the laying-out sources in the cache's root
(`sandbox_files.fingerprint`), so an edit of them never reads an older layout.

An entry is `<2 hex>/<wheel sha256>/<wheel file name>/`: `unit.zip.pieces/`, the unit's stored
archive as `wheel_units.write_unit` wrote it, and `unit.json`, what else the unit is
(distribution, sizes, dist-info metadata) with the archive's sha256 and the document's own. It is
written into a temporary folder and renamed into place whole, so concurrent runs see a whole entry
or none, and both write the same bytes. Both are hashed again as they are read: a damaged entry
is missed, removed and written anew; an entry this run cannot read is only missed. What a killed
run leaves beside an entry is removed by a later run that reads or writes it, and a layout's
folder that no run has used for 30 days by any run that marks its own (`mark_used`). Like Pants'
own caches, it is not a root of trust: `lambda-zip verify` lays the wheels out again from their
checked bytes, with an empty cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lambda_rules import fetch, units
from lambda_rules.zipper import pieces
from lambda_rules.zipper.summary import file_sha256

if TYPE_CHECKING:
    from lambda_rules.wheel_units import WrittenUnit

_ARCHIVE = f"unit.zip{pieces.SUFFIX}"
_DOCUMENT = "unit.json"
# Temporary folders beside an entry: one being written, one being removed.
_PARTIAL, _DOOMED = ".put-", ".damaged-"
# Older than this, such a folder is what a killed run left (writing an entry takes well under a
# second; even a copy of the largest wheels takes seconds), and the next run that reads or writes
# the entry removes it.
_ABANDONED_AFTER_SECONDS = 3600
# The caller names the root by the laying-out sources, so each version of them (of this plugin, or
# of installer) has a folder of its own beside the others. One that no run has used for this long
# is one no checkout on the machine runs any more: it is removed, as an upgrade would otherwise
# leave the old units on disk for good. A run marks its own as used (the folder's mtime).
_LAYOUT_UNUSED_AFTER_SECONDS = 30 * 24 * 3600
_RETIRED = ".retired-"
# A layout's folder name: `sandbox_files.fingerprint`'s sha256. Nothing else beside the root is
# ever removed, whatever folder a caller puts it in.
_LAYOUT_NAME = re.compile(r"[0-9a-f]{64}")


class _Damaged(ValueError):
    """An entry whose archive or document is not what it records."""


@dataclass(frozen=True)
class UnitCache:
    root: Path

    def mark_used(self) -> None:
        """Mark this layout's folder as used now, and remove the other layouts' folders that
        have not been for `_LAYOUT_UNUSED_AFTER_SECONDS`. Never an error: it is housekeeping."""
        if not _LAYOUT_NAME.fullmatch(self.root.name):
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            os.utime(self.root)
            with os.scandir(self.root.parent) as listing:
                layouts = list(listing)
        except OSError:
            return  # read-only: nothing to mark or remove
        unused = time.time() - _LAYOUT_UNUSED_AFTER_SECONDS
        for layout in layouts:
            if layout.name.startswith(_RETIRED):
                shutil.rmtree(layout.path, ignore_errors=True)  # what a killed run was removing
            elif _LAYOUT_NAME.fullmatch(layout.name) and layout.name != self.root.name:
                _retire_if_unused(Path(layout.path), unused)

    def _entry(self, wheel: fetch.Wanted) -> Path:
        return self.root / wheel.sha256[:2] / wheel.sha256 / wheel.filename

    def get(self, wheel: fetch.Wanted, archive: Path) -> WrittenUnit | None:
        """The wheel's unit with its archive linked (or copied) to `archive`, or None."""
        entry = self._entry(wheel)
        if not entry.is_dir():
            return None
        _sweep(entry.parent)
        try:
            unit = _read(entry, archive)
        except _Damaged:
            shutil.rmtree(archive, ignore_errors=True)
            _discard(entry)
            return None
        except OSError:  # unreadable here (permissions, a full disk): not the entry's fault
            shutil.rmtree(archive, ignore_errors=True)
            return None
        return unit

    def put(self, wheel: fetch.Wanted, unit: WrittenUnit) -> None:
        """Keep `unit` (its archive linked where the file system allows, else copied). A run
        that cannot write the cache (read-only, or another run was first) goes on without."""
        entry = self._entry(wheel)
        if (entry / _DOCUMENT).is_file():
            return
        _discard(entry)  # what a killed run or a lost disk left of it, if anything
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            _sweep(entry.parent)
            partial = Path(tempfile.mkdtemp(dir=entry.parent, prefix=_PARTIAL))
        except OSError:
            return
        try:
            _link_pieces(unit.archive, partial / _ARCHIVE)
            (partial / _DOCUMENT).write_bytes(_document(unit))
            os.rename(partial, entry)
        except OSError:
            pass
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def _document(unit: WrittenUnit) -> bytes:
    described = {
        "distribution": [unit.distribution.name, unit.distribution.version],
        "sizes": unit.sizes,
        "metadata": {p: base64.b64encode(c).decode() for p, c in unit.metadata.items()},
        "sha256": unit.sha256,
    }
    text = json.dumps(described, sort_keys=True)
    return json.dumps({"unit": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}).encode()


def _read(entry: Path, archive: Path) -> WrittenUnit:
    """The entry's unit, its archive placed at `archive`; `_Damaged` if either is not whole."""
    from lambda_rules.wheel_units import WrittenUnit

    raw = (entry / _DOCUMENT).read_bytes()
    try:
        outer = json.loads(raw)
        text = outer["unit"]
        if hashlib.sha256(text.encode()).hexdigest() != outer["sha256"]:
            raise _Damaged(f"{entry}: its document does not match its sha256")
        described = json.loads(text)
        name, version = described["distribution"]
        sizes = {str(p): int(n) for p, n in described["sizes"].items()}
        metadata = {
            str(p): base64.b64decode(c, validate=True) for p, c in described["metadata"].items()
        }
        sha256 = str(described["sha256"])
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
        raise _Damaged(f"{entry}: {error}") from None
    if not (entry / _ARCHIVE).is_dir():
        raise _Damaged(f"{entry}: no archive")
    _link_pieces(entry / _ARCHIVE, archive)
    # Hashed from what was placed, not from where it came from.
    if file_sha256(archive)[0] != sha256:
        raise _Damaged(f"{entry}: its archive does not match its sha256")
    return WrittenUnit(
        units.Distribution(str(name), str(version)), archive, sizes, metadata, sha256
    )


def _sweep(folder: Path) -> None:
    """Remove what killed runs left beside an entry, once it is old enough not to be a live
    run's: whichever later run reads or writes the entry does it."""
    abandoned = time.time() - _ABANDONED_AFTER_SECONDS
    try:
        with os.scandir(folder) as listing:
            left = [e for e in listing if e.name.startswith((_PARTIAL, _DOOMED))]
    except OSError:
        return  # unreadable here: it stays for a later run
    for leftover in left:
        try:
            if leftover.stat(follow_symlinks=False).st_mtime < abandoned:
                shutil.rmtree(leftover.path, ignore_errors=True)
        except OSError:
            pass  # another run swept it first


def _retire_if_unused(layout: Path, unused: float) -> None:
    """Remove `layout` if no run has used it since `unused` (as `_discard` removes an entry, so
    a run that starts using it meanwhile finds it whole or not at all)."""
    try:
        if layout.lstat().st_mtime < unused:
            _discard(layout, prefix=_RETIRED)
    except OSError:
        pass  # another run retired it first


def _discard(entry: Path, prefix: str = _DOOMED) -> None:
    """Move an entry out of the way, then remove it, so a whole one can take its place even
    while another run still reads it."""
    if not entry.exists():
        return
    try:
        doomed = Path(tempfile.mkdtemp(dir=entry.parent, prefix=prefix))
    except OSError:
        return
    try:
        os.rename(entry, doomed / "entry")
    except OSError:
        pass  # another run moved it first
    shutil.rmtree(doomed, ignore_errors=True)


def _link_pieces(source: Path, target: Path) -> None:
    """Link (else copy) each piece of `source` into the new folder `target`."""
    target.mkdir()
    for name in os.listdir(source):
        try:
            os.link(source / name, target / name)
        except OSError:
            shutil.copyfile(source / name, target / name)
