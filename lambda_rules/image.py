"""Reproducible Lambda container images from the same parts as a zip: the canonical layer tar,
its pinned gzip, and the OCI image layout around a base image (no Pants imports).

An OCI image is a base image plus content-addressed layers; a registry stores each layer once by
digest. So each layer here is a pure function of its files: names sorted by their UTF-8 bytes,
every ancestor directory present, owner 0:0 with no names, modes 0755/0644, one fixed time, PAX
format, gzip from the pinned libdeflate. The config and manifest are canonical JSON, so the same
inputs give the same layer digests, config and manifest digest on any machine.

Specifications: https://github.com/opencontainers/image-spec (layout.md, manifest.md,
config.md, layer.md); Lambda's image requirements:
https://docs.aws.amazon.com/lambda/latest/dg/images-create.html (one single-platform manifest,
no index; at most 10 GB uncompressed).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

from lambda_rules.errors import LambdaRulesError

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"
# Every entry's time: the zip's 1980-01-01 00:00:00 UTC, so both kinds of package agree.
LAYER_MTIME = 315532800
FILE_MODE, EXECUTABLE_MODE, DIRECTORY_MODE = 0o644, 0o755, 0o755
# Lambda's architectures as OCI platforms name them (image-spec's `architecture`).
OCI_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}
# A layer's gzip level: libdeflate's, pinned with the zipper's compressor.
GZIP_LEVEL = 6


class ImageError(LambdaRulesError):
    """A base image that cannot serve, or an image Lambda would refuse."""


@dataclass(frozen=True)
class Blob:
    """Content and the descriptor that names it."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return f"sha256:{hashlib.sha256(self.data).hexdigest()}"

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class Layer:
    """A gzipped layer, the sha256 of its tar (the config's `diff_id`) and its unpacked size."""

    blob: Blob
    diff_id: str
    unpacked_size: int
    description: str


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


# A layer file's content: its bytes, or a function reading them when the tar is written, so a
# layer of hundreds of MB is held once (in the tar), not also as the files it is made of.
Content = Union[bytes, Callable[[], bytes]]


def tar_layer(files: Iterable[tuple[str, bool, Content]], root: str, description: str) -> Layer:
    """A layer of `files` (path, executable, content) under `root` (e.g. `var/task`), with every
    ancestor directory as an entry of its own, so no unpacker decides their modes."""
    entries = {f"{root}/{path}": (executable, data) for path, executable, data in files}
    directories = {
        "/".join(name.split("/")[:depth]) + "/"
        for name in entries
        for depth in range(1, name.count("/") + 1)
    }
    buffer = io.BytesIO()
    size = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted([*directories, *entries], key=lambda n: n.encode("utf-8")):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = LAYER_MTIME, 0, 0, "", ""
            if name in directories:
                info.type, info.mode = tarfile.DIRTYPE, DIRECTORY_MODE
                tar.addfile(info)
                continue
            executable, content = entries[name]
            data = content() if callable(content) else content
            info.mode, info.size = (EXECUTABLE_MODE if executable else FILE_MODE), len(data)
            size += len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getbuffer()
    import deflate  # the pinned libdeflate: the same gzip bytes on every machine

    gzipped = deflate.gzip_compress(raw, GZIP_LEVEL)
    diff_id = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    return Layer(Blob(LAYER_MEDIA_TYPE, gzipped), diff_id, size, description)


@dataclass(frozen=True)
class BaseImage:
    """The base, chosen from its layout for one architecture: its manifest and config, and where
    its blobs are."""

    layout: Path
    manifest_digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.layout / "blobs" / algorithm / hexdigest


def parse_base(value: str) -> tuple[Path, str | None]:
    """`DIR` or `DIR@sha256:<64 hex>`: the layout and the digest it is pinned to, if any."""
    layout, at, digest = value.rpartition("@")
    if not at or not digest.startswith("sha256:"):
        return Path(value), None
    if len(digest) != 71 or not all(c in "0123456789abcdef" for c in digest[7:]):
        raise ImageError(f"base {value}: the pin must be sha256: and 64 lowercase hex digits")
    return Path(layout), digest


