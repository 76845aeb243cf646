"""Which files go into the archive: --exclude / --include globs over relative POSIX paths.

Pattern language (fnmatch per path segment, case-sensitive):
- `*`, `?`, `[...]` match within one segment; they never match `/`.
- A `**` segment matches zero or more whole segments (`a/**/b`, `**/tests`).
- A pattern without `/` matches any single segment at any depth, so `*.pyc`
  matches `pkg/mod.pyc` and `__pycache__` matches every path through such a
  directory (gitignore-like).
- A pattern with `/` is anchored at the root and matches a path or any of its
  parent directories, so `pkg/tests` leaves out everything under it.

A file is left out when it matches an exclude (a default one or a given one)
and no include. Includes are exceptions to excludes: they never add files that
no exclude dropped.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Sequence

from lambda_rules.zipper.errors import ZipError

DEFAULT_EXCLUDES = ("__pycache__", "*.pyc", "*.pyo")
"""Bytecode is rebuilt by the Lambda runtime and would only differ between Pythons."""


class GlobPattern:
    """One --exclude/--include pattern, matched segment by segment."""

    def __init__(self, text: str, option: str) -> None:
        normalized = text
        while normalized.startswith("./"):
            normalized = normalized[2:]
        normalized = normalized.rstrip("/")
        if not normalized or text.startswith("/"):
            raise ZipError(
                f"{option} {text!r}: patterns are relative POSIX paths inside the archive, "
                "e.g. 'tests/**' or '*.md'"
            )
        self.text = text
        self.segments = tuple(normalized.split("/"))
        self.anchored = "/" in normalized

    def matches(self, path_segments: Sequence[str]) -> bool:
        if not self.anchored:
            return any(fnmatchcase(segment, self.segments[0]) for segment in path_segments)
        return any(
            _segments_match(self.segments, path_segments[:end])
            for end in range(1, len(path_segments) + 1)
        )


def _segments_match(pattern: Sequence[str], path: Sequence[str]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_segments_match(rest, path[start:]) for start in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], head) and _segments_match(rest, path[1:])


class PathFilter:
    """Decides, from relative POSIX paths alone, what the archive keeps."""

    def __init__(
        self,
        excludes: Iterable[str] = (),
        includes: Iterable[str] = (),
        *,
        default_excludes: Iterable[str] = DEFAULT_EXCLUDES,
    ) -> None:
        self.excludes = tuple(GlobPattern(p, "--exclude") for p in (*default_excludes, *excludes))
        self.includes = tuple(GlobPattern(p, "--include") for p in includes)

    def keeps(self, relative_path: str) -> bool:
        segments = relative_path.split("/")
        if not any(pattern.matches(segments) for pattern in self.excludes):
            return True
        return any(pattern.matches(segments) for pattern in self.includes)

    def prunes_directory(self, relative_path: str) -> bool:
        """True when nothing below this directory can be kept, so the walk may skip it."""
        if self.includes:
            return False
        segments = relative_path.split("/")
        return any(pattern.matches(segments) for pattern in self.excludes)
