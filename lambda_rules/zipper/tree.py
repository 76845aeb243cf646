"""Walking the staged directory: which files, under which names, with which exec bit.

Only three facts about a file reach the archive: its relative path, its
content and whether any execute bit is set. Symlinks are followed when they
resolve inside the root (a linked file is stored under the link's name with
the target's content and mode; a linked directory is walked under the link's
name), because staged trees (Pants sandboxes, pip --target) use them as plain
aliases. A link that dangles or escapes the root, a cycle, or a special file
is an error: guessing would make the archive depend on the host.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lambda_rules.zipper.errors import InputTreeError
from lambda_rules.zipper.filters import PathFilter
from lambda_rules.zipper.names import name_from_relative_path


@dataclass(frozen=True)
class SourceFile:
    """A regular file to store: its entry name, where to read it, and its exec bit."""

    name: str
    path: str
    executable: bool
    size: int

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError as error:
            raise InputTreeError(
                f"{self.path}: cannot read it ({error.strerror}); fix its permissions or "
                "--exclude it"
            ) from None


def collect_files(root: Path, path_filter: PathFilter) -> list[SourceFile]:
    """All files under `root` that the filter keeps, sorted by the UTF-8 bytes of their names."""
    real_root = os.path.realpath(root)
    if not os.path.isdir(real_root):
        raise InputTreeError(f"{root}: not a directory; pass the directory to zip")
    walk = _TreeWalk(str(root), real_root, path_filter)
    walk.directory(real_root, "", frozenset({real_root}))
    return sorted(walk.files, key=lambda f: f.name.encode("utf-8"))


class _TreeWalk:
    def __init__(self, shown_root: str, real_root: str, path_filter: PathFilter) -> None:
        self.shown_root = shown_root
        self.real_root = real_root
        self.path_filter = path_filter
        self.files: list[SourceFile] = []

    def shown(self, relative_path: str) -> str:
        return os.path.join(self.shown_root, relative_path)

    def directory(self, real_dir: str, prefix: str, ancestors: frozenset[str]) -> None:
        with os.scandir(real_dir) as entries:
            children = sorted(entries, key=lambda e: e.name)
        for child in children:
            relative_path = prefix + child.name
            if child.is_symlink():
                self.symlink(child.path, relative_path, ancestors)
                continue
            child_stat = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(child_stat.st_mode):
                if not self.path_filter.prunes_directory(relative_path):
                    real_child = os.path.join(real_dir, child.name)
                    self.directory(real_child, relative_path + "/", ancestors | {real_child})
            else:
                self.file(child.path, relative_path, child_stat)

    def symlink(self, link_path: str, relative_path: str, ancestors: frozenset[str]) -> None:
        target = os.path.realpath(link_path)
        try:
            target_stat = os.stat(target)
        except FileNotFoundError:
            if not self.path_filter.keeps(relative_path):
                return
            raise InputTreeError(
                f"{self.shown(relative_path)}: symlink to {os.readlink(link_path)!r} dangles; "
                "remove it or make it point at a file inside the directory"
            ) from None
        if stat.S_ISDIR(target_stat.st_mode) and self.path_filter.prunes_directory(relative_path):
            return
        if not stat.S_ISDIR(target_stat.st_mode) and not self.path_filter.keeps(relative_path):
            return
        if target != self.real_root and not target.startswith(self.real_root + os.sep):
            raise InputTreeError(
                f"{self.shown(relative_path)}: symlink resolves to {target}, outside "
                f"{self.shown_root}; copy the file into the directory instead"
            )
        if stat.S_ISDIR(target_stat.st_mode):
            if target in ancestors:
                raise InputTreeError(
                    f"{self.shown(relative_path)}: symlink to a directory that contains it "
                    "(a cycle); remove the link"
                )
            self.directory(target, relative_path + "/", ancestors | {target})
        else:
            self.file(target, relative_path, target_stat)

    def file(self, path: str, relative_path: str, file_stat: os.stat_result) -> None:
        if not self.path_filter.keeps(relative_path):
            return
        if not stat.S_ISREG(file_stat.st_mode):
            raise InputTreeError(
                f"{self.shown(relative_path)}: {_kind(file_stat.st_mode)} cannot be stored in a "
                "Lambda ZIP; remove it from the directory or --exclude it"
            )
        self.files.append(
            SourceFile(
                name=name_from_relative_path(relative_path, self.shown_root),
                path=path,
                executable=bool(file_stat.st_mode & 0o111),
                size=file_stat.st_size,
            )
        )


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"
