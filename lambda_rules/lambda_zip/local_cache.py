"""A local content-addressed cache of parts and resolutions, for `lambda-zip package` (no Pants
imports).

A part is one distribution unit compressed (and compiled) by the zipper; its bytes depend only on
what `PartKey` hashes: the unit's stored archive (its sha256 covers every path, content and exec
bit), the zipper's and the bytecode compiler's own sources, the pinned compressor, the level, the
package prefix, and for bytecode the exact CPython and the load prefix. So a second function on
the same requirements, or a CI runner that keeps the folder, compresses nothing again.

Beside the parts it keeps each choice of wheels from a lock (keyed by the lock's bytes and path,
the requirements, the platform, and the sources and `packaging` version that choose): a second
function on the same requirements parses no lock. It keeps how each set of locked wheels was
laid out into units (`units.json` and the METADATA files), keyed by the wheels' sha256s and the
layout's own sources: a second function on the same wheels then reads no wheel, only the parts.
And each SBOM template, keyed by the parts it describes, as the Pants rules cache it: a second
function on the same parts writes no SBOM template again (nor imports cyclonedx-python-lib).

Entries are written atomically (a temporary file renamed into place), so concurrent runs sharing
the folder see a whole entry or none; both write the same bytes. Each entry records its own
sha256, so a damaged one is detected on read, reported, and rebuilt.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from lambda_rules import sandbox_files
from lambda_rules.locks import LockedWheel
from lambda_rules.zipper.output import replaced_atomically
from lambda_rules.zipper.summary import file_sha256

# Bump when the meaning of a key changes.
_FORMAT = 2
# Where documents are kept beside the parts: layouts of locked wheels, and SBOM templates.
_RESOLUTIONS = "resolutions"
_SELECTIONS = "selections"
SBOM_TEMPLATES = "sbom-templates"


def default_cache_dir() -> Path:
    """$LAMBDA_ZIP_CACHE_DIR, else $XDG_CACHE_HOME/lambda-zip, else ~/.cache/lambda-zip."""
    if os.environ.get("LAMBDA_ZIP_CACHE_DIR"):
        return Path(os.environ["LAMBDA_ZIP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lambda-zip"


def tool_fingerprint() -> str:
    """What of this installation decides a part's bytes: our zipper and compiler sources, and
    the compressor's version."""
    import deflate  # the pinned libdeflate binding; its version fixes the compressed bytes

    return _fingerprint(
        f"deflate {getattr(deflate, '__version__', '?')}",
        _digests(sandbox_files.ZIPPER),
        _digests(sandbox_files.BYTECODE_COMPILER),
    )


def _fingerprint(head: str, *digests: Mapping[str, str]) -> str:
    """A digest of `head` and each source file's path and sha256 (in order, per mapping)."""
    digest = hashlib.sha256(f"{head}\n".encode())
    for files in digests:
        for path, sha256 in files.items():
            digest.update(f"{path} {sha256}\n".encode())
    return digest.hexdigest()


def _digests(file_set: sandbox_files.FileSet) -> dict[str, str]:
    return {path: _file_sha256(path) for path in file_set.paths()}


@functools.lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
    """A file of ours, hashed once per process: the zipper's files are in three of the sets that
    the keys of one run hash."""
    return hashlib.sha256((sandbox_files.SOURCE_ROOT / path).read_bytes()).hexdigest()


