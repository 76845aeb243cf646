"""The package and its layers, extracted read-only as Lambda's /var/task and /opt are.

Part of the local invoker (`invoke.py`), standard library only. A member that could land outside
its directory (an absolute, `..`, backslash or drive path; a symlink pointing out) is refused
rather than written; regular files keep only whether they are executable (0555 or 0444), and
every directory is made read-only once extracted, so a handler that writes beside its code fails
here as on Lambda.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lambda_rules.errors import LambdaRulesError


class ArchiveError(LambdaRulesError):
    """An archive that cannot be read, or with a member that would land outside its directory."""


def _safe_member_path(root: Path, name: str) -> Path:
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("..",) for p in parts) or ":" in parts[0]:
        raise ArchiveError(f"unsafe path in archive: {name!r}")
    return root.joinpath(*[p for p in parts if p not in ("", ".")])


def _safe_link(name: str, link: str, where: str = "archive") -> str:
    """A symlink's target, refused when it could point out of its directory."""
    if link.startswith("/") or ".." in link.split("/"):
        raise ArchiveError(f"unsafe symlink in {where}: {name} -> {link}")
    return link


def extract_archive(archive: Path, destination: Path) -> int:
    """Extract `archive` into `destination`, keeping execute bits and symlinks; returns the
    file count."""
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as e:
        raise ArchiveError(f"cannot read {archive}: {e}") from None
    count = 0
    with zf:
        for info in zf.infolist():
            target = _safe_member_path(destination, info.filename)
            mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                # A later layer replaces an earlier one's file, as Lambda merges layers into /opt.
                target.unlink()
            if stat.S_ISLNK(mode):
                os.symlink(_safe_link(info.filename, zf.read(info).decode("utf-8")), target)
            else:
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.chmod(target, 0o555 if mode & 0o111 else 0o444)
            count += 1
    return count


# Where an image holds the function: Lambda's task root, as a path inside the image.
_IMAGE_TASK_ROOT = "var/task/"


def extract_image(layout: Path, destination: Path) -> int:
    """Extract what the OCI image layout `layout` holds under /var/task into `destination`,
    applying its layers in order (a later layer's file replaces an earlier one's; whiteouts
    delete), as the image's file system would show it; returns the file count."""
    try:
        (descriptor,) = json.loads((layout / "index.json").read_bytes())["manifests"]
        manifest = json.loads(_blob(layout, descriptor["digest"]).read_bytes())
        for layer in manifest["layers"]:
            with gzip.open(_blob(layout, layer["digest"])) as raw:
                with tarfile.open(fileobj=raw, mode="r|") as tar:
                    for member in tar:
                        _apply_member(tar, member, destination)
    except (OSError, ValueError, KeyError, tarfile.TarError, EOFError) as e:
        raise ArchiveError(f"cannot read the image {layout}: {e}") from None
    return sum(len(files) for _, _, files in os.walk(destination))


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algorithm / hexdigest


def _apply_member(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    name = member.name.lstrip("./")
    if not name.startswith(_IMAGE_TASK_ROOT):
        return
    target = _safe_member_path(destination, name[len(_IMAGE_TASK_ROOT) :])
    if target.name.startswith(".wh."):
        whited = target.with_name(target.name[len(".wh.") :])
        for path in [*target.parent.iterdir()] if whited.name == ".wh..opq" else [whited]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    if member.issym():
        os.symlink(_safe_link(member.name, member.linkname, "image"), target)
    elif member.isfile():
        source = tar.extractfile(member)
        assert source is not None, "a regular file has content"
        with open(target, "wb") as out:
            shutil.copyfileobj(source, out)
        os.chmod(target, 0o555 if member.mode & 0o111 else 0o444)


def make_read_only(root: Path) -> None:
    """Drop every write bit under `root` (symlinks are left alone: their modes mean nothing)."""
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o555)
        os.chmod(directory, 0o555)


def remove_tree(root: Path) -> None:
    """Delete a tree `make_read_only` made read-only: directories need their write bit back."""
    if not root.exists():
        return
    for directory, dirs, _ in os.walk(root):
        os.chmod(directory, 0o700)
        for name in dirs:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Sandbox:
    """Stand-ins for Lambda's task root, layer root, runtime directory and /tmp, and the files
    the bootstrap reads the event from and writes the result to."""

    task_root: Path
    opt_dir: Path
    runtime_dir: Path
    scratch_dir: Path
    event_file: Path
    result_file: Path

    @classmethod
    def create(
        cls, work: Path, archive: Path, layers: Sequence[Path], event: bytes, bootstrap: Path
    ) -> Sandbox:
        task_root, opt_dir, runtime_dir = work / "task", work / "opt", work / "runtime"
        scratch_dir, control_dir = work / "tmp", work / "control"
        for directory in (task_root, opt_dir, runtime_dir, scratch_dir, control_dir):
            directory.mkdir()
        if archive.is_dir():
            extract_image(archive, task_root)
        else:
            extract_archive(archive, task_root)
        for layer in layers:
            extract_archive(layer, opt_dir)
        (runtime_dir / bootstrap.name).write_bytes(bootstrap.read_bytes())
        for directory in (task_root, opt_dir, runtime_dir):
            make_read_only(directory)
        scratch_dir.chmod(0o700)
        control_dir.chmod(0o700)
        (control_dir / "event.json").write_bytes(event)
        return cls(
            task_root,
            opt_dir,
            runtime_dir,
            scratch_dir,
            control_dir / "event.json",
            control_dir / "result.json",
        )
