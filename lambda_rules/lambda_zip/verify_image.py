"""`lambda-zip verify DIR`: account for every file the image layout's layers of ours put under
/var/task, from the lockfile's wheels and the sources, as `verify_archive` does for a zip.

DIR.json says what the image claims to be; its parts are built again from trusted inputs only (no
cache of parts) and made into layers by the code `image` runs (`image_outputs.image_layers`). Ours
are the image manifest's last layers. Every blob is checked against its digest and every tar
against the config's diff_id, read as a stream (nothing extracted or executed), and our files are
compared with the derived layers' by name, content and exec bit. No base is given: the layout holds
the base's layers but not its config, so the config and manifest are derived from the layout's own
base part plus the derived layers; what the base brings (its digest, entrypoint, environment) is
taken as held, except that no base layer may put anything under /var/task. No Pants imports.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lambda_rules import facts, image, image_outputs, sbom_identity
from lambda_rules.facts import Kind
from lambda_rules.image_outputs import ImageManifest
from lambda_rules.lambda_zip import local_build
from lambda_rules.lambda_zip.verify_archive import (
    VerifyError,
    VerifyReport,
    VerifyRequest,
    compare_document,
    compare_entries,
    differing,
    sbom_name,
)

_SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TASK_ROOT = image_outputs.TASK_ROOT
_CHUNK = 1 << 20
_WHERE = "the image"


@dataclass(frozen=True)
class _Held:
    """The image the layout's index names: its manifest and config, as bytes and parsed."""

    layout: Path
    digest: str
    manifest: bytes
    config: bytes
    layers: tuple[dict[str, Any], ...]
    diff_ids: tuple[str, ...]
    config_json: dict[str, Any]


@dataclass(frozen=True)
class _Derived:
    """The image step's inputs and layers, made again from trusted inputs."""

    action: image_outputs.ImageAction
    layers: tuple[image.Layer, ...]
    origins: dict[str, str | None]


@dataclass
class _Scanned:
    """A layer's tar: its sha256 (the config's diff_id), its regular files under the task root
    (path -> (sha256, executable)), its folders there, and every other entry described."""

    diff_id: str
    files: dict[str, tuple[str, bool]]
    directories: set[str]
    stray: list[str]  # under the task root, yet not a file or folder with a canonical name
    outside: list[str]  # anything else, but the task root's own folders


def verify_image(request: VerifyRequest) -> VerifyReport:
    """Check the image layout (and its manifest and SBOM) against what its inputs give."""
    layout = request.archive
    if request.layers:
        raise VerifyError(f"{layout}: a Lambda container image uses no layers; drop --layer")
    manifest_path = request.manifest or image_outputs.beside(layout, ".json")
    claims = _read_claims(manifest_path)
    sbom_beside = image_outputs.beside(layout, ".cdx.json")
    sbom_path = request.sbom or (sbom_beside if sbom_beside.exists() else None)
    report = VerifyReport(layout)
    held = _read_layout(layout, report)
    _check_claims(report, manifest_path, claims, held)
    name = request.name or sbom_name(sbom_path) or layout.name
    with tempfile.TemporaryDirectory(prefix="lambda-zip-verify-") as scratch:
        derived = _derive(request, claims, name, Path(scratch))
    report.distributions = len(derived.action.parts)
    _compare_layers(report, held, derived)
    base = _base_of(held, len(derived.layers), claims.base_digest)
    image_manifest = _compare_image(report, held, derived, base)
    compiled_by = derived.action.compiled_by
    if claims.compiled_by and compiled_by != claims.compiled_by and report.problems:
        report.problems.append(
            f"note: the image's .pyc were compiled by CPython {claims.compiled_by}, and this "
            f"machine's is {compiled_by}: .pyc differences may come from that"
        )
    sbom = sbom_identity.complete_sbom(
        derived.action.sbom_template, image_manifest.digest[7:], derived.action.name
    ).encode()
    document = image_outputs.manifest_document(
        derived.action, base, image_manifest, derived.layers, sbom
    )
    compare_document(report, "manifest", manifest_path, document, where=_WHERE)
    if sbom_path is not None:
        compare_document(report, "SBOM", sbom_path, sbom, where=_WHERE)
    return report


def _read_claims(path: Path) -> ImageManifest:
    """What the manifest beside the layout says the image is."""
    try:
        return ImageManifest.from_json(path.read_bytes())
    except image.ImageError as error:
        raise VerifyError(f"{path}: {error}") from None
    except (OSError, ValueError) as error:
        detail = getattr(error, "strerror", None) or error
        raise VerifyError(
            f"{path}: cannot read the image's manifest ({detail}); pass --manifest, the .json "
            "that `image` wrote beside the layout"
        ) from None