def _key(**document: object) -> str:
    text = json.dumps({"format": _FORMAT, **document}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PartKey:
    """Everything that decides a part's bytes, hashed."""

    digest: str

    @classmethod
    def of(cls, unit: str, *, tool: str, settings: Mapping[str, object]) -> PartKey:
        """`unit`: the sha256 of the unit's stored archive; `settings`: the zipper's and
        compiler's options (level, prefix, compiler version, ...)."""
        return cls(_key(tool=tool, settings=dict(sorted(settings.items())), unit=unit))


@dataclass(frozen=True)
class CachedPart:
    path: Path
    compiled_by: str | None


class PartsCache:
    """Parts under `root/parts/<2 hex>/<key>.zip`, each with `<key>.json` naming its sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.damaged: list[str] = []

    def _paths(self, key: PartKey) -> tuple[Path, Path]:
        directory = self.root / "parts" / key.digest[:2]
        return directory / f"{key.digest}.zip", directory / f"{key.digest}.json"

    def get(self, key: PartKey) -> CachedPart | None:
        """The part, if present and whole; a damaged entry is noted in `damaged` and missed."""
        part, record = self._paths(key)
        try:
            meta = json.loads(record.read_text(encoding="utf-8"))
            actual = file_sha256(part)[0]
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            self.damaged.append(f"{record}: {error}")
            return None
        if actual != meta.get("sha256"):
            self.damaged.append(f"{part}: its sha256 is {actual}, not {meta.get('sha256')}")
            return None
        return CachedPart(part, meta.get("compiled_by"))

    def get_resolution(self, key: str) -> Resolution | None:
        """A resolve's record, if present and whole."""
        data = self.get_document(_RESOLUTIONS, key)
        if data is None:
            return None
        try:
            return Resolution.from_json(data)
        except (ValueError, KeyError, TypeError) as error:
            self.damaged.append(f"{self.root / _RESOLUTIONS / key}.json: {error}")
            return None

    def put_resolution(self, key: str, resolution: Resolution) -> None:
        self.put_document(_RESOLUTIONS, key, resolution.to_json())

    def get_selection(self, key: str) -> tuple[LockedWheel, ...] | None:
        """A choice of wheels, if present and whole."""
        data = self.get_document(_SELECTIONS, key)
        if data is None:
            return None
        try:
            return tuple(LockedWheel(*fields) for fields in json.loads(data))
        except (ValueError, TypeError) as error:
            self.damaged.append(f"{self.root / _SELECTIONS / key}.json: {error}")
            return None

    def put_selection(self, key: str, wheels: tuple[LockedWheel, ...]) -> None:
        fields = [[w.name, w.version, w.url, w.sha256] for w in wheels]
        self.put_document(_SELECTIONS, key, json.dumps(fields).encode())

    def get_document(self, folder: str, key: str) -> bytes | None:
        """A document kept under `folder`, if present and whole (its sha256 is recorded beside
        it)."""
        path = self.root / folder / f"{key}.json"
        try:
            data = path.read_bytes()
            expected = path.with_suffix(".sha256").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            self.damaged.append(f"{path}: its sha256 is not the one recorded beside it")
            return None
        return data

    def put_document(self, folder: str, key: str, data: bytes) -> None:
        path = self.root / folder / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_atomically(path, data)
        _replace_atomically(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())

    def put(self, key: PartKey, built: Path, compiled_by: str | None) -> CachedPart:
        """Move `built` into the cache (atomically, part before record) and return the entry."""
        part, record = self._paths(key)
        part.parent.mkdir(parents=True, exist_ok=True)
        meta = {"sha256": file_sha256(built)[0], "compiled_by": compiled_by}
        _replace_atomically(part, built.read_bytes())
        _replace_atomically(record, json.dumps(meta, sort_keys=True).encode())
        return CachedPart(part, compiled_by)


@dataclass(frozen=True)
class Resolution:
    """How a set of locked wheels was laid out, as the rest of `package` needs it without the
    wheels: the units' listing (`units.UNITS_JSON`) and each `*.dist-info/METADATA`."""

    listing: bytes
    metadata: dict[str, bytes]

    def to_json(self) -> bytes:
        document = {
            "listing": self.listing.decode("utf-8"),
            "metadata": {p: base64.b64encode(c).decode() for p, c in self.metadata.items()},
        }
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Resolution:
        document = json.loads(data)
        return cls(
            listing=document["listing"].encode("utf-8"),
            metadata={p: base64.b64decode(c) for p, c in document["metadata"].items()},
        )


def selection_key(**inputs: object) -> str:
    """The key of a choice of wheels: its inputs, and what chooses (our sources that the tool's
    processes run, `locks` and `platforms` among them, and `packaging`'s version)."""
    import packaging  # its __init__ holds only the version

    chooser = _fingerprint(f"packaging {packaging.__version__}", _digests(sandbox_files.TOOL))
    return _key(chooser=chooser, **inputs)


def resolution_key(**inputs: object) -> str:
    """The key of a layout: the wheels, and the sources that lay them out, installer's included
    (as the Pants rules ship them to the unpacking process). Hashed rather than asking
    `importlib.metadata` for installer's version, which would import `email` on every run."""
    return _key(layout=layout_fingerprint(), **inputs)


@functools.lru_cache(maxsize=None)
def layout_fingerprint() -> str:
    """What lays wheels out: the key of a layout, and the name of the unit cache's folder (a
    cold run asks for both)."""
    return sandbox_files.fingerprint(sandbox_files.layout_sources())


def sbom_template_key(**inputs: object) -> str:
    """The key of an SBOM template: its inputs (the parts' keys, the lock, the platform), and
    the SBOM writer's sources and cyclonedx-python-lib's version."""
    import cyclonedx  # its __init__ holds only the version, which its releases keep current

    writer = _fingerprint(
        f"cyclonedx-python-lib {cyclonedx.__version__}", _digests(sandbox_files.TOOL)
    )
    return _key(writer=writer, **inputs)


def _replace_atomically(destination: Path, data: bytes) -> None:
    with replaced_atomically(destination) as f:
        f.write(data)
