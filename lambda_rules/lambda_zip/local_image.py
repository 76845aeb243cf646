"""`lambda-zip image`: the same parts as `package`, as layers of a Lambda container image on a
base image, written as an OCI image layout (no Pants imports, no Docker).

Layers, in a fixed order on top of the base's: each large distribution alone, then the small ones
together (`image.group_units`), then the first-party code last, so an edit changes only the top
layer and functions on the same requirements share every other layer by digest. Beside the
layout: a manifest (image and base digests, layer digests, runtime, architecture, handler,
distributions) and the CycloneDX SBOM, all or nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambda_rules import facts, image, sbom_identity
from lambda_rules.lambda_zip.local_build import (
    BuiltParts,
    PackageError,
    PackageRequest,
    build_parts,
    sbom_template,
)

MANIFEST_VERSION = 1
# Where the layers put the package: Lambda's task root, as a path inside the image.
_TASK_ROOT = facts.TASK_ROOT.strip("/")


@dataclass(frozen=True)
class ImageResult:
    manifest_digest: str
    layers: tuple[str, ...]
    compressed: int
    warnings: tuple[str, ...]


def build_image(request: PackageRequest, base_layout: Path, tag: str) -> ImageResult:
    """The image layout at `request.output` (a folder) and `<output>.json`, `<output>.cdx.json`
    beside it."""
    if not request.handler:
        raise PackageError(f"{request.name}: an image needs --handler (module.function)")
    if request.layers:
        raise PackageError(
            f"{request.name}: a Lambda container image cannot use layers; drop --layer and "
            "require what the layer holds (the image has room for it)"
        )
    base = image.read_base(base_layout, request.platform.architecture)
    with tempfile.TemporaryDirectory(prefix="lambda-zip-image-") as scratch:
        built = build_parts(request, Path(scratch))
        layers = _layers(request, built)
        image.check_size(base, layers, facts.IMAGE_LIMIT_BYTES)
        config = image.image_config(base, layers, request.handler)
        manifest = image.image_manifest(base, config, layers)
        sbom = sbom_identity.complete_sbom(
            sbom_template(request, built), manifest.digest[7:], request.name
        ).encode()
        document = _manifest_document(request, built, base, manifest, layers, sbom)
        _write(request.output, base, layers, config, manifest, tag, document, sbom)
    return ImageResult(
        manifest.digest,
        tuple(layer.blob.digest for layer in layers),
        built.compressed,
        built.planned.warnings,
    )


def _layers(request: PackageRequest, built: BuiltParts) -> list[image.Layer]:
    """The distribution layers (grouped) and the first-party layer, from the parts' files."""
    parts = [_files(part) for part in built.parts]
    labels = [unit.label for unit in built.planned.units]
    layers = []
    for group in image.group_units([sum(len(d) for _, _, d in files) for files in parts]):
        names = ", ".join(labels[i] for i in group)
        files = [entry for i in group for entry in parts[i]]
        layers.append(image.tar_layer(files, _TASK_ROOT, f"distributions {names}"))
    if built.first_party is not None:
        code = image.tar_layer(_files(built.first_party), _TASK_ROOT, f"{request.name} code")
        layers.append(code)
    return layers


def _files(part: Path) -> list[tuple[str, bool, bytes]]:
    """A part's entries: (path, executable, content)."""
    with zipfile.ZipFile(part) as opened:
        return [
            (info.filename, bool((info.external_attr >> 16) & 0o111), opened.read(info))
            for info in opened.infolist()
        ]


def _manifest_document(
    request: PackageRequest,
    built: BuiltParts,
    base: image.BaseImage,
    manifest: image.Blob,
    layers: list[image.Layer],
    sbom: bytes,
) -> bytes:
    document: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "kind": "image",
        "image_digest": manifest.digest,
        "base_digest": base.manifest_digest,
        "runtime": request.platform.runtime.name,
        "architecture": request.platform.architecture,
        "handler": request.handler,
        "distributions": [
            {"name": d.name, "version": d.version} for d in built.planned.distributions
        ],
        "layers": [
            {
                "digest": la.blob.digest,
                "diff_id": la.diff_id,
                "size": len(la.blob.data),
                "unpacked_size": la.unpacked_size,
                "holds": la.description,
            }
            for la in layers
        ],  # fmt: skip
        "bytecode_compiled_by": built.compiled_by,
        "sbom": {
            "file": f"{request.output.name}.cdx.json",
            "sha256": hashlib.sha256(sbom).hexdigest(),
        },
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _write(
    out: Path,
    base: image.BaseImage,
    layers: list[image.Layer],
    config: image.Blob,
    manifest: image.Blob,
    tag: str,
    document: bytes,
    sbom: bytes,
) -> None:
    """The layout, then the manifest and SBOM beside it; a failure removes what this run wrote."""
    written = [out.with_name(f"{out.name}.json"), out.with_name(f"{out.name}.cdx.json")]
    try:
        image.write_layout(out, base, layers, config, manifest, tag)
        for path, data in zip(written, (document, sbom)):
            path.write_bytes(data)
            path.chmod(0o644)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        for path in written:
            path.unlink(missing_ok=True)
        raise