def _read_layout(layout: Path, report: VerifyReport) -> _Held:
    """The one image manifest the layout's index names, and its config, each checked against
    its digest (a mismatch is a problem; a blob missing or unreadable is bad input)."""
    index = _parse((layout / "index.json").read_bytes(), layout, "its index.json")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or len(manifests) != 1:
        count = len(manifests) if isinstance(manifests, list) else 0
        raise VerifyError(
            f"{layout}: its index.json names {count} images; the layout `image` writes names one"
        )
    (entry,) = manifests
    if not isinstance(entry, dict) or entry.get("mediaType") != image.MANIFEST_MEDIA_TYPE:
        raise VerifyError(f"{layout}: its index.json does not name an image manifest")
    data = _small_blob(layout, entry, report, "the image manifest")
    parsed = _parse(data, layout, "its image manifest")
    config, layers = parsed.get("config"), parsed.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list) or not layers:
        raise VerifyError(f"{layout}: its image manifest has no config or no layers")
    if not all(isinstance(layer, dict) for layer in layers):
        raise VerifyError(f"{layout}: its image manifest's layers are not descriptors")
    config_data = _small_blob(layout, config, report, "the image config")
    config_json = _parse(config_data, layout, "its image config")
    rootfs = config_json.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise VerifyError(f"{layout}: its image config has no rootfs.diff_ids")
    if len(diff_ids) != len(layers):
        report.problems.append(
            f"the image manifest has {len(layers)} layers, and its config {len(diff_ids)} diff_ids"
        )
    return _Held(
        layout, entry["digest"], data, config_data, tuple(layers), tuple(diff_ids), config_json
    )