def read_base(layout: Path, architecture: str, pinned: str | None = None) -> BaseImage:
    """The base image in the OCI layout `layout` for `architecture`: its one manifest, or the
    entry of its index for linux/<architecture>, which must be `pinned` (the manifest's digest,
    or the index's) if given. Raises naming what is wrong and what to do."""
    wanted = OCI_ARCHITECTURES[architecture]
    index = _read_json(layout / "index.json", f"--base {layout}: not an OCI image layout")
    descriptor = _platform_manifest(layout, index, wanted)
    held = {descriptor["digest"], *(m.get("digest") for m in index.get("manifests", []))}
    if pinned is not None and pinned not in held:
        raise ImageError(
            f"--base {layout}: it holds {descriptor['digest']}, not the pinned {pinned}; copy the "
            "pinned image again, or pin what it holds"
        )
    manifest_path = layout / "blobs" / descriptor["digest"].replace(":", "/", 1)
    manifest = _read_json(manifest_path, f"--base {layout}: its manifest blob is missing")
    config_digest = manifest.get("config", {}).get("digest", "")
    config = _read_json(
        layout / "blobs" / config_digest.replace(":", "/", 1),
        f"--base {layout}: its config blob is missing",
    )
    if config.get("architecture") != wanted or config.get("os", "linux") != "linux":
        raise ImageError(
            f"--base {layout}: the base is for {config.get('os')}/{config.get('architecture')}, "
            f"not linux/{wanted} ({architecture}); copy the {architecture} image of "
            "public.ecr.aws/lambda/python (`skopeo copy --override-arch ...`)"
        )
    return BaseImage(layout, descriptor["digest"], manifest, config)


def _platform_manifest(layout: Path, index: dict[str, Any], wanted: str) -> dict[str, Any]:
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise ImageError(
            f"--base {layout}: its index.json names {len(manifests)} images; copy exactly one "
            "(`skopeo copy docker://public.ecr.aws/lambda/python:3.12@sha256:... oci:DIR:3.12`)"
        )
    (entry,) = manifests
    if entry.get("mediaType") not in (INDEX_MEDIA_TYPE, DOCKER_MANIFEST_LIST):
        return entry
    nested = _read_json(
        layout / "blobs" / entry["digest"].replace(":", "/", 1),
        f"--base {layout}: its image index blob is missing",
    )
    for candidate in nested.get("manifests", []):
        platform = candidate.get("platform", {})
        if platform.get("architecture") == wanted and platform.get("os") == "linux":
            return dict(candidate)
    found = ", ".join(
        f"{m.get('platform', {}).get('os')}/{m.get('platform', {}).get('architecture')}"
        for m in nested.get("manifests", [])
    )
    raise ImageError(
        f"--base {layout}: its image index has no linux/{wanted} image (it has {found or 'none'})"
    )


def _read_json(path: Path, problem: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImageError(f"{problem} ({path} does not exist)") from None
    except (OSError, ValueError) as error:
        raise ImageError(f"{problem} ({path}: {error})") from None
    if not isinstance(document, dict):
        raise ImageError(f"{problem} ({path} is not a JSON object)")
    return document


def image_config(base: BaseImage, layers: Sequence[Layer], handler: str) -> Blob:
    """The base's config with our layers' diff_ids appended and `CMD` set to the handler; its
    entrypoint, environment and working directory are inherited. No `created` of ours."""
    config = json.loads(canonical_json(base.config))
    config.setdefault("config", {})["Cmd"] = [handler]
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.diff_id for layer in layers)]
    config["history"] = [
        *config.get("history", []),
        *({"created_by": f"lambda_rules: {layer.description}"} for layer in layers),
    ]
    return Blob(CONFIG_MEDIA_TYPE, canonical_json(config))


def image_manifest(base: BaseImage, config: Blob, layers: Sequence[Layer]) -> Blob:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [
            *base.manifest.get("layers", []),
            *(layer.blob.descriptor() for layer in layers),
        ],
    }
    return Blob(MANIFEST_MEDIA_TYPE, canonical_json(manifest))


