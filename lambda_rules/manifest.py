"""The JSON manifest written beside every deployment package.

It carries what deployment tools need without re-reading the archive: the sha256 in hex and in
Terraform's `filebase64sha256` form, sizes against Lambda's limits, and what is inside.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any, Sequence

from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import DIRECT_UPLOAD_LIMIT_BYTES, UNZIPPED_LIMIT_BYTES, Kind
from lambda_rules.units import Distribution

MANIFEST_VERSION = 1


class PackageTooLargeError(LambdaRulesError):
    """The unzipped package exceeds what Lambda accepts."""


class OutputPathClashError(LambdaRulesError):
    """Two targets would write the same path in the dist directory."""


class ManifestError(LambdaRulesError):
    """A file that is not a manifest `package` wrote."""


@dataclass(frozen=True)
class ManifestLayer:
    """How a function's manifest names one of its layers: Terraform wires `layers = [...]` from
    it."""

    address: str
    sha256_hex: str
    sha256_base64: str

    def to_json(self) -> dict[str, str]:
        return {
            "address": self.address,
            "sha256": self.sha256_hex,
            "filebase64sha256": self.sha256_base64,
        }


@dataclass(frozen=True)
class LambdaManifest:
    artifact: str
    content_addressed_artifact: str
    sha256_hex: str
    sha256_base64: str
    zipped_size: int
    unzipped_size: int
    entry_count: int
    runtime: str
    architecture: str
    handler: str | None
    distributions: Sequence[Distribution]
    sbom: str
    sbom_sha256: str
    kind: Kind = Kind.FUNCTION
    bytecode_compiled_by: str | None = None
    # A function's layers, in `layers` order.
    layers: Sequence[ManifestLayer] = ()

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "manifest_version": MANIFEST_VERSION,
            "artifact": self.artifact,
            "content_addressed_artifact": self.content_addressed_artifact,
            "sha256": self.sha256_hex,
            "filebase64sha256": self.sha256_base64,
            "zipped_size": self.zipped_size,
            "unzipped_size": self.unzipped_size,
            "entry_count": self.entry_count,
            "runtime": self.runtime,
            "architecture": self.architecture,
            "handler": self.handler,
            "distributions": [{"name": d.name, "version": d.version} for d in self.distributions],
            "kind": self.kind.value,
            "layers": [layer.to_json() for layer in self.layers],
            # The exact CPython that compiled the shipped .pyc files, or null: none shipped.
            "bytecode_compiled_by": self.bytecode_compiled_by,
            "sbom": {"file": self.sbom, "sha256": self.sbom_sha256},
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, shown: str) -> LambdaManifest:
        """The manifest `to_json` wrote; `shown` names the file in the error a malformed one
        raises."""
        try:
            document = json.loads(text)
            return cls(
                artifact=document["artifact"],
                content_addressed_artifact=document["content_addressed_artifact"],
                sha256_hex=document["sha256"],
                sha256_base64=document["filebase64sha256"],
                zipped_size=document["zipped_size"],
                unzipped_size=document["unzipped_size"],
                entry_count=document["entry_count"],
                runtime=document["runtime"],
                architecture=document["architecture"],
                handler=document["handler"],
                distributions=tuple(
                    Distribution(d["name"], d["version"]) for d in document["distributions"]
                ),
                sbom=document["sbom"]["file"],
                sbom_sha256=document["sbom"]["sha256"],
                kind=Kind(document["kind"]),
                bytecode_compiled_by=document["bytecode_compiled_by"],
                layers=tuple(
                    ManifestLayer(la["address"], la["sha256"], la["filebase64sha256"])
                    for la in document["layers"]
                ),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ManifestError(
                f"{shown}: not a manifest `package` wrote ({type(error).__name__}: {error})"
            ) from None


def _stem_and_extension(stable_path: str) -> tuple[str, str]:
    """`fn/lambda.zip` -> (`fn/lambda`, `zip`); a path without an extension counts as a zip."""
    stem, dot, ext = stable_path.rpartition(".")
    if not dot or "/" in ext:
        return stable_path, "zip"
    return stem, ext


@dataclass(frozen=True)
class ArtifactPaths:
    """Where one package's files go in the dist directory, all derived from its `output_path`.

    The content-addressed copy lives in a directory of its own (`fn/lambda.cas/`) that `package`
    clears before writing, so dist/ keeps the current build's copy, not one per build ever made.
    """

    archive: str
    content_addressed: str
    manifest: str
    sbom: str

    @classmethod
    def for_output(cls, stable_path: str, sha256_hex: str) -> ArtifactPaths:
        stem, ext = _stem_and_extension(stable_path)
        name = posixpath.basename(stem)
        return cls(
            archive=stable_path,
            content_addressed=f"{stem}.cas/{name}-{sha256_hex[:16]}.{ext}",
            manifest=f"{stem}.json",
            sbom=f"{stem}.cdx.json",
        )

    @property
    def content_addressed_directory(self) -> str:
        return posixpath.dirname(self.content_addressed)

    def relative_to_manifest(self, path: str) -> str:
        """A path as the manifest names it: relative to the manifest's own directory."""
        return posixpath.relpath(path, posixpath.dirname(self.manifest) or ".")


def size_warnings(zipped_size: int) -> list[str]:
    if zipped_size > DIRECT_UPLOAD_LIMIT_BYTES:
        return [
            f"the zipped package is {zipped_size:,} bytes, above Lambda's direct-upload limit of "
            f"{DIRECT_UPLOAD_LIMIT_BYTES:,} bytes: upload it to S3 and deploy from there."
        ]
    return []


def check_unzipped_size(unzipped_size: int, *, what: str) -> None:
    if unzipped_size > UNZIPPED_LIMIT_BYTES:
        raise PackageTooLargeError(
            f"{what}: the unzipped package is {unzipped_size:,} bytes, above Lambda's limit of "
            f"{UNZIPPED_LIMIT_BYTES:,} bytes. Drop dependencies or build the function as a "
            "container image, up to 10 GB: a `lambda_image` target, or `lambda-zip image`."
        )
