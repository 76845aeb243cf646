"""Byte-for-byte reproducible AWS Lambda ZIP archives, without Pants.

The same names, contents and exec bits give the same archive bytes on any
host, CPython 3.9-3.13, umask, TZ, locale, mtimes or worker count. See
format.py for the canonical form and compress.py for the pinned compressor.
"""

from __future__ import annotations

import importlib
from typing import Any

# Each public name and the module of ours that defines it, imported on first use (PEP 562): the
# `.pyc` compiler reads `zipper.pieces` under the runtime's CPython, where deflate is not installed.
_DEFINED_IN = {
    "build_zip": "build",
    "DEFAULT_LEVEL": "compress",
    "diff_archives": "diff",
    "CorruptArchiveError": "errors",
    "FormatLimitError": "errors",
    "InputTreeError": "errors",
    "UnsafeArchiveError": "errors",
    "ZipError": "errors",
    "DEFAULT_EXCLUDES": "filters",
    "MergeConflictError": "merge",
    "NonCanonicalPartError": "merge",
    "merge_zips": "merge",
    "RepackLimits": "repack",
    "repack_zip": "repack",
    "EntrySummary": "summary",
    "ZipSummary": "summary",
    "ZipTotals": "summary",
    "file_sha256": "summary",
    "timestamp_from_environment": "timestamps",
}


def __getattr__(name: str) -> Any:
    if name not in _DEFINED_IN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_DEFINED_IN[name]}"), name)


__all__ = [
    "DEFAULT_EXCLUDES",
    "DEFAULT_LEVEL",
    "CorruptArchiveError",
    "EntrySummary",
    "FormatLimitError",
    "InputTreeError",
    "MergeConflictError",
    "NonCanonicalPartError",
    "RepackLimits",
    "UnsafeArchiveError",
    "ZipError",
    "ZipSummary",
    "ZipTotals",
    "build_zip",
    "diff_archives",
    "file_sha256",
    "merge_zips",
    "repack_zip",
    "timestamp_from_environment",
]