def _parse(data: bytes, layout: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError as error:
        raise VerifyError(f"{layout}: {what} is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise VerifyError(f"{layout}: {what} is not a JSON object")
    return document


def _blob_path(layout: Path, descriptor: dict[str, Any], what: str) -> Path:
    """Where a descriptor's blob is; its digest is checked first, so it names no other path."""
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not _SHA256_DIGEST.match(digest):
        raise VerifyError(f"{layout}: {what} has no sha256 digest ({digest!r})")
    path = layout / "blobs" / "sha256" / digest[7:]
    if not path.is_file():
        raise VerifyError(f"{layout}: the blob of {what}, {digest}, is missing")
    return path


def _small_blob(layout: Path, descriptor: dict[str, Any], report: VerifyReport, what: str) -> bytes:
    """A manifest's or config's bytes; a problem if they are not what its descriptor says."""
    with open(_blob_path(layout, descriptor, what), "rb") as opened:
        found = _Hashing(opened)
        data = found.read(-1)
    _check_blob(report, what, descriptor, found)
    return data


def _check_blob(
    report: VerifyReport, what: str, descriptor: dict[str, Any], found: _Hashing
) -> None:
    """A problem if a blob read through is not what its descriptor names."""
    digest = descriptor["digest"]
    if digest != f"sha256:{found.hexdigest()}":
        report.problems.append(
            f"{what}: its blob {digest} holds sha256:{found.hexdigest()}; it was altered after "
            "its digest was taken"
        )
    elif descriptor.get("size") != found.size:
        report.problems.append(
            f"{what} is {found.size:,} bytes, and its descriptor says {descriptor.get('size')}"
        )


def _check_claims(report: VerifyReport, path: Path, claims: ImageManifest, held: _Held) -> None:
    """DIR.json describes this layout: its image, and its layers as the image's last ones."""
    if claims.image_digest != held.digest:
        report.problems.append(
            f"{path}: describes the image {claims.image_digest}, and the layout's index names "
            f"{held.digest}"
        )
    digests = tuple(str(d.get("digest")) for d in held.layers)
    for listed, held_ones, where in (
        (tuple(d for d, _ in claims.layers), digests, "image manifest's last layers"),
        (tuple(i for _, i in claims.layers), held.diff_ids, "image config's last diff_ids"),
    ):
        # Longer than what the image holds, the tail is all of it, and differs from `listed`.
        if held_ones[max(len(held_ones) - len(listed), 0) :] != listed:
            report.problems.append(f"{path}: the layers it lists are not the {where}, in order")


def _derive(request: VerifyRequest, claims: ImageManifest, name: str, work: Path) -> _Derived:
    """The parts built again as `image` builds them (no cache of parts is trusted: every part is
    made again here), and the layers the image step makes of them."""
    package = local_build.PackageRequest(
        name=name,
        kind=Kind.FUNCTION,
        platform=claims.platform,
        output=Path(request.archive.name),
        sources=request.sources,
        source_root=request.source_root,
        handler=claims.handler,
        requirements=tuple(f"{d.name}=={d.version}" for d in claims.distributions),
        lockfile=request.lockfile,
        compile_bytecode=bool(claims.compiled_by),
        cache_dir=work / "parts",
        wheel_cache=request.wheel_cache,
    )
    built = local_build.build_parts(package, work / "derive", transitive=False)
    action = image_outputs.ImageAction(
        name=name,
        platform=claims.platform,
        handler=claims.handler,
        distributions=built.planned.distributions,
        parts=tuple((unit.label, part) for unit, part in zip(built.planned.units, built.parts)),
        first_party=built.first_party,
        base=request.archive,
        sbom_template=local_build.sbom_template(package, built),
        compiled_by=built.compiled_by,
        tag="latest",
        output=request.archive,
    )
    layers = tuple(image_outputs.image_layers(action))
    return _Derived(action, layers, built.origins())


def _compare_layers(report: VerifyReport, held: _Held, derived: _Derived) -> None:
    """Every layer read and checked; the files of ours compared with the derived layers'."""
    ours_from = max(len(held.layers) - len(derived.layers), 0)
    report.counted = (
        f"files under /{TASK_ROOT} in its {len(held.layers) - ours_from} layers of ours"
    )
    report.also = f"; the base puts nothing there ({ours_from} layer{'s' * (ours_from != 1)} read)"
    actual: dict[str, tuple[str, bool]] = {}
    for index, descriptor in enumerate(held.layers):
        what = f"layer {index + 1} of {len(held.layers)} ({descriptor.get('digest')})"
        ours = index >= ours_from
        scanned = _read_layer(report, held.layout, descriptor, what, ours)
        if scanned is None:
            continue
        if index < len(held.diff_ids) and held.diff_ids[index] != scanned.diff_id:
            report.problems.append(
                f"{what}: its tar has {scanned.diff_id}, and the image config's "
                f"diff_id says {held.diff_ids[index]}"
            )
        if not ours:
            report.problems += [
                f"{what}, a base layer, puts {entry} under /{TASK_ROOT}; only our layers may"
                for entry in [*scanned.files, *scanned.stray]
            ]
            continue
        _check_our_entries(report, what, scanned)
        for path, found in scanned.files.items():
            if path in actual:
                report.problems.append(f"{path}: held by more than one of our layers")
            actual[path] = found
    expected: dict[str, tuple[str, bool]] = {}
    for layer in derived.layers:
        expected.update(_scan(gzip.GzipFile(fileobj=io.BytesIO(layer.blob.data))).files)
    compare_entries(report, actual, expected, derived.origins, where=_WHERE)


def _check_our_entries(report: VerifyReport, what: str, scanned: _Scanned) -> None:
    """What a layer of ours holds besides its files: their folders and nothing else."""
    ancestors: set[str] = set()
    for path in scanned.files:
        parent = posixpath.dirname(path)
        while parent and parent not in ancestors:
            ancestors.add(parent)
            parent = posixpath.dirname(parent)
    described = [
        *(f"{entry} (under /{TASK_ROOT})" for entry in scanned.stray),
        *(f"{entry} (outside /{TASK_ROOT})" for entry in scanned.outside),
        *(f"{path}/ (a folder that holds no file)" for path in scanned.directories - ancestors),
    ]
    report.problems += [
        f"{entry}: unexplained; {what} holds it, and no locked wheel or source gives it"
        for entry in described
    ]


def _read_layer(
    report: VerifyReport, layout: Path, descriptor: dict[str, Any], what: str, ours: bool
) -> _Scanned | None:
    """One layer's blob read as a stream: checked against its digest and scanned, or None (and
    a problem) when it is no tar, or compressed in a way of which it cannot be read."""
    path = _blob_path(layout, descriptor, what)
    media_type = str(descriptor.get("mediaType", ""))
    if ours and media_type != image.LAYER_MEDIA_TYPE:
        report.problems.append(f"{what} is {media_type}, not {image.LAYER_MEDIA_TYPE}")
    scanned = None
    with open(path, "rb") as opened:
        blob = _Hashing(opened)
        try:
            if media_type.endswith("gzip"):
                scanned = _scan(gzip.GzipFile(fileobj=blob, mode="rb"))
            elif media_type.endswith("tar"):
                scanned = _scan(blob)
            elif ours:
                report.problems.append(f"{what}: cannot read a layer of {media_type}")
        except _TooLarge:
            report.problems.append(
                f"{what} unpacks to more than Lambda's limit of {facts.IMAGE_LIMIT_BYTES:,} bytes"
            )
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            report.problems.append(f"{what} is not a tar of its media type ({error})")
        blob.drain()
    _check_blob(report, what, descriptor, blob)
    return scanned


class _TooLarge(Exception):
    """A layer that unpacks past what Lambda would accept (a bomb, or not an image of ours)."""


class _Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Hashing:
    """A stream read through, hashed and counted on the way (tarfile and gzip read it)."""

    def __init__(self, stream: _Stream, limit: int | None = None) -> None:
        self.stream, self.limit, self.size = stream, limit, 0
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self.stream.read(size)
        self.hasher.update(data)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise _TooLarge()
        return data

    def seek(self, offset: int, /) -> object:
        raise io.UnsupportedOperation("a layer is read once, as a stream")

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


def _scan(stream: _Stream) -> _Scanned:
    """A layer's tar read as a stream, nothing extracted: its sha256, and its entries sorted
    into files and folders under the task root, and everything else."""
    hashed = _Hashing(stream, facts.IMAGE_LIMIT_BYTES)
    scanned = _Scanned("", {}, set(), [], [])
    prefix = TASK_ROOT + "/"
    with tarfile.open(fileobj=hashed, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            # Where an unpacker puts it: `./var/task/x` and `var/x/../task/x` land there too.
            clean = posixpath.normpath("/" + member.name).lstrip("/")
            canonical = clean == member.name
            if member.isdir() and canonical and clean in ("var", TASK_ROOT):
                continue
            if not (clean == TASK_ROOT or clean.startswith(prefix)):
                scanned.outside.append(f"{member.name} ({_kind(member)})")
            elif member.isreg() and canonical:
                path = clean[len(prefix) :]
                if path in scanned.files:
                    scanned.stray.append(f"{member.name} (a second entry of the same name)")
                content = _Hashing(tar.extractfile(member) or io.BytesIO())
                content.drain()
                scanned.files[path] = (content.hexdigest(), bool(member.mode & 0o111))
            elif member.isdir() and canonical:
                scanned.directories.add(clean[len(prefix) :])
            else:
                scanned.stray.append(f"{member.name} ({_kind(member)})")
    hashed.drain()
    scanned.diff_id = f"sha256:{hashed.hexdigest()}"
    return scanned


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return f"a {'symbolic' if member.issym() else 'hard'} link to {member.linkname}"
    return "a file" if member.isreg() else "a folder" if member.isdir() else "a device or fifo"


def _base_of(held: _Held, ours: int, base_digest: str) -> image.BaseImage:
    """The base as the layout holds it: the manifest's layers but our last `ours`, and the
    config without what the image step adds to it (our diff_ids and history; its Cmd is set
    anew). The base's manifest digest is the one DIR.json names: the layout does not hold it."""
    split = max(len(held.layers) - ours, 0)
    config = json.loads(held.config)
    rootfs = config.get("rootfs")
    if isinstance(rootfs, dict) and isinstance(rootfs.get("diff_ids"), list):
        rootfs["diff_ids"] = rootfs["diff_ids"][:split]
    history = config.get("history")
    if isinstance(history, list):
        config["history"] = history[: max(len(history) - ours, 0)]
    return image.BaseImage(held.layout, base_digest, {"layers": list(held.layers[:split])}, config)


def _compare_image(
    report: VerifyReport, held: _Held, derived: _Derived, base: image.BaseImage
) -> image.Blob:
    """The config and manifest the image step writes over the layout's base and the derived
    layers; the derived manifest. Its handler is checked always; the rest, once every file
    matched (as a zip whose entries all match must still be the canonical archive)."""
    handler = derived.action.handler
    config = image.image_config(base, derived.layers, handler)
    derived_manifest = image.image_manifest(base, config, derived.layers)
    settings = held.config_json.get("config")
    command = settings.get("Cmd") if isinstance(settings, dict) else None
    if command != [handler]:
        report.problems.append(
            f"the image config's Cmd is {command!r}, not {[handler]!r}, the "
            "handler the manifest beside it names"
        )
    if report.problems:
        return derived_manifest
    ours = held.layers[len(held.layers) - len(derived.layers) :]
    report.problems += [
        f"every file matches, yet the layer {descriptor.get('digest')} is not the canonical one "
        f"({layer.blob.digest}, {layer.description})"
        for descriptor, layer in zip(ours, derived.layers)
        if descriptor != layer.blob.descriptor()
    ]
    for what, given, expected in (
        ("config", held.config, config.data),
        ("manifest", held.manifest, derived_manifest.data),
    ):
        if given != expected:
            report.problems.append(
                f"every file matches, yet the image {what} is not the one "
                f"`image` writes ({differing(given, expected)})"
            )
    return derived_manifest
