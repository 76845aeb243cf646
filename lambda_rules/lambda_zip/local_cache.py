"""A local content-addressed cache of parts and resolutions, for `lambda-zip package` (no Pants
imports).

A part is one distribution unit compressed (and compiled) by the zipper; its bytes depend only on
what `PartKey` hashes: the unit's stored archive (its sha256 covers every path, content and exec
bit), the zipper's and the bytecode compiler's own sources, the pinned compressor, the level, the
package prefix, and for bytecode the exact CPython and the load prefix. So a second function on
the same requirements, or a CI runner that keeps the folder, compresses nothing again.

Beside the parts it keeps how each set of locked wheels was laid out into units (`units.json`
and the METADATA files), keyed by the wheels' sha256s and the layout's own sources: a second
function on the same wheels then reads no wheel, only the parts. And each SBOM template, keyed
by the parts it describes, as the Pants rules cache it: a second function on the same parts
writes no SBOM template again (nor imports cyclonedx-python-lib).

Entries are written atomically (a temporary file renamed into place), so concurrent runs sharing
the folder see a whole entry or none; both write the same bytes. Each entry records its own
sha256, so a damaged one is detected on read, reported, and rebuilt.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from lambda_rules import sandbox_files
from lambda_rules.zipper.output import replaced_atomically
from lambda_rules.zipper.summary import file_sha256

# Bump when the meaning of a key changes.
_FORMAT = 2
# Where documents are kept beside the parts: layouts of locked wheels, and SBOM templates.
_RESOLUTIONS = "resolutions"
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

    digest = hashlib.sha256(f"deflate {getattr(deflate, '__version__', '?')}\n".encode())
    for file_set in (sandbox_files.ZIPPER, sandbox_files.BYTECODE_COMPILER):
        for path, content in file_set.read().items():
            digest.update(f"{path} {hashlib.sha256(content).hexdigest()}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class PartKey:
    """Everything that decides a part's bytes, hashed."""

    digest: str

    @classmethod
    def of(cls, unit: str, *, tool: str, settings: Mapping[str, object]) -> PartKey:
        """`unit`: the sha256 of the unit's stored archive; `settings`: the zipper's and
        compiler's options (level, prefix, compiler version, ...)."""
        document = {
            "format": _FORMAT,
            "tool": tool,
            "settings": dict(sorted(settings.items())),
            "unit": unit,
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return cls(hashlib.sha256(text.encode()).hexdigest())


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


def resolution_key(**inputs: object) -> str:
    """The key of a layout: the wheels, and the sources and `installer` version that lay them
    out."""
    layout = hashlib.sha256()
    for path, content in sandbox_files.WHEEL_UNPACKER.read().items():
        layout.update(f"{path} {hashlib.sha256(content).hexdigest()}\n".encode())
    document = {"format": _FORMAT, "layout": layout.hexdigest(), **inputs}
    document["installer"] = _installer_version()
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sbom_template_key(**inputs: object) -> str:
    """The key of an SBOM template: its inputs (the parts' keys, the lock, the platform), and
    the SBOM writer's sources and cyclonedx-python-lib's version."""
    from importlib.metadata import version

    writer = hashlib.sha256(f"cyclonedx-python-lib {version('cyclonedx-python-lib')}\n".encode())
    for path, content in sandbox_files.TOOL.read().items():
        writer.update(f"{path} {hashlib.sha256(content).hexdigest()}\n".encode())
    document = {"format": _FORMAT, "writer": writer.hexdigest(), **inputs}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _installer_version() -> str:
    from importlib.metadata import version

    return version("installer")


def _replace_atomically(destination: Path, data: bytes) -> None:
    with replaced_atomically(destination) as f:
        f.write(data)
