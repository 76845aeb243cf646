"""Byte-for-byte reproducible AWS Lambda ZIP archives, without Pants.

The same names, contents and exec bits give the same archive bytes on any
host, CPython 3.9-3.13, umask, TZ, locale, mtimes or worker count. See
format.py for the canonical form and compress.py for the pinned compressor.
"""

from __future__ import annotations

from lambda_rules.zipper.build import build_zip
from lambda_rules.zipper.compress import DEFAULT_LEVEL
from lambda_rules.zipper.diff import diff_archives
from lambda_rules.zipper.errors import (
    CorruptArchiveError,
    FormatLimitError,
    InputTreeError,
    UnsafeArchiveError,
    ZipError,
)
from lambda_rules.zipper.filters import DEFAULT_EXCLUDES
from lambda_rules.zipper.merge import MergeConflictError, NonCanonicalPartError, merge_zips
from lambda_rules.zipper.repack import RepackLimits, repack_zip
from lambda_rules.zipper.summary import EntrySummary, ZipSummary, ZipTotals, file_sha256
from lambda_rules.zipper.timestamps import timestamp_from_environment

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
