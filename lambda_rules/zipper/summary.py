"""What a build or repack reports: digests, sizes and the entry list, for manifests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from lambda_rules.zipper import pieces


@dataclass(frozen=True)
class EntrySummary:
    name: str
    size: int
    mode: int
    """Permission bits as stored: 0o644, or 0o755 for executables."""
    crc32: int


_TOTALS_KEYS = ("sha256_hex", "sha256_base64", "zipped_size", "unzipped_size", "entry_count")


def _totals(document: dict[str, Any]) -> dict[str, Any]:
    return {key: document[key] for key in _TOTALS_KEYS}


@dataclass(frozen=True)
class ZipTotals:
    """An archive's digests and sizes, without its entry list: all a manifest states of it."""

    sha256_hex: str
    sha256_base64: str
    """base64 of the raw digest, as Terraform's filebase64sha256 and Lambda's CodeSha256 show it."""
    zipped_size: int
    unzipped_size: int
    entry_count: int

    @classmethod
    def from_json(cls, text: str | bytes) -> ZipTotals:
        """The totals of a `--totals-json` or a `--summary-json` document."""
        return cls(**_totals(json.loads(text)))

    def totals_json(self) -> str:
        """Stable JSON (sorted keys, fixed indentation, trailing newline) for --totals-json: a
        build tool packaging many archives reads this, not thousands of entries per archive."""
        document = {key: getattr(self, key) for key in _TOTALS_KEYS}
        return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class ZipSummary(ZipTotals):
    entries: tuple[EntrySummary, ...]

    @classmethod
    def from_json(cls, text: str | bytes) -> ZipSummary:
        """The summary `to_json` wrote (what `--summary-json` hands to a build tool)."""
        document = json.loads(text)
        return cls(
            **_totals(document),
            entries=tuple(
                EntrySummary(
                    name=entry["name"],
                    size=entry["size"],
                    mode=int(entry["mode"], 8),
                    crc32=int(entry["crc32"], 16),
                )
                for entry in document["entries"]
            ),
        )

    def to_json(self) -> str:
        """Stable JSON (sorted keys, fixed indentation, trailing newline) for --summary-json.

        The text of `json.dumps(..., sort_keys=True, indent=2, ensure_ascii=False)`, but each entry
        goes through the C encoder: with `indent`, json falls back to its pure-Python encoder,
        which took 40 ms of every numpy + pandas merge (3,661 entries). test_zip_format checks
        that both texts are equal.
        """
        scalars = self.totals_json()
        encode = json.JSONEncoder(ensure_ascii=False).encode
        entries = ",\n".join(
            '    {\n      "crc32": "%08x",\n      "mode": "%04o",\n      "name": %s,\n'
            '      "size": %d\n    }' % (e.crc32, e.mode, encode(e.name), e.size)
            for e in self.entries
        )
        listed = f"[\n{entries}\n  ]" if entries else "[]"
        # "entries" sorts first; `scalars` starts with "{\n" and holds the other keys.
        return '{\n  "entries": ' + listed + ",\n" + scalars[2:]


def sha256_forms(digest: bytes) -> tuple[str, str]:
    """(hex, base64) of a raw SHA-256 digest."""
    return digest.hex(), base64.b64encode(digest).decode("ascii")


def file_sha256(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(hex, base64) SHA-256 of a file, or of the archive a directory of pieces makes up, read in
    chunks."""
    digest = hashlib.sha256()
    with pieces.open_input(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return sha256_forms(digest.digest())
