"""Units already written, by their wheel's sha256: a wheel is laid out once per machine.

A unit is a pure function of its wheel's bytes and of the sources that lay it out, so an entry
serves every target, lock and set of wheels that pins the wheel: a lock that bumps one pin, or a
function whose requirements overlap another's, lays out only the wheels it has not seen. pex keeps
installed wheels the same way. The caller names the laying-out sources in the cache's root
(`sandbox_files.fingerprint`), so an edit of them never reads an older layout.

An entry is `<2 hex>/<wheel sha256>/`: `unit.zip.pieces/`, the unit's stored archive as
`wheel_units.write_unit` wrote it, and `unit.json`, what else the unit is (distribution, sizes,
dist-info metadata) with the archive's sha256. It is written into a temporary folder and renamed
into place whole, so concurrent runs see a whole entry or none, and both write the same bytes. The
archive is hashed again as it is read: a damaged entry is missed, removed and written anew. Like
Pants' own caches, it is not a root of trust: `lambda-zip verify` lays the wheels out again from
their checked bytes, with an empty cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lambda_rules import units
from lambda_rules.zipper import pieces

if TYPE_CHECKING:
    from lambda_rules.wheel_units import WrittenUnit

_ARCHIVE = f"unit.zip{pieces.SUFFIX}"
_DOCUMENT = "unit.json"


@dataclass(frozen=True)
class UnitCache:
    root: Path

    def _entry(self, wheel_sha256: str) -> Path:
        return self.root / wheel_sha256[:2] / wheel_sha256

    def get(self, wheel_sha256: str, archive: Path) -> WrittenUnit | None:
        """The wheel's unit with its archive linked (or copied) to `archive`, or None."""
        from lambda_rules.wheel_units import WrittenUnit

        entry = self._entry(wheel_sha256)
        try:
            document = json.loads((entry / _DOCUMENT).read_bytes())
            sha256 = _link_pieces(entry / _ARCHIVE, archive, hashlib.sha256())
            if sha256 != document["sha256"]:
                raise ValueError(f"its archive's sha256 is {sha256}, not {document['sha256']}")
            name, version = document["distribution"]
            return WrittenUnit(
                units.Distribution(name, version),
                archive,
                dict(document["sizes"]),
                {path: base64.b64decode(data) for path, data in document["metadata"].items()},
                sha256,
            )
        except FileNotFoundError:
            shutil.rmtree(archive, ignore_errors=True)
            return None
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(archive, ignore_errors=True)
            self._discard(entry)
            return None

    def put(self, wheel_sha256: str, unit: WrittenUnit) -> None:
        """Keep `unit` (its archive linked where the file system allows, else copied). A run
        that cannot write the cache (read-only, or another run was first) goes on without."""
        entry = self._entry(wheel_sha256)
        if entry.exists():
            return
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".put-"))
        except OSError:
            return
        try:
            _link_pieces(unit.archive, partial / _ARCHIVE, None)
            document = {
                "distribution": [unit.distribution.name, unit.distribution.version],
                "sizes": unit.sizes,
                "metadata": {p: base64.b64encode(c).decode() for p, c in unit.metadata.items()},
                "sha256": unit.sha256,
            }
            (partial / _DOCUMENT).write_text(json.dumps(document, sort_keys=True), "utf-8")
            os.rename(partial, entry)
        except OSError:
            pass
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _discard(self, entry: Path) -> None:
        """Move a damaged entry out of the way, then remove it, so a whole one can take its
        place even while another run still reads it."""
        try:
            doomed = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".damaged-"))
            os.rename(entry, doomed / "entry")
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)


def _link_pieces(source: Path, target: Path, digest: hashlib._Hash | None) -> str:
    """Link (else copy) each piece of `source` into the new folder `target`; with `digest`, the
    sha256 of the archive they make up, read as they are linked."""
    target.mkdir()
    for name in sorted(os.listdir(source)):  # pieces are named by their zero-padded index
        if digest is not None:
            with open(source / name, "rb") as piece:
                for chunk in iter(lambda: piece.read(1 << 20), b""):
                    digest.update(chunk)
        try:
            os.link(source / name, target / name)
        except OSError:
            shutil.copyfile(source / name, target / name)
    return digest.hexdigest() if digest is not None else ""
