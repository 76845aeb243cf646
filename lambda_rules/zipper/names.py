"""Entry names: what a safe, canonical name is, for both build and repack."""

from __future__ import annotations

import re

from lambda_rules.zipper.errors import InputTreeError, UnsafeArchiveError, ZipError

# C0 controls, DEL and C1 controls (Unicode category Cc). Legal in Linux file names, but a
# newline splits every line-based listing, an escape sequence rewrites the terminal showing it,
# a NUL cuts the name short in C-based readers, and C1 U+009B is a terminal escape as well.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def name_from_relative_path(relative_path: str, root: str) -> str:
    """Check that a file's path below the staged root can be an entry name.

    os.walk gives undecodable bytes as surrogate escapes; they cannot be UTF-8
    names, and a backslash would be read as a separator by Windows tools.
    Names are kept as the filesystem spells them (no Unicode normalization).
    """
    try:
        relative_path.encode("utf-8")
    except UnicodeEncodeError:
        raise InputTreeError(
            f"{root}/{relative_path!r}: file name is not valid UTF-8; rename it"
        ) from None
    control = _CONTROL_CHARACTER.search(relative_path)
    if control:
        raise InputTreeError(
            f"{root}/{relative_path!r}: file name contains the control character "
            f"{control.group()!r}, which listings, shells and terminals mangle; rename it"
        )
    if "\\" in relative_path:
        raise InputTreeError(
            f"{root}/{relative_path}: file name contains a backslash, which ZIP readers "
            "treat as a directory separator; rename it"
        )
    return relative_path


def normalize_archive_name(name: str, archive: str) -> str:
    """The canonical form of a name read from an existing archive, or an error if unsafe.

    `.` and empty segments are dropped (so `./a//b` is `a/b`); a trailing `/`
    marks a directory entry and is kept for the caller to recognize.
    """
    control = _CONTROL_CHARACTER.search(name)
    if control:
        raise UnsafeArchiveError(
            f"{archive}: entry {name!r} contains the control character {control.group()!r}; "
            "repack refuses it because listings, shells and terminals mangle such names and "
            "C-based readers stop at a NUL. Recreate the archive without control characters "
            "in names."
        )
    if "\\" in name:
        raise UnsafeArchiveError(
            f"{archive}: entry {name!r} uses a backslash; repack refuses Windows-style "
            "separators because readers disagree on them. Recreate the archive with '/' separators."
        )
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        raise UnsafeArchiveError(
            f"{archive}: entry {name!r} is an absolute path; repack refuses it because "
            "extracting it would write outside the target directory."
        )
    segments = [segment for segment in name.split("/") if segment not in ("", ".")]
    if ".." in segments:
        raise UnsafeArchiveError(
            f"{archive}: entry {name!r} contains a '..' component; repack refuses it because "
            "extracting it would write outside the target directory."
        )
    normalized = "/".join(segments)
    if name.endswith("/") and normalized:
        normalized += "/"
    return normalized


def entry_prefix(prefix: str) -> str:
    """A directory every entry goes under (a layer's `python/`), checked as a name would be;
    the empty prefix puts entries at the root."""
    if not prefix:
        return ""
    directory = prefix[:-1] if prefix.endswith("/") else prefix
    segments = directory.split("/")
    plain = all(s not in ("", ".", "..") for s in segments) and not _CONTROL_CHARACTER.search(
        prefix
    )
    if not plain or "\\" in prefix or ":" in segments[0]:
        raise ZipError(
            f"--prefix {prefix!r}: give a relative directory without '.', '..' or empty "
            "segments, such as 'python/'"
        )
    return directory + "/"