# A distribution this large unpacked gets a layer of its own, shared by every function that
# holds it; smaller ones share one layer (fewer layers: registries and Lambda pull each).
OWN_LAYER_BYTES = 8 << 20


def group_units(sizes: Sequence[int]) -> list[list[int]]:
    """Unit indexes by layer, in a fixed order: each large unit alone, in the units' order, then
    one layer of all the small ones."""
    large = [[i] for i, size in enumerate(sizes) if size >= OWN_LAYER_BYTES]
    small = [i for i, size in enumerate(sizes) if size < OWN_LAYER_BYTES]
    return [*large, *([small] if small else [])]


def check_size(base: BaseImage, layers: Sequence[Layer], limit: int) -> None:
    """Lambda's limit on the image unpacked, base included; the error names the largest layers."""
    base_sizes = [_unpacked_size(base.blob_path(d["digest"])) for d in base.manifest["layers"]]
    total = sum(base_sizes) + sum(layer.unpacked_size for layer in layers)
    if total > limit:
        largest = sorted(layers, key=lambda layer: layer.unpacked_size, reverse=True)[:3]
        named = ", ".join(f"{la.description} ({la.unpacked_size:,} bytes)" for la in largest)
        raise ImageError(
            f"the image unpacks to {total:,} bytes, above Lambda's limit of {limit:,} bytes "
            f"(the base {sum(base_sizes):,}); the largest layers: {named}"
        )


def _unpacked_size(blob: Path) -> int:
    size = 0
    with gzip.open(blob, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            size += len(chunk)
    return size


def write_layout(
    out: Path, base: BaseImage, layers: Sequence[Layer], config: Blob, manifest: Blob, tag: str
) -> None:
    """The OCI image layout at `out`: the base's layers, ours, the config and the one manifest,
    named `tag` in index.json. Written beside `out` and renamed into place: all or nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        blobs = staged / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for descriptor in base.manifest.get("layers", []):
            copy_blob(base, descriptor["digest"], blobs)
        for blob in (*(layer.blob for layer in layers), config, manifest):
            (blobs / blob.digest[7:]).write_bytes(blob.data)
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [{**manifest.descriptor(), "annotations": {REF_NAME: tag}}],
        }
        (staged / "index.json").write_bytes(canonical_json(index))
        (staged / "oci-layout").write_bytes(canonical_json(OCI_LAYOUT))
        for path in [staged, *staged.rglob("*")]:
            os.chmod(path, DIRECTORY_MODE if path.is_dir() else FILE_MODE)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def copy_blob(base: BaseImage, digest: str, blobs: Path) -> None:
    """One blob of the base into `blobs`, checked against its digest on the way: a layout is
    pinned by digest, so a blob that changed under it is an error, never a silent new base."""
    target = blobs / digest[7:]
    hasher = hashlib.sha256()
    try:
        with open(base.blob_path(digest), "rb") as source, open(target, "wb") as copy:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                hasher.update(chunk)
                copy.write(chunk)
    except FileNotFoundError:
        raise ImageError(f"--base {base.layout}: blob {digest} is missing") from None
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise ImageError(
            f"--base {base.layout}: blob {digest} holds sha256:{hasher.hexdigest()}; the layout "
            "is damaged: copy the base again"
        )


def copy_base(base: BaseImage, out: Path) -> None:
    """The base alone as an OCI layout at `out` (its manifest, config and layers, each checked),
    so a sandbox can hold it under a content-derived key instead of its path on this machine."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    digests = [base.manifest_digest, base.manifest["config"]["digest"]]
    for digest in [*digests, *(d["digest"] for d in base.manifest.get("layers", []))]:
        copy_blob(base, digest, blobs)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [
            {
                "mediaType": base.manifest.get("mediaType", MANIFEST_MEDIA_TYPE),
                "digest": base.manifest_digest,
                "size": (blobs / base.manifest_digest[7:]).stat().st_size,
            }
        ],
    }
    (out / "index.json").write_bytes(canonical_json(index))
    (out / "oci-layout").write_bytes(canonical_json(OCI_LAYOUT))
