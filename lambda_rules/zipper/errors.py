"""Errors the zipper reports to its user.

Every message names the offending path or entry and says what to do, so the
CLI can print it as is instead of a traceback.
"""

from __future__ import annotations


class ZipError(Exception):
    """Base class for every error caused by the input, not by a bug."""


class InputTreeError(ZipError):
    """The directory to zip contains something that cannot go into a Lambda ZIP."""


class FormatLimitError(ZipError):
    """The ZIP format cannot represent the input (e.g. a name over 65535 bytes)."""


class CorruptArchiveError(ZipError):
    """An existing archive is truncated, inconsistent or fails its CRC."""


class UnsafeArchiveError(ZipError):
    """An existing archive is readable but repack refuses it on purpose."""
