"""The image step, written once: parts -> layers on a base -> the OCI layout, its manifest and
SBOM. `lambda-zip image` calls `write_image` in its own process; under Pants, the tool's
`image-layout` verb calls it in a sandbox with the same `ImageAction`, read from JSON. No Pants
imports.

Layers, in a fixed order on top of the base's: each large distribution alone, then the small ones
together (`image.group_units`), then the first-party code last, so an edit changes only the top
layer and functions on the same requirements share every other layer by digest.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lambda_rules import facts, image, sbom_identity
from lambda_rules.platforms import LambdaPlatform, lambda_platform
from lambda_rules.units import Distribution

MANIFEST_VERSION = 1
# Where the layers put the package: Lambda's task root, as a path inside the image.
TASK_ROOT = facts.TASK_ROOT.strip("/")


@dataclass(frozen=True)
class ImageAction:
    """Everything the image step reads: the parts (distributions in the plan's order, each with
    its "name version" label; then the first-party code's), the base layout, and what the
    manifest and SBOM say. `output` is the layout's folder; its `.json` and `.cdx.json` go
    beside it."""

    name: str
    platform: LambdaPlatform
    handler: str
    distributions: tuple[Distribution, ...]
    parts: tuple[tuple[str, Path], ...]
    first_party: Path | None
    base: Path
    sbom_template: str
    compiled_by: str | None
    tag: str
    output: Path

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "runtime": self.platform.runtime.name,
                "architecture": self.platform.architecture,
                "handler": self.handler,
                "distributions": [[d.name, d.version] for d in self.distributions],
                "parts": [[label, str(path)] for label, path in self.parts],
                "first_party": None if self.first_party is None else str(self.first_party),
                "base": str(self.base),
                "sbom_template": self.sbom_template,
                "compiled_by": self.compiled_by,
                "tag": self.tag,
                "output": str(self.output),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ImageAction:
        raw = json.loads(text)
        return cls(
            name=raw["name"],
            platform=lambda_platform(raw["runtime"], raw["architecture"]),
            handler=raw["handler"],
            distributions=tuple(Distribution(n, v) for n, v in raw["distributions"]),
            parts=tuple((label, Path(path)) for label, path in raw["parts"]),
            first_party=None if raw["first_party"] is None else Path(raw["first_party"]),
            base=Path(raw["base"]),
            sbom_template=raw["sbom_template"],
            compiled_by=raw["compiled_by"],
            tag=raw["tag"],
            output=Path(raw["output"]),
        )


@dataclass(frozen=True)
class ImageManifest:
    """The manifest beside a layout, as its readers (the Pants step, `verify`) use it."""

    image_digest: str
    base_digest: str
    platform: LambdaPlatform
    handler: str
    distributions: tuple[Distribution, ...]
    compiled_by: str | None
    layers: tuple[tuple[str, str], ...]  # (digest, diff_id) of each layer of ours

    @classmethod
    def from_json(cls, data: bytes) -> ImageManifest:
        """Raises `json.JSONDecodeError` for text that is not JSON, `ImageError` for JSON that
        is not an image's manifest."""
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("kind") != "image":
            raise image.ImageError("not the manifest of an image (its kind is not `image`)")
        try:
            return cls(
                image_digest=str(raw["image_digest"]),
                base_digest=str(raw["base_digest"]),
                platform=lambda_platform(raw["runtime"], raw["architecture"]),
                handler=str(raw["handler"]),
                distributions=tuple(
                    Distribution(d["name"], d["version"]) for d in raw["distributions"]
                ),
                compiled_by=raw.get("bytecode_compiled_by"),
                layers=tuple((str(la["digest"]), str(la["diff_id"])) for la in raw["layers"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise image.ImageError(f"not a lambda_rules image manifest ({error!r})") from None


@dataclass(frozen=True)
class ImageResult:
    manifest_digest: str
    layers: tuple[str, ...]
    warnings: tuple[str, ...]


def write_image(action: ImageAction) -> ImageResult:
    """The layout at `action.output`, and its manifest and SBOM beside it, all or nothing."""
    base = image.read_base(action.base, action.platform.architecture)
    layers = image_layers(action)
    image.check_size(base, layers, facts.IMAGE_LIMIT_BYTES)
    config = image.image_config(base, layers, action.handler)
    manifest = image.image_manifest(base, config, layers)
    sbom = sbom_identity.complete_sbom(
        action.sbom_template, manifest.digest[7:], action.name
    ).encode()
    document = manifest_document(action, base, manifest, layers, sbom)
    _write(action, base, layers, config, manifest, document, sbom)
    lifecycle = facts.lifecycle_warning(action.name, action.platform.runtime)
    return ImageResult(
        manifest.digest,
        tuple(layer.blob.digest for layer in layers),
        (lifecycle,) if lifecycle else (),
    )


def image_layers(action: ImageAction) -> list[image.Layer]:
    """The distribution layers (grouped) and the first-party layer, from the parts' files (what
    `verify` derives again to check an image's layers). Each file is read when its layer's tar
    is written: a layer's files are in memory once, and one layer's at a time."""
    labels = [label for label, _ in action.parts]
    layers = []
    with contextlib.ExitStack() as stack:
        parts = [stack.enter_context(zipfile.ZipFile(path)) for _, path in action.parts]
        sizes = [sum(info.file_size for info in part.infolist()) for part in parts]
        for group in image.group_units(sizes):
            names = ", ".join(labels[i] for i in group)
            files = [entry for i in group for entry in _files(parts[i])]
            layers.append(image.tar_layer(files, TASK_ROOT, f"distributions {names}"))
        if action.first_party is not None:
            code = _files(stack.enter_context(zipfile.ZipFile(action.first_party)))
            layers.append(image.tar_layer(code, TASK_ROOT, f"{action.name} code"))
    return layers


def _files(part: zipfile.ZipFile) -> list[tuple[str, bool, image.Content]]:
    """A part's entries: (path, executable, a function reading the content)."""
    return [
        (info.filename, bool(info.external_attr >> 16 & 0o111), functools.partial(part.read, info))
        for info in part.infolist()
    ]


def manifest_document(
    action: ImageAction,
    base: image.BaseImage,
    manifest: image.Blob,
    layers: Sequence[image.Layer],
    sbom: bytes,
) -> bytes:
    """The `.json` beside the layout: what the image holds and its digests (`verify` derives it
    again to compare)."""
    document: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "kind": "image",
        "image_digest": manifest.digest,
        "base_digest": base.manifest_digest,
        "runtime": action.platform.runtime.name,
        "architecture": action.platform.architecture,
        "handler": action.handler,
        "distributions": [{"name": d.name, "version": d.version} for d in action.distributions],
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
        "bytecode_compiled_by": action.compiled_by,
        "sbom": {
            "file": f"{action.output.name}.cdx.json",
            "sha256": hashlib.sha256(sbom).hexdigest(),
        },
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def beside(layout: Path, suffix: str) -> Path:
    """The manifest (`.json`) or SBOM (`.cdx.json`) beside a layout folder."""
    return layout.with_name(f"{layout.name}{suffix}")


def _write(
    action: ImageAction,
    base: image.BaseImage,
    layers: Sequence[image.Layer],
    config: image.Blob,
    manifest: image.Blob,
    document: bytes,
    sbom: bytes,
) -> None:
    """The layout, then the manifest and SBOM beside it; a failure removes what this run wrote."""
    out = action.output
    written = [beside(out, ".json"), beside(out, ".cdx.json")]
    try:
        image.write_layout(out, base, layers, config, manifest, action.tag)
        for path, data in zip(written, (document, sbom)):
            path.write_bytes(data)
            path.chmod(0o644)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        for path in written:
            path.unlink(missing_ok=True)
        raise
